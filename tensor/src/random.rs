//! Seedable random numbers: a counter-based Philox 4x32-10 generator, so a
//! seed gives the same stream on every run and platform (and, later, the same
//! stream on a GPU, which can compute any block of it independently).

use std::sync::{Mutex, OnceLock};

/// A random stream: a key (from the seed) and a block counter.
#[derive(Clone, Debug)]
pub struct Generator {
    key: [u32; 2],
    counter: u64,
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

fn philox(counter: u64, key: [u32; 2]) -> [u32; 4] {
    let mut c = [counter as u32, (counter >> 32) as u32, 0, 0];
    let mut k = key;
    for _ in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        c = [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator { key: [seed as u32, (seed >> 32) as u32], counter: 0 }
    }

    /// `n` uniformly distributed 32-bit words.
    pub(crate) fn next_u32s(&mut self, n: usize) -> Vec<u32> {
        let blocks = n.div_ceil(4) as u64;
        let mut out = Vec::with_capacity(blocks as usize * 4);
        for b in 0..blocks {
            out.extend_from_slice(&philox(self.counter + b, self.key));
        }
        self.counter += blocks;
        out.truncate(n);
        out
    }

    /// `n` samples of U[0, 1) with 53 random bits each.
    pub fn uniform(&mut self, n: usize) -> Vec<f64> {
        self.next_u32s(2 * n)
            .chunks_exact(2)
            .map(|w| (((w[0] as u64) << 21) ^ (w[1] as u64 >> 11)) as f64 * (1.0 / (1u64 << 53) as f64))
            .collect()
    }

    /// `n` samples of N(0, 1) (Box-Muller).
    pub fn normal(&mut self, n: usize) -> Vec<f64> {
        let u = self.uniform(n.div_ceil(2) * 2);
        let mut out = Vec::with_capacity(u.len());
        for p in u.chunks_exact(2) {
            let r = (-2.0 * (1.0 - p[0]).ln()).sqrt();
            let t = 2.0 * std::f64::consts::PI * p[1];
            out.push(r * t.cos());
            out.push(r * t.sin());
        }
        out.truncate(n);
        out
    }
}

fn global() -> &'static Mutex<Generator> {
    static G: OnceLock<Mutex<Generator>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(Generator::new(0x5EED)))
}

/// Reseeds the default generator used by `Tensor::rand` / `Tensor::randn`.
pub fn manual_seed(seed: u64) {
    *global().lock().unwrap_or_else(|e| e.into_inner()) = Generator::new(seed);
}

pub(crate) fn with_global<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    f(&mut global().lock().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::philox;

    #[test]
    fn philox_matches_random123_known_answers() {
        // Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
        assert_eq!(philox(0, [0, 0]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
    }
}
