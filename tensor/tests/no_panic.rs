//! Deterministic randomized robustness test: random shapes (ranks 0-5, sizes
//! 0-4, often mismatched between operands), random dims (negative and out of
//! range), random dtypes, non-contiguous views and random argument values are
//! driven through every op family of the public API. Each call may return `Ok`
//! or `Err`, but must never panic. Panics are collected (op and arguments) and
//! reported together at the end.
//!
//! `NO_PANIC_ITERS=<n>` and `NO_PANIC_SEED=<s>` override the defaults.

use oar_tensor::{
    AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, CpuStorage, DType, Device, MaxPool2dParams, Result, Tensor,
    UnaryOp,
};
use std::any::Any;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

// ---------------------------------------------------------------- rng

/// xorshift64* (deterministic, no dependencies).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

// ---------------------------------------------------------------- random inputs

const MAX_NUMEL: usize = 512;

fn dtype(r: &mut Rng) -> DType {
    // Mostly f32, to get past dtype checks often.
    if r.chance(1, 2) {
        DType::F32
    } else {
        r.pick(&DType::ALL)
    }
}

fn shape(r: &mut Rng, max_rank: usize) -> Vec<usize> {
    let rank = r.below(max_rank + 1);
    let mut s: Vec<usize> = (0..rank).map(|_| if r.chance(1, 8) { 0 } else { r.range(1, 4) as usize }).collect();
    while s.iter().product::<usize>() > MAX_NUMEL {
        let i = r.below(s.len());
        s[i] = s[i].div_ceil(2);
    }
    s
}

/// A shape that broadcasts with `s` (drops leading dims, sets some to 1), or a random one.
fn partner_shape(r: &mut Rng, s: &[usize]) -> Vec<usize> {
    match r.below(5) {
        0 => shape(r, 5),
        1 => s.to_vec(),
        _ => {
            let drop = r.below(s.len() + 1);
            let mut out: Vec<usize> = s[drop..].iter().map(|&d| if r.chance(1, 3) { 1 } else { d }).collect();
            if r.chance(1, 6) {
                out.insert(0, r.range(1, 3) as usize);
            }
            out
        }
    }
}

fn value(r: &mut Rng, dt: DType) -> f64 {
    match dt {
        DType::Bool => r.below(2) as f64,
        DType::U8 => r.range(0, 6) as f64,
        d if d.is_int() => r.range(-2, 6) as f64,
        _ => match r.below(20) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => 1e30,
            _ => r.range(-8, 8) as f64 / 2.0,
        },
    }
}

/// A random tensor with the given logical shape and dtype, often a
/// non-contiguous view (permuted, strided, offset or expanded).
fn tensor_of(r: &mut Rng, s: &[usize], dt: DType, desc: &mut String) -> Tensor {
    let dev = Device::cpu();
    let rank = s.len();
    let make = |r: &mut Rng, base: &[usize]| -> Tensor {
        let n: usize = base.iter().product();
        let v: Vec<f64> = (0..n).map(|_| value(r, dt)).collect();
        Tensor::from_storage(CpuStorage::from_f64s(dt, &v), base, &dev).expect("building a test input")
    };
    let kind = if rank == 0 { 0 } else { r.below(6) };
    let (t, how) = match kind {
        // permuted view
        1 | 2 => {
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                let j = r.below(i + 1);
                perm.swap(i, j);
            }
            let mut base = vec![0; rank];
            for (i, &p) in perm.iter().enumerate() {
                base[p] = s[i];
            }
            let t = make(r, &base).permute(perm.clone()).expect("permute input");
            (t, format!("permute{perm:?} of {base:?}"))
        }
        // strided slice with an offset
        3 => {
            let d = r.below(rank);
            let mut base = s.to_vec();
            let off = r.below(2);
            base[d] = 2 * s[d] + off;
            let t = make(r, &base).slice(d, off, base[d], 2).expect("slice input");
            (t, format!("slice(d{d}, {off}.., step 2) of {base:?}"))
        }
        // expanded (stride-0) view
        4 => {
            let base: Vec<usize> = s.iter().map(|&d| if d != 0 && r.chance(1, 2) { 1 } else { d }).collect();
            let t = make(r, &base).expand(s).expect("expand input");
            (t, format!("expand of {base:?}"))
        }
        _ => (make(r, s), String::new()),
    };
    assert_eq!(t.dims(), s);
    let _ = write!(desc, "{dt}{s:?}");
    if !how.is_empty() {
        let _ = write!(desc, "<{how}>");
    }
    t
}

