//! Shared harness of the golden tests (`golden_layers.rs`, `golden_losses.rs`,
//! `golden_optim.rs`): loads a fixture pair written by `scripts/gen_nn_golden.py`
//! (`tests/fixtures/<stem>.safetensors` with the tensors, `<stem>.json` with the case
//! configs) and compares results.
//!
//! Tolerance: an element passes when `|got - want| <= tol * (|want| + max|want|)`,
//! where `max|want|` is taken over the whole tensor, with `tol` 1e-5 for f32 and 1e-10
//! for f64 (the expected f32 values are f64 computations rounded once; the generator
//! asserts that PyTorch's own f32 computation meets the same bound). The `max|want|`
//! term makes the check absolute for elements much smaller than the tensor's scale (a
//! gradient that should be ~0 after cancellation) and relative for the large ones.
//! Integer and bool tensors must be equal. Shapes and dtypes must match exactly; NaN
//! or infinity where a finite value is expected is a failure.

#![allow(dead_code)] // each test binary uses part of the harness

use oar_tensor::{no_grad, DType, Device, Tensor};
use safetensors::{Dtype as SDtype, SafeTensors};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub type Res<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Relative tolerance per dtype (see the module docs).
pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-10,
        DType::F32 => 1e-5,
        _ => 0.0,
    }
}

fn le<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N).map(|c| f(c.try_into().expect("chunk"))).collect()
}

/// All tensors and case configs of one fixture pair; records which tensors were read.
pub struct Fixture {
    pub stem: &'static str,
    tensors: BTreeMap<String, Tensor>,
    pub cases: serde_json::Map<String, Value>,
    used: RefCell<BTreeSet<String>>,
}

impl Fixture {
    pub fn open(stem: &'static str) -> Fixture {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = |ext: &str| {
            let path = dir.join(format!("{stem}.{ext}"));
            std::fs::read(&path).unwrap_or_else(|e| {
                panic!("cannot read {}: {e} (generate it with scripts/gen_nn_golden.py)", path.display())
            })
        };
        let bytes = read("safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{stem}.safetensors: {e}"));
        let dev = Device::cpu();
        let mut tensors = BTreeMap::new();
        for (name, v) in st.tensors() {
            let shape = v.shape().to_vec();
            let d = v.data();
            let t = match v.dtype() {
                SDtype::F64 => Tensor::from_vec(le(d, f64::from_le_bytes), shape, &dev),
                SDtype::F32 => Tensor::from_vec(le(d, f32::from_le_bytes), shape, &dev),
                SDtype::I64 => Tensor::from_vec(le(d, i64::from_le_bytes), shape, &dev),
                other => panic!("{stem}.safetensors: {name}: unsupported dtype {other:?}"),
            }
            .unwrap_or_else(|e| panic!("{stem}.safetensors: {name}: {e}"));
            tensors.insert(name, t);
        }
        let json: Value = serde_json::from_slice(&read("json")).unwrap_or_else(|e| panic!("{stem}.json: {e}"));
        let cases = json["cases"].as_object().unwrap_or_else(|| panic!("{stem}.json: no \"cases\" object")).clone();
        Fixture { stem, tensors, cases, used: RefCell::new(BTreeSet::new()) }
    }

    /// The cases whose config satisfies `pred`, by name.
    pub fn cases_where(&self, pred: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
        self.cases.iter().filter(|(_, v)| pred(v)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The stored tensor `key` (marked as used).
    pub fn get(&self, key: &str) -> Res<Tensor> {
        self.try_get(key).ok_or_else(|| format!("{}.safetensors: no tensor {key}", self.stem).into())
    }

    /// The stored tensor `key`, if there is one (marked as used).
    pub fn try_get(&self, key: &str) -> Option<Tensor> {
        let t = self.tensors.get(key)?.clone();
        self.used.borrow_mut().insert(key.to_string());
        Some(t)
    }

    /// The keys starting with `prefix`, sorted.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.tensors.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    /// Panics unless every tensor of the `cases` was read: a tensor the generator stores but
    /// the test never compares would be a silently skipped check.
    pub fn assert_used(&self, cases: &[String]) {
        let used = self.used.borrow();
        let unused: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| cases.iter().any(|c| k.starts_with(&format!("{c}."))) && !used.contains(*k))
            .collect();
        assert!(unused.is_empty(), "{}: stored tensors never read by the test: {unused:?}", self.stem);
    }
}

/// JSON accessors that panic with the key's name (the fixture is trusted input).
pub trait Cfg {
    fn f(&self, key: &str) -> f64;
    fn u(&self, key: &str) -> usize;
    fn i(&self, key: &str) -> i64;
    fn b(&self, key: &str) -> bool;
    fn s(&self, key: &str) -> &str;
    fn pair(&self, key: &str) -> [usize; 2];
    fn usizes(&self, key: &str) -> Vec<usize>;
}