fn rand_tensor(r: &mut Rng, desc: &mut String) -> Tensor {
    let dt = dtype(r);
    let s = shape(r, 5);
    tensor_of(r, &s, dt, desc)
}

/// An index tensor (mostly i64) with values mostly in `0..size`, sometimes out of range.
fn index_tensor(r: &mut Rng, s: &[usize], size: usize, desc: &mut String) -> Tensor {
    let dt = match r.below(10) {
        0 => DType::I32,
        1 => r.pick(&DType::ALL),
        _ => DType::I64,
    };
    let n: usize = s.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| if r.chance(1, 12) { r.range(-2, size as i64 + 2) as f64 } else { r.below(size.max(1)) as f64 })
        .collect();
    let t = Tensor::from_storage(CpuStorage::from_f64s(dt, &v), s, &Device::cpu()).expect("index input");
    let t = if s.len() >= 2 && r.chance(1, 3) {
        // non-contiguous: the same values through a transposed copy
        let k = s.len();
        t.transpose(k - 2, k - 1).unwrap().contiguous().unwrap().transpose(k - 2, k - 1).unwrap()
    } else {
        t
    };
    let _ = write!(desc, "{dt}{s:?}={v:?}");
    t
}

/// A dim argument: mostly valid for `rank`, sometimes negative or out of range.
fn dim(r: &mut Rng, rank: usize) -> i64 {
    if rank > 0 && r.chance(3, 4) {
        let d = r.below(rank) as i64;
        if r.bool() {
            d - rank as i64
        } else {
            d
        }
    } else {
        r.range(-7, 7)
    }
}

fn dims_list(r: &mut Rng, rank: usize) -> Vec<i64> {
    (0..r.below(4)).map(|_| dim(r, rank)).collect()
}

fn small(r: &mut Rng, hi: usize) -> usize {
    r.below(hi + 1)
}

/// Mostly 1, sometimes 0 (the lower bound of kernel, stride and dilation draws).
fn zero_or_one(r: &mut Rng) -> usize {
    if r.chance(1, 10) {
        0
    } else {
        1
    }
}

fn pair(r: &mut Rng, lo: usize, hi: usize) -> [usize; 2] {
    if r.chance(3, 4) {
        let v = lo + r.below(hi - lo + 1);
        [v, v]
    } else {
        [lo + r.below(hi - lo + 1), lo + r.below(hi - lo + 1)]
    }
}

/// Reads a result through a strided copy so lazily built views are exercised too.
fn touch(t: &Tensor) -> Result<()> {
    let d = if t.dtype() == DType::F64 { DType::F32 } else { DType::F64 };
    t.to_dtype(d)?;
    t.contiguous()?;
    Ok(())
}

fn touch_all(ts: &[Tensor]) -> Result<()> {
    ts.iter().try_for_each(touch)
}

// ---------------------------------------------------------------- ops

type Call = Box<dyn FnOnce() -> Result<()>>;

/// Number of op families `random_call` draws from (the last arm covers the rest).
const FAMILIES: usize = 40;