impl Cfg for Value {
    fn f(&self, key: &str) -> f64 {
        self[key].as_f64().unwrap_or_else(|| panic!("config {key}: not a number in {self}"))
    }
    fn u(&self, key: &str) -> usize {
        self[key].as_u64().unwrap_or_else(|| panic!("config {key}: not an unsigned integer in {self}")) as usize
    }
    fn i(&self, key: &str) -> i64 {
        self[key].as_i64().unwrap_or_else(|| panic!("config {key}: not an integer in {self}"))
    }
    fn b(&self, key: &str) -> bool {
        self[key].as_bool().unwrap_or_else(|| panic!("config {key}: not a bool in {self}"))
    }
    fn s(&self, key: &str) -> &str {
        self[key].as_str().unwrap_or_else(|| panic!("config {key}: not a string in {self}"))
    }
    fn pair(&self, key: &str) -> [usize; 2] {
        let v = self.usizes(key);
        assert_eq!(v.len(), 2, "config {key}: expected a pair in {self}");
        [v[0], v[1]]
    }
    fn usizes(&self, key: &str) -> Vec<usize> {
        self[key]
            .as_array()
            .unwrap_or_else(|| panic!("config {key}: not an array in {self}"))
            .iter()
            .map(|v| v.as_u64().unwrap_or_else(|| panic!("config {key}: not unsigned integers")) as usize)
            .collect()
    }
}

pub fn to_f64s(t: &Tensor) -> Res<Vec<f64>> {
    let _g = no_grad();
    Ok(t.detach().to_dtype(DType::F64)?.to_vec::<f64>()?)
}

/// Collects comparison failures of one test (every comparison runs; all failures are
/// reported together at the end).
#[derive(Default)]
pub struct Checker {
    pub failures: Vec<String>,
    pub checked: usize,
    /// The largest `|got - want| / (|want| + max|want|)` seen, and where (for the log).
    worst: (f64, String),
}

impl Checker {
    pub fn new() -> Self {
        Checker::default()
    }

    pub fn fail(&mut self, msg: impl Into<String>) {
        self.failures.push(msg.into());
    }

    /// Compares `got` with `want` within `tol(want.dtype())` (see the module docs).
    pub fn check(&mut self, what: &str, got: &Tensor, want: &Tensor) {
        self.check_tol(what, got, want, tol(want.dtype()))
    }

    /// A gradient: `None` passes only where the expected gradient is all zeros.
    pub fn check_grad(&mut self, what: &str, got: Option<Tensor>, want: &Tensor) {
        match got {
            Some(g) => self.check(what, &g, want),
            None => {
                self.checked += 1;
                let zero = to_f64s(want).map(|w| w.iter().all(|&v| v == 0.0)).unwrap_or(false);
                if !zero {
                    self.fail(format!("{what}: no gradient (None), expected a nonzero one"));
                }
            }
        }
    }

    pub fn check_tol(&mut self, what: &str, got: &Tensor, want: &Tensor, t: f64) {
        self.checked += 1;
        if let Err(e) = self.compare(what, got, want, t) {
            self.fail(format!("{what}: {e}"));
        }
    }

    fn compare(&mut self, what: &str, got: &Tensor, want: &Tensor, t: f64) -> Res {
        if got.dtype() != want.dtype() || got.dims() != want.dims() {
            self.fail(format!("{what}: got {:?} {}, want {:?} {}", got.dims(), got.dtype(), want.dims(), want.dtype()));
            return Ok(());
        }
        let (g, w) = (to_f64s(got)?, to_f64s(want)?);
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
        let (mut worst, mut bad, mut max_abs) = (None::<(usize, f64)>, 0usize, 0f64);
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            // NaN or infinity (where the reference is finite) counts as an infinite error.
            let err = if (a - b).is_finite() {
                (a - b).abs()
            } else if a == b {
                0.0
            } else {
                f64::INFINITY
            };
            let bound = b.abs() + scale;
            let rel = if err == 0.0 { 0.0 } else { err / bound };
            if rel > self.worst.0 {
                self.worst = (rel, what.to_string());
            }
            max_abs = max_abs.max(err);
            if err > t * bound {
                bad += 1;
                if worst.is_none_or(|(_, e)| err > e) {
                    worst = Some((i, err));
                }
            }
        }
        if let Some((i, err)) = worst {
            self.fail(format!(
                "{what} ({} {:?}): max abs err {max_abs:.3e}; {bad} of {} elements out of tolerance, worst at \
                 flat index {i}: got {:e}, want {:e} (abs err {err:.3e}, allowed {t:e} * (|want| + {scale:.3e}))",
                want.dtype(),
                want.dims(),
                w.len(),
                g[i],
                w[i],
            ));
        }
        Ok(())
    }

    /// Panics with every failure; logs the worst relative error otherwise.
    pub fn finish(self, label: &str) {
        assert!(
            self.failures.is_empty(),
            "{label}: {} of {} comparisons failed:\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n")
        );
        let (rel, key) = &self.worst;
        eprintln!(
            "{label}: {} comparisons passed; worst |got - want| / (|want| + max|want|) = {rel:.2e} ({key})",
            self.checked
        );
    }
}

/// Asserts that `result` is an error whose message contains every one of `needles`.
pub fn assert_err<T: std::fmt::Debug>(result: oar_tensor::Result<T>, needles: &[&str]) {
    match result {
        Ok(v) => panic!("expected an error mentioning {needles:?}, got Ok({v:?})"),
        Err(e) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
            }
        }
    }
}