/// Builds one random op call and a description of it.
fn random_call(r: &mut Rng) -> (usize, String, Call) {
    let mut d = String::new();
    let family = r.below(FAMILIES);
    macro_rules! t {
        () => {{
            let t = rand_tensor(r, &mut d);
            d.push(' ');
            t
        }};
    }
    let call: Call = match family {
        0 | 1 => {
            let x = t!();
            let which = r.below(22);
            let _ = write!(d, "unary#{which}");
            Box::new(move || {
                let y = match which {
                    0 => x.neg(),
                    1 => x.abs(),
                    2 => x.exp(),
                    3 => x.log(),
                    4 => x.sqrt(),
                    5 => x.rsqrt(),
                    6 => x.sin(),
                    7 => x.cos(),
                    8 => x.tanh(),
                    9 => x.sigmoid(),
                    10 => x.relu(),
                    11 => x.gelu(),
                    12 => x.gelu_tanh(),
                    13 => x.silu(),
                    14 => x.softplus(),
                    15 => x.recip(),
                    16 => x.square(),
                    17 => x.sign(),
                    18 => x.floor(),
                    19 => x.ceil(),
                    20 => x.erf(),
                    _ => x.round(),
                }?;
                touch(&y)
            })
        }
        2 => {
            let x = t!();
            let lo = r.chance(2, 3).then(|| value(r, DType::F32));
            let hi = r.chance(2, 3).then(|| value(r, DType::F32));
            let _ = write!(d, "clamp({lo:?}, {hi:?})");
            Box::new(move || touch(&x.clamp(lo, hi)?))
        }
        3..=5 => {
            let dt = dtype(r);
            let s = shape(r, 5);
            let a = tensor_of(r, &s, dt, &mut d);
            d.push(' ');
            let s2 = partner_shape(r, &s);
            let dt2 = if r.chance(4, 5) { dt } else { dtype(r) };
            let b = tensor_of(r, &s2, dt2, &mut d);
            let which = r.below(15);
            let _ = write!(d, " binary/compare#{which}");
            Box::new(move || {
                let y = match which {
                    0 => a.add(&b),
                    1 => a.sub(&b),
                    2 => a.mul(&b),
                    3 => a.div(&b),
                    4 => a.pow(&b),
                    5 => a.maximum(&b),
                    6 => a.minimum(&b),
                    7 => a.eq(&b),
                    8 => a.ne(&b),
                    9 => a.lt(&b),
                    10 => a.le(&b),
                    11 => a.gt(&b),
                    12 => a.ge(&b),
                    13 => a.unary_backward(UnaryOp::Tanh, &b),
                    _ => a.unary_backward(UnaryOp::Gelu, &b),
                }?;
                touch(&y)
            })
        }
        6 => {
            let x = t!();
            let v = value(r, DType::F32) * if r.chance(1, 5) { 1e6 } else { 1.0 };
            let which = r.below(13);
            let _ = write!(d, "scalar#{which}({v})");
            Box::new(move || {
                let y = match which {
                    0 => x.add_scalar(v),
                    1 => x.sub_scalar(v),
                    2 => x.mul_scalar(v),
                    3 => x.div_scalar(v),
                    4 => x.pow_scalar(v),
                    5 => x.maximum_scalar(v),
                    6 => x.minimum_scalar(v),
                    7 => x.eq_scalar(v),
                    8 => x.ne_scalar(v),
                    9 => x.lt_scalar(v),
                    10 => x.le_scalar(v),
                    11 => x.gt_scalar(v),
                    _ => x.ge_scalar(v),
                }?;
                touch(&y)
            })
        }
        7 => {
            let s = shape(r, 4);
            let cdt = if r.chance(4, 5) { DType::Bool } else { dtype(r) };
            let cs = partner_shape(r, &s);
            let c = tensor_of(r, &cs, cdt, &mut d);
            d.push(' ');
            let dt = dtype(r);
            let a = tensor_of(r, &s, dt, &mut d);
            d.push(' ');
            let bs = partner_shape(r, &s);
            let bdt = if r.chance(4, 5) { dt } else { dtype(r) };
            let b = tensor_of(r, &bs, bdt, &mut d);
            d.push_str(" where_cond");
            Box::new(move || touch(&c.where_cond(&a, &b)?))
        }
        8 => {
            let x = t!();
            let ms = partner_shape(r, x.dims());
            let mdt = if r.chance(4, 5) { DType::Bool } else { dtype(r) };
            let m = tensor_of(r, &ms, mdt, &mut d);
            let v = value(r, DType::F32);
            let _ = write!(d, " masked_fill({v})");
            Box::new(move || touch(&x.masked_fill(&m, v)?))
        }
        9 => {
            let x = t!();
            let to = r.pick(&DType::ALL);
            let _ = write!(d, "to_dtype({to})");
            Box::new(move || touch(&x.to_dtype(to)?))
        }
        10 | 11 => {
            let x = t!();
            let dims = dims_list(r, x.rank());
            let keep = r.bool();
            let which = r.below(8);
            let corr = r.below(3);
            let _ = write!(d, "reduce#{which}({dims:?}, keepdim={keep}, correction={corr})");
            Box::new(move || {
                let y = match which {
                    0 => x.sum(dims, keep),
                    1 => x.mean(dims, keep),
                    2 => x.max(dims, keep),
                    3 => x.min(dims, keep),
                    4 => x.prod(dims, keep),
                    5 => x.logsumexp(dims, keep),
                    6 => x.var(dims, corr, keep),
                    _ => x.std(dims, corr, keep),
                }?;
                touch(&y)
            })
        }
        12 => {
            let x = t!();
            let which = r.below(4);
            let _ = write!(d, "reduce_all#{which}");
            Box::new(move || {
                let y = match which {
                    0 => x.sum_all(),
                    1 => x.mean_all(),
                    2 => x.max_all(),
                    _ => x.min_all(),
                }?;
                touch(&y)?;
                y.item().map(|_| ())
            })
        }
        13 => {
            let x = t!();
            let dm = dim(r, x.rank());
            let keep = r.bool();
            let which = r.below(4);
            let _ = write!(d, "argmax/argmin/softmax/log_softmax#{which}(dim={dm}, keepdim={keep})");
            Box::new(move || {
                let y = match which {
                    0 => x.argmax(dm, keep),
                    1 => x.argmin(dm, keep),
                    2 => x.softmax(dm),
                    _ => x.log_softmax(dm),
                }?;
                touch(&y)
            })
        }
        14 => {
            let x = t!();
            let n = x.numel();
            let target: Vec<usize> = match r.below(4) {
                0 => vec![n],
                1 => vec![1, n, 1],
                2 if n % 2 == 0 && n > 0 => vec![2, n / 2],
                _ => shape(r, 4),
            };
            let _ = write!(d, "reshape({target:?})");
            Box::new(move || touch(&x.reshape(target)?))
        }
        15 => {
            let x = t!();
            let rank = x.rank();
            let mut perm: Vec<i64> = (0..rank as i64).collect();
            for i in (1..rank).rev() {
                let j = r.below(i + 1);
                perm.swap(i, j);
            }
            match r.below(6) {
                0 => perm.push(r.range(-2, 5)),
                1 if !perm.is_empty() => {
                    let i = r.below(perm.len());
                    perm[i] = r.range(-6, 6);
                }
                2 if !perm.is_empty() => {
                    let i = r.below(perm.len());
                    perm[i] -= rank as i64;
                }
                _ => {}
            }
            let (d0, d1) = (dim(r, rank), dim(r, rank));
            let which = r.below(3);
            let _ = write!(d, "permute({perm:?})/transpose({d0}, {d1})/t #{which}");
            Box::new(move || {
                let y = match which {
                    0 => x.permute(perm),
                    1 => x.transpose(d0, d1),
                    _ => x.t(),
                }?;
                touch(&y)
            })
        }
        16 => {
            let x = t!();
            let target: Vec<usize> = if r.chance(2, 3) {
                let mut t: Vec<usize> =
                    x.dims().iter().map(|&s| if s == 1 { r.range(0, 3) as usize } else { s }).collect();
                for _ in 0..r.below(3) {
                    t.insert(0, r.range(0, 3) as usize);
                }
                t
            } else {
                shape(r, 5)
            };
            let _ = write!(d, "expand({target:?})");
            Box::new(move || touch(&x.expand(target)?))
        }
        17 => {
            let x = t!();
            let dm = dim(r, x.rank());
            let (a, b, step) = (small(r, 6), small(r, 6), small(r, 3));
            let which = r.below(2);
            let _ = write!(d, "narrow(dim={dm}, {a}, {b}) / slice(dim={dm}, {a}, {b}, step={step}) #{which}");
            Box::new(move || {
                let y = if which == 0 { x.narrow(dm, a, b) } else { x.slice(dm, a, b, step) }?;
                touch(&y)
            })
        }
        18 => {
            let x = t!();
            let dm = dim(r, x.rank() + 1);
            let (s, e) = (dim(r, x.rank()), dim(r, x.rank()));
            let which = r.below(3);
            let _ = write!(d, "squeeze({dm})/unsqueeze({dm})/flatten({s}, {e}) #{which}");
            Box::new(move || {
                let y = match which {
                    0 => x.squeeze(dm),
                    1 => x.unsqueeze(dm),
                    _ => x.flatten(s, e),
                }?;
                touch(&y)
            })
        }
        19 => {
            let x = t!();
            let dm = dim(r, x.rank());
            let n = small(r, 5);
            let sizes: Vec<usize> = (0..r.below(4)).map(|_| small(r, 3)).collect();
            let which = r.below(3);
            let _ = write!(d, "split({n}, {dm})/chunk({n}, {dm})/split_sizes({sizes:?}, {dm}) #{which}");
            Box::new(move || {
                let ys = match which {
                    0 => x.split(n, dm),
                    1 => x.chunk(n, dm),
                    _ => x.split_sizes(&sizes, dm),
                }?;
                touch_all(&ys)
            })
        }
        20 | 21 => {
            let dt = dtype(r);
            let (sa, sb) = if r.chance(2, 3) {
                // mostly compatible torch.matmul shapes
                let (m, k, n) = (small(r, 4), small(r, 4), small(r, 4));
                let batch = shape(r, 2);
                let mut sa: Vec<usize> = batch.clone();
                sa.extend([m, k]);
                let mut sb: Vec<usize> = partner_shape(r, &batch);
                sb.extend([if r.chance(9, 10) { k } else { small(r, 4) }, n]);
                match r.below(4) {
                    0 => sa = vec![k],
                    1 => sb = vec![k],
                    _ => {}
                }
                (sa, sb)
            } else {
                (shape(r, 4), shape(r, 4))
            };
            let a = tensor_of(r, &sa, dt, &mut d);
            d.push(' ');
            let bdt = if r.chance(9, 10) { dt } else { dtype(r) };
            let b = tensor_of(r, &sb, bdt, &mut d);
            d.push_str(" matmul");
            Box::new(move || touch(&a.matmul(&b)?))
        }
        22..=24 => {
            let dt = if r.chance(3, 4) { DType::F32 } else { dtype(r) };
            let groups = if r.chance(3, 4) { 1 } else { small(r, 3) };
            let g = groups.max(1);
            let c = g * r.range(0, 2) as usize + if r.chance(1, 8) { 1 } else { 0 };
            let o = g * r.range(0, 2) as usize + if r.chance(1, 8) { 1 } else { 0 };
            let (h, w) = (small(r, 4), small(r, 4));
            let kmin = if r.chance(1, 10) { 0 } else { 1 };
            let (kh, kw) = (kmin + small(r, 3 - kmin), kmin + small(r, 3 - kmin));
            let xs: Vec<usize> = match r.below(8) {
                0 => vec![c, h, w],
                1 => shape(r, 5),
                _ => vec![small(r, 2), c, h, w],
            };
            let transposed = family == 24;
            let ws: Vec<usize> = match r.below(8) {
                0 => shape(r, 5),
                _ if transposed => vec![c, o / g, kh, kw],
                _ => vec![o, c / g, kh, kw],
            };
            let x = tensor_of(r, &xs, dt, &mut d);
            d.push(' ');
            let wdt = if r.chance(9, 10) { dt } else { dtype(r) };
            let wt = tensor_of(r, &ws, wdt, &mut d);
            let bias = if r.bool() {
                d.push(' ');
                let bs = if r.chance(5, 6) { vec![o] } else { shape(r, 2) };
                let bdt = if r.chance(9, 10) { dt } else { dtype(r) };
                Some(tensor_of(r, &bs, bdt, &mut d))
            } else {
                None
            };
            let stride = {
                let lo = zero_or_one(r);
                pair(r, lo, 3)
            };
            let padding = pair(r, 0, 2);
            let dilation = {
                let lo = zero_or_one(r);
                pair(r, lo, 3)
            };
            if transposed {
                let output_padding = pair(r, 0, 2);
                let p = ConvTranspose2dParams { stride, padding, output_padding, dilation, groups };
                let _ = write!(d, " conv_transpose2d({p:?})");
                Box::new(move || touch(&x.conv_transpose2d(&wt, bias.as_ref(), &p)?))
            } else {
                let p = Conv2dParams { stride, padding, dilation, groups };
                let _ = write!(d, " conv2d({p:?})");
                Box::new(move || touch(&x.conv2d(&wt, bias.as_ref(), &p)?))
            }
        }
        25 | 26 => {
            let dt = if r.chance(3, 4) { DType::F32 } else { dtype(r) };
            let xs: Vec<usize> = match r.below(6) {
                0 => shape(r, 5),
                1 => vec![small(r, 2), small(r, 4), small(r, 4)],
                _ => vec![small(r, 2), small(r, 2), small(r, 4), small(r, 4)],
            };
            let x = tensor_of(r, &xs, dt, &mut d);
            let kernel = {
                let lo = zero_or_one(r);
                pair(r, lo, 3)
            };
            let stride = {
                let lo = zero_or_one(r);
                pair(r, lo, 3)
            };
            let padding = pair(r, 0, 2);
            let dilation = {
                let lo = zero_or_one(r);
                pair(r, lo, 2)
            };
            let ceil_mode = r.bool();
            let count_include_pad = r.bool();
            let out = pair(r, 0, 4);
            let which = r.below(4);
            let mp = MaxPool2dParams { kernel, stride, padding, dilation, ceil_mode };
            let ap = AvgPool2dParams { kernel, stride, padding, ceil_mode, count_include_pad };
            let _ = write!(d, " pool#{which} {mp:?} {ap:?} adaptive {out:?}");
            Box::new(move || match which {
                0 => touch(&x.max_pool2d(&mp)?),
                1 => {
                    let (v, i) = x.max_pool2d_with_indices(&mp)?;
                    touch_all(&[v, i])
                }
                2 => touch(&x.avg_pool2d(&ap)?),
                _ => touch(&x.adaptive_avg_pool2d(out)?),
            })
        }
        27 => {
            let dt = dtype(r);
            let s = shape(r, 4);
            let dm = dim(r, s.len() + 1);
            let n = 1 + r.below(3);
            let mut ts = Vec::new();
            for _ in 0..n {
                let mut si = s.clone();
                if r.chance(1, 4) {
                    si = shape(r, 4);
                } else if !si.is_empty() && r.bool() {
                    let k = (dm.rem_euclid(si.len() as i64)) as usize;
                    si[k] = small(r, 3);
                }
                let dti = if r.chance(9, 10) { dt } else { dtype(r) };
                ts.push(tensor_of(r, &si, dti, &mut d));
                d.push(' ');
            }
            let stack = r.chance(1, 3);
            let _ = write!(d, "{}(dim={dm})", if stack { "stack" } else { "cat" });
            Box::new(move || {
                let refs: Vec<&Tensor> = ts.iter().collect();
                let y = if stack { Tensor::stack(&refs, dm) } else { Tensor::cat(&refs, dm) }?;
                touch(&y)
            })
        }
        28 => {
            let x = t!();
            let dm = dim(r, x.rank());
            let size = if x.rank() > 0 { x.dims()[dm.rem_euclid(x.rank() as i64) as usize] } else { 1 };
            let is = if r.chance(1, 6) { shape(r, 2) } else { vec![small(r, 4)] };
            let i = index_tensor(r, &is, size, &mut d);
            let _ = write!(d, " index_select(dim={dm})");
            Box::new(move || touch(&x.index_select(dm, &i)?))
        }
        29 | 30 => {
            let x = t!();
            let rank = x.rank();
            let dm = dim(r, rank);
            let size = if rank > 0 { x.dims()[dm.rem_euclid(rank as i64) as usize] } else { 1 };
            let is: Vec<usize> = if r.chance(1, 6) {
                shape(r, 5)
            } else {
                x.dims().iter().map(|&s| if r.chance(1, 4) { small(r, s + 1) } else { s }).collect()
            };
            let i = index_tensor(r, &is, size, &mut d);
            d.push(' ');
            if family == 29 {
                let _ = write!(d, "gather(dim={dm})");
                Box::new(move || touch(&x.gather(dm, &i)?))
            } else {
                let ss: Vec<usize> = if r.chance(1, 6) {
                    shape(r, 5)
                } else {
                    is.iter().map(|&s| if r.chance(1, 5) { s + small(r, 1) } else { s }).collect()
                };
                let sdt = if r.chance(9, 10) { x.dtype() } else { dtype(r) };
                let src = tensor_of(r, &ss, sdt, &mut d);
                let _ = write!(d, " scatter_add(dim={dm})");
                Box::new(move || touch(&x.scatter_add(dm, &i, &src)?))
            }
        }
        31 => {
            let s = shape(r, 3);
            let classes = small(r, 5);
            let i = index_tensor(r, &s, classes, &mut d);
            let _ = write!(d, " one_hot({classes})");
            Box::new(move || touch(&i.one_hot(classes)?))
        }
        32 => {
            let x = t!();
            let n = r.below(2 * x.rank() + 3);
            let pads: Vec<i64> = (0..n).map(|_| r.range(-3, 3)).collect();
            let v = value(r, DType::F32);
            let _ = write!(d, "pad({pads:?}, {v})");
            Box::new(move || touch(&x.pad(&pads, v)?))
        }
        33 => {
            let dt = r.pick(&DType::ALL);
            let s = shape(r, 4);
            let numel: usize = s.iter().product();
            let len = if r.chance(2, 3) { numel } else { small(r, 6) };
            let v: Vec<f64> = (0..len).map(|_| value(r, dt)).collect();
            let _ = write!(d, "from_storage({dt}, len {len}, shape {s:?})");
            Box::new(move || touch(&Tensor::from_storage(CpuStorage::from_f64s(dt, &v), s, &Device::cpu())?))
        }
        34 => {
            let dt = r.pick(&DType::ALL);
            let start = r.range(-4, 4) as f64 / 2.0;
            let end = r.range(-4, 8) as f64 / 2.0;
            let step = match r.below(8) {
                0 => 0.0,
                1 => f64::NAN,
                _ => r.range(-4, 4) as f64 / 2.0,
            };
            let steps = small(r, 5);
            let n = small(r, 4);
            let s = shape(r, 4);
            let fill = value(r, DType::F32);
            let which = r.below(8);
            let _ = write!(
                d,
                "creation#{which} dtype {dt} arange({start}, {end}, {step}) linspace(steps {steps}) eye({n}) shape {s:?} fill {fill}"
            );
            Box::new(move || {
                let dev = Device::cpu();
                let y = match which {
                    0 => Tensor::arange(start, end, step, dt, &dev),
                    1 => Tensor::linspace(start, end, steps, dt, &dev),
                    2 => Tensor::eye(n, dt, &dev),
                    3 => Tensor::full(s, fill, dt, &dev),
                    4 => Tensor::zeros(s, dt, &dev),
                    5 => Tensor::ones(s, dt, &dev),
                    6 => Tensor::rand(s, dt, &dev),
                    _ => Tensor::randn(s, dt, &dev),
                }?;
                touch(&y)
            })
        }
        35 => {
            let x = t!();
            let which = r.below(12);
            let _ = write!(d, "host read#{which}");
            Box::new(move || match which {
                0 => x.to_vec::<f32>().map(drop),
                1 => x.to_vec::<f64>().map(drop),
                2 => x.to_vec::<oar_tensor::f16>().map(drop),
                3 => x.to_vec::<oar_tensor::bf16>().map(drop),
                4 => x.to_vec::<i64>().map(drop),
                5 => x.to_vec::<i32>().map(drop),
                6 => x.to_vec::<u8>().map(drop),
                7 => x.to_vec::<bool>().map(drop),
                8 => x.to_scalar::<f32>().map(drop),
                9 => x.to_scalar::<i64>().map(drop),
                10 => x.item().map(drop),
                _ => x.contiguous().map(drop),
            })
        }
        36 => {
            let x = t!();
            let dm = dim(r, x.rank());
            let _ = write!(d, "size({dm})/zeros_like/ones_like/full_like");
            Box::new(move || {
                x.size(dm)?;
                touch_all(&[x.zeros_like()?, x.ones_like()?, x.full_like(2.0)?])
            })
        }
        37 => {
            // A fused op with binary epilogue ops: random heads, operands
            // (often of the wrong shape, dtype or number) and op lists.
            use oar_tensor::op::{BinaryOp, Op};
            let inputs: Vec<Tensor> = (0..1 + r.below(4)).map(|_| t!()).collect();
            let head = match r.below(3) {
                0 => Op::Unary(UnaryOp::Exp),
                1 => Op::Binary(BinaryOp::Mul),
                _ => Op::Matmul,
            };
            let epilogue: Vec<Op> = (0..r.below(4))
                .map(|_| match r.below(3) {
                    0 => Op::Unary(UnaryOp::Relu),
                    1 => Op::Binary(BinaryOp::Sub),
                    _ => Op::Binary(BinaryOp::Add),
                })
                .collect();
            // Or the same chain in place over the first input (unique, or a
            // view, or shared with the operands).
            let in_place = r.chance(1, 2);
            let _ = write!(
                d,
                "{}({}, {:?})",
                if in_place { "apply_in_place" } else { "fused" },
                head.name(),
                epilogue.iter().map(|o| o.name()).collect::<Vec<_>>()
            );
            Box::new(move || {
                let refs: Vec<&Tensor> = inputs.iter().collect();
                if in_place {
                    let target =
                        if inputs.len().is_multiple_of(2) { inputs[0].mul_scalar(1.0)? } else { inputs[0].clone() };
                    return touch(&target.apply_in_place(&epilogue, &refs[1..])?);
                }
                touch_all(&Tensor::apply(Op::Fused { head: Box::new(head), epilogue }, &refs)?)
            })
        }
        _ => {
            // A chain of random views, then an element-wise op on the result.
            let mut x = t!();
            let mut steps = Vec::new();
            for _ in 0..1 + r.below(3) {
                let rank = x.rank();
                let step = match r.below(4) {
                    0 if rank >= 2 => {
                        let (a, b) = (r.below(rank), r.below(rank));
                        steps.push(format!("transpose({a}, {b})"));
                        x.transpose(a, b)
                    }
                    1 if rank >= 1 => {
                        let dm = r.below(rank);
                        let st = 1 + r.below(2);
                        steps.push(format!("slice({dm}, 1, 9, {st})"));
                        x.slice(dm, 1, 9, st)
                    }
                    2 => {
                        let dm = r.below(rank + 1);
                        steps.push(format!("unsqueeze({dm})"));
                        x.unsqueeze(dm)
                    }
                    _ => {
                        steps.push("flatten(0, -1)".into());
                        x.flatten(0, -1)
                    }
                };
                match step {
                    Ok(y) => x = y,
                    Err(_) => break,
                }
            }
            let _ = write!(d, "views {steps:?} then add/sum/reshape");
            Box::new(move || {
                touch(&x.add(&x)?)?;
                touch(&x.sum(0, true)?)?;
                touch(&x.reshape([x.numel()])?)
            })
        }
    };
    (family, d, call)
}

// ---------------------------------------------------------------- driver

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".into()
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `iters` random calls; returns a description of every panic.
fn run(seed: u64, iters: usize) -> Vec<String> {
    let mut r = Rng::new(seed);
    let mut panics = Vec::new();
    let mut outcomes = [0usize; 2];
    let mut per_family = [[0usize; 2]; FAMILIES];
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let loc = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{}{loc}", panic_text(info.payload())));
    }));
    for it in 0..iters {
        let (family, desc, call) = random_call(&mut r);
        match catch_unwind(AssertUnwindSafe(call)) {
            Ok(res) => {
                outcomes[res.is_ok() as usize] += 1;
                per_family[family][res.is_ok() as usize] += 1;
            }
            Err(p) => {
                let hooked = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
                let msg = hooked.unwrap_or_else(|| panic_text(&*p));
                panics.push(format!("#{it}: {desc}\n    panic: {msg}"));
            }
        }
    }
    std::panic::set_hook(prev);
    if std::env::var_os("NO_PANIC_STATS").is_some() {
        for (f, [e, o]) in per_family.iter().enumerate() {
            eprintln!("family {f:2}: {o:5} Ok {e:5} Err");
        }
    }
    eprintln!("no_panic: seed {seed}, {iters} calls: {} Ok, {} Err, {} panics", outcomes[1], outcomes[0], panics.len());
    panics
}

/// Every op family, with random (often invalid) inputs.
#[test]
fn random_calls_never_panic() {
    let seed = env_or("NO_PANIC_SEED", 0x5EED_0A12);
    let iters = env_or("NO_PANIC_ITERS", 50_000) as usize;
    let panics = run(seed, iters);
    if !panics.is_empty() {
        let shown: Vec<&String> = panics.iter().take(40).collect();
        panic!(
            "{} of {iters} random calls panicked (seed {seed}):\n{}",
            panics.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
}
