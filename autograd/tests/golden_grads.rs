//! Golden gradient tests against PyTorch.
//!
//! `tests/golden/grads.safetensors` is produced by `scripts/gen_grad_golden.py` (run it
//! with a Python that has torch, numpy and safetensors; see its docstring) and committed,
//! so this test needs no Python.  For each case the fixture holds the inputs and
//! parameters (`<case>.<name>`), the loss (`<case>.loss`) and the gradients
//! (`<case>.grad.<name>`).  Each test rebuilds the same function from Oar ops, runs
//! backward and compares the loss and every gradient: shape and dtype must be equal and
//! every element must satisfy `|got - want| <= tol * (|want| + max|want|)` with `tol`
//! per dtype (f64 1e-10, f32 1e-4, f16/bf16 1e-2).  The structure of each function
//! lives both here and in the generator: keep them in sync.
//!
//! Every comparison of a case runs; the mismatches (case, tensor, max abs error and
//! where) are reported together.

use oar_autograd::{grad, Backward, BackwardOptions};
use oar_tensor::{
    bf16, f16, no_grad, AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, DType, Device, MaxPool2dParams, Tensor,
};
use safetensors::{Dtype as SDtype, SafeTensors};
use std::path::PathBuf;

type Res<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn fixture_bytes() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/grads.safetensors");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (generate it with scripts/gen_grad_golden.py)", path.display()))
}

fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-10,
        DType::F32 => 1e-4,
        DType::F16 | DType::BF16 => 1e-2,
        _ => 0.0,
    }
}

fn le<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N).map(|c| f(c.try_into().unwrap())).collect()
}

/// One case of the fixture: loads its tensors and collects comparison failures.
struct Case<'a> {
    name: &'static str,
    st: &'a SafeTensors<'a>,
    dev: Device,
    failures: Vec<String>,
    checked: usize,
    /// The largest `|got - want| / (|want| + max|want|)` seen, and where (for the log).
    worst: (f64, String),
}

impl<'a> Case<'a> {
    fn new(name: &'static str, st: &'a SafeTensors<'a>) -> Self {
        Case { name, st, dev: Device::cpu(), failures: Vec::new(), checked: 0, worst: (0.0, String::new()) }
    }

    /// The stored tensor `<case>.<key>`, in its stored dtype.
    fn load(&self, key: &str) -> Res<Tensor> {
        let full = format!("{}.{key}", self.name);
        let v = self.st.tensor(&full).map_err(|e| format!("fixture {full}: {e}"))?;
        let shape = v.shape().to_vec();
        let d = v.data();
        let dev = &self.dev;
        Ok(match v.dtype() {
            SDtype::F64 => Tensor::from_vec(le(d, f64::from_le_bytes), shape, dev)?,
            SDtype::F32 => Tensor::from_vec(le(d, f32::from_le_bytes), shape, dev)?,
            SDtype::BF16 => Tensor::from_vec(le(d, |b| bf16::from_bits(u16::from_le_bytes(b))), shape, dev)?,
            SDtype::F16 => Tensor::from_vec(le(d, |b| f16::from_bits(u16::from_le_bytes(b))), shape, dev)?,
            SDtype::I64 => Tensor::from_vec(le(d, i64::from_le_bytes), shape, dev)?,
            other => return Err(format!("fixture {full}: unsupported dtype {other:?}").into()),
        })
    }

    /// A stored input as a fresh leaf that requires grad.
    fn leaf(&self, key: &str) -> Res<Tensor> {
        Ok(self.load(key)?.with_requires_grad(true)?)
    }

    /// Compares `got` with the stored `<case>.<key>`; records a failure message.
    fn check(&mut self, key: &str, got: Option<Tensor>) -> Res {
        self.checked += 1;
        let want = self.load(key)?;
        let Some(got) = got else {
            self.failures.push(format!("{}: {key}: no gradient (None)", self.name));
            return Ok(());
        };
        if got.dtype() != want.dtype() || got.dims() != want.dims() {
            self.failures.push(format!(
                "{}: {key}: got {:?} {}, want {:?} {}",
                self.name,
                got.dims(),
                got.dtype(),
                want.dims(),
                want.dtype()
            ));
            return Ok(());
        }
        let t = tol(want.dtype());
        let (g, w) = (to_f64s(&got)?, to_f64s(&want)?);
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
        let mut worst: Option<(usize, f64)> = None; // (index, abs err) of the worst excess
        let (mut max_abs, mut bad) = (0f64, 0usize);
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            // A NaN (or infinite) result counts as an infinite error.
            let err = if (a - b).is_finite() { (a - b).abs() } else { f64::INFINITY };
            let bound = b.abs() + scale;
            let rel = if err == 0.0 { 0.0 } else { err / bound };
            if rel > self.worst.0 {
                self.worst = (rel, key.to_string());
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
            self.failures.push(format!(
                "{}: {key} ({} {:?}): max abs err {max_abs:.3e}; {bad} of {} elements out of tolerance, \
                 worst at flat index {i}: got {:e}, want {:e} (abs err {err:.3e}, allowed {t:e} * (|want| + {scale:.3e}))",
                self.name,
                want.dtype(),
                want.dims(),
                w.len(),
                g[i],
                w[i],
            ));
        }
        Ok(())
    }

    /// Checks `<case>.grad.<name>` against the leaf's accumulated gradient.
    fn check_grad(&mut self, name: &str, leaf: &Tensor) -> Res {
        self.check(&format!("grad.{name}"), leaf.grad())
    }

    fn finish(self) {
        assert!(self.failures.is_empty(), "{} of {} comparisons failed:\n{}", self.failures.len(), self.checked, {
            self.failures.join("\n")
        });
        let (rel, key) = &self.worst;
        eprintln!(
            "{}: {} comparisons passed; worst |got - want| / (|want| + max|want|) = {rel:.2e} ({key})",
            self.name, self.checked
        );
    }
}

fn to_f64s(t: &Tensor) -> Res<Vec<f64>> {
    let _g = no_grad();
    Ok(t.detach().to_dtype(DType::F64)?.to_vec::<f64>()?)
}

fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> oar_tensor::Result<Tensor> {
    x.matmul(&w.t()?)?.add(b)
}

/// Mean cross-entropy of `logits` [N, C] against i64 `targets` [N]: picks the log-probabilities
/// with `gather` or with a one-hot mask.
fn cross_entropy(logits: &Tensor, targets: &Tensor, one_hot: bool) -> oar_tensor::Result<Tensor> {
    let logp = logits.log_softmax(1)?;
    let picked = if one_hot {
        let mask = targets.one_hot(logits.dims()[1])?.to_dtype(logits.dtype())?;
        logp.mul(&mask)?.sum(1, false)?
    } else {
        logp.gather(1, &targets.unsqueeze(1)?)?
    };
    picked.mean_all()?.neg()
}

// ----------------------------------------------------------------------------- a. MLP

#[test]
fn mlp_cross_entropy_f32() -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    for one_hot in [false, true] {
        let mut c = Case::new("mlp_ce_f32", &st);
        let (x, w1, b1, w2, b2) = (c.leaf("x")?, c.leaf("w1")?, c.leaf("b1")?, c.leaf("w2")?, c.leaf("b2")?);
        let targets = c.load("targets")?;
        let logits = linear(&linear(&x, &w1, &b1)?.relu()?, &w2, &b2)?;
        let loss = cross_entropy(&logits, &targets, one_hot)?;
        loss.backward()?;
        eprintln!("mlp_ce_f32 (cross-entropy via {}):", if one_hot { "one_hot" } else { "gather" });
        c.check("loss", Some(loss))?;
        for (n, t) in [("x", &x), ("w1", &w1), ("b1", &b1), ("w2", &w2), ("b2", &b2)] {
            c.check_grad(n, t)?;
        }
        c.finish();
    }
    Ok(())
}

// ----------------------------------------------------------------------------- b. SimpleCNN

#[test]
fn simple_cnn_f32() -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new("cnn_f32", &st);
    let (x, cw, cb, fw, fb) = (c.leaf("x")?, c.leaf("conv_w")?, c.leaf("conv_b")?, c.leaf("fc_w")?, c.leaf("fc_b")?);
    let targets = c.load("targets")?;
    let h = x.conv2d(&cw, Some(&cb), &Conv2dParams::default())?.relu()?.max_pool2d(&MaxPool2dParams::new(2))?;
    let logits = linear(&h.flatten(1, -1)?, &fw, &fb)?;
    let loss = cross_entropy(&logits, &targets, false)?;
    loss.backward()?;
    c.check("loss", Some(loss))?;
    for (n, t) in [("x", &x), ("conv_w", &cw), ("conv_b", &cb), ("fc_w", &fw), ("fc_b", &fb)] {
        c.check_grad(n, t)?;
    }
    c.finish();
    Ok(())
}

// ----------------------------------------------------------------------------- c. attention

fn attention(name: &'static str) -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new(name, &st);
    let (q, k, v) = (c.leaf("q")?, c.leaf("k")?, c.leaf("v")?);
    let r = c.load("r")?;
    let attn = q.matmul(&k.transpose(-1, -2)?)?.div_scalar(8f64.sqrt())?.softmax(-1)?;
    let loss = attn.matmul(&v)?.mul(&r)?.sum_all()?;
    loss.backward()?;
    c.check("loss", Some(loss))?;
    for (n, t) in [("q", &q), ("k", &k), ("v", &v)] {
        c.check_grad(n, t)?;
    }
    c.finish();
    Ok(())
}

#[test]
fn attention_f64() -> Res {
    attention("attention_f64")
}

#[test]
fn attention_f32() -> Res {
    attention("attention_f32")
}

// ----------------------------------------------------------------------------- d. composite

#[test]
fn broadcast_view_composite_f64() -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new("composite_f64", &st);
    let (a, b, cc, e, f) = (c.leaf("a")?, c.leaf("b")?, c.leaf("c")?, c.leaf("e")?, c.leaf("f")?);
    let idx = c.load("idx")?;

    let p = a.mul(&b)?; // [3, 4, 5] broadcast
    let q = p.permute([2, 0, 1])?; // [5, 3, 4]
    let rr = q.reshape([15, 4])?; // not viewable: copy
    let s = rr.narrow(0, 2, 10)?; // [10, 4]
    let t = Tensor::cat(&[&s, &cc.exp()?], 1)?; // [10, 7]
    let u = t.pad(&[1, 2, -1, 1], 0.0)?; // [10, 10]
    let w = u.gt_scalar(0.1)?.where_cond(&u, &e.mul(&u)?)?;
    let mx = w.maximum(&f)?;
    let m = mx.mean(1, true)?; // [10, 1]
    let v = u.var(0, 1, false)?; // [10]
    let lse = mx.logsumexp(1, false)?; // [10]
    let sl = mx.slice(1, 1, 9, 3)?; // [10, 3]
    let am = mx.max(0, false)?; // [10] (amax)
    let flat = mx.t()?.reshape([100])?.slice(0, 0, 100, 7)?; // [15]
    let pr = mx.narrow(1, 0, 3)?.mul_scalar(0.5)?.add_scalar(1.0)?.prod(1, false)?; // [10]
    let sel = mx.index_select(0, &idx)?; // [5, 10]
    let sd = a.expand([3, 4, 5])?.std([0, 2], 0, false)?; // [4]
    let b0 = b.narrow(1, 0, 1)?.squeeze(1)?; // b[:, 0]
    let terms = [
        m.squeeze(1)?.mul(&lse)?.sum_all()?,
        v.mul(&am)?.sum_all()?,
        sl.square()?.mean_all()?,
        flat.sum_all()?,
        pr.sum_all()?,
        sel.sum(0, false)?.tanh()?.sum_all()?,
        sd.mul(&b0)?.sum_all()?,
    ];
    let mut loss = terms[0].clone();
    for term in &terms[1..] {
        loss = loss.add(term)?;
    }
    loss.backward()?;
    c.check("loss", Some(loss))?;
    for (n, t) in [("a", &a), ("b", &b), ("c", &cc), ("e", &e), ("f", &f)] {
        c.check_grad(n, t)?;
    }
    c.finish();
    Ok(())
}

// ----------------------------------------------------------------------------- e. half precision

fn half_flow(name: &'static str, dtype: DType) -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new(name, &st);
    let (x, s, w) = (c.leaf("x")?, c.leaf("s")?, c.leaf("w")?);
    assert_eq!((x.dtype(), s.dtype(), w.dtype()), (dtype, dtype, DType::F32));
    let h = x.mul(&s)?.to_dtype(DType::F32)?;
    let y = h.matmul(&w)?.tanh()?;
    let loss = y.square()?.mean_all()?.add(&h.sum_all()?.mul_scalar(0.01)?)?;
    loss.backward()?;
    c.check("loss", Some(loss))?;
    // The half inputs' gradients must come back in their own dtype (checked by `check`).
    for (n, t) in [("x", &x), ("s", &s), ("w", &w)] {
        c.check_grad(n, t)?;
    }
    c.finish();
    Ok(())
}

#[test]
fn half_flow_bf16() -> Res {
    half_flow("half_flow_bf16", DType::BF16)
}

#[test]
fn half_flow_f16() -> Res {
    half_flow("half_flow_f16", DType::F16)
}

// ----------------------------------------------------------------------------- f. gradient penalty

fn grad_penalty(name: &'static str, act: fn(&Tensor) -> oar_tensor::Result<Tensor>) -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new(name, &st);
    let (x, w1, b1, w2, b2) = (c.leaf("x")?, c.leaf("w1")?, c.leaf("b1")?, c.leaf("w2")?, c.leaf("b2")?);
    let y = linear(&act(&linear(&x, &w1, &b1)?)?, &w2, &b2)?.sum_all()?;
    let opts = BackwardOptions { create_graph: true, retain_graph: true };
    let g = grad(&[&y], &[&x], None, opts)?.remove(0);
    // grad() returns gradients instead of accumulating them.
    for (n, t) in [("x", &x), ("w1", &w1), ("b1", &b1), ("w2", &w2), ("b2", &b2)] {
        if t.grad().is_some() {
            c.failures.push(format!("{name}: grad() accumulated into {n}.grad"));
        }
    }
    let Some(g) = g else {
        panic!("{name}: grad() returned no gradient for x");
    };
    if !g.requires_grad() {
        c.failures.push(format!("{name}: the create_graph gradient does not require grad"));
    }
    c.check("g", Some(g.clone()))?;
    let penalty = g.square()?.sum_all()?;
    penalty.backward()?;
    c.check("loss", Some(penalty))?;
    for (n, t) in [("x", &x), ("w1", &w1), ("b1", &b1), ("w2", &w2)] {
        c.check_grad(n, t)?;
    }
    // b2 does not influence g: PyTorch leaves its grad None; all zeros would be equivalent.
    if let Some(gb2) = b2.grad() {
        if to_f64s(&gb2)?.iter().any(|&v| v != 0.0) {
            c.failures.push(format!("{name}: b2 does not influence g but got a nonzero gradient"));
        }
    }
    c.finish();
    Ok(())
}

#[test]
fn grad_penalty_tanh_f64() -> Res {
    grad_penalty("grad_penalty_tanh_f64", Tensor::tanh)
}

#[test]
fn grad_penalty_silu_f64() -> Res {
    grad_penalty("grad_penalty_silu_f64", Tensor::silu)
}

// ----------------------------------------------------------------------------- g. strided convnet

#[test]
fn strided_convnet_f64() -> Res {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new("convnet_f64", &st);
    let (x, w1, b1) = (c.leaf("x")?, c.leaf("w1")?, c.leaf("b1")?);
    let (w2, b2, w3) = (c.leaf("w2")?, c.leaf("b2")?, c.leaf("w3")?);
    let r = c.load("r")?;
    let conv1 = Conv2dParams { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 2 };
    let pool = MaxPool2dParams { kernel: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], ceil_mode: false };
    let up =
        ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], output_padding: [1, 1], dilation: [1, 1], groups: 2 };
    let avg =
        AvgPool2dParams { kernel: [2, 2], stride: [2, 2], padding: [1, 1], ceil_mode: true, count_include_pad: false };
    let conv3 = Conv2dParams { stride: [1, 1], padding: [2, 2], dilation: [2, 2], groups: 1 };
    let h = x.conv2d(&w1, Some(&b1), &conv1)?.gelu()?; // [2, 6, 6, 5]
    let h = h.max_pool2d(&pool)?; // [2, 6, 3, 3]
    let h = h.conv_transpose2d(&w2, Some(&b2), &up)?; // [2, 4, 6, 6]
    let h = h.avg_pool2d(&avg)?; // [2, 4, 4, 4]
    let h = h.conv2d(&w3, None, &conv3)?; // [2, 5, 4, 4]
    let h = h.adaptive_avg_pool2d([3, 2])?; // [2, 5, 3, 2]
    let loss = h.mul(&r)?.sum_all()?;
    loss.backward()?;
    c.check("loss", Some(loss))?;
    for (n, t) in [("x", &x), ("w1", &w1), ("b1", &b1), ("w2", &w2), ("b2", &b2), ("w3", &w3)] {
        c.check_grad(n, t)?;
    }
    c.finish();
    Ok(())
}

// ----------------------------------------------------------------------------- h. CNN gradient penalty

#[test]
fn grad_penalty_cnn_f64() -> Res {
    let name = "grad_penalty_cnn_f64";
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes)?;
    let mut c = Case::new(name, &st);
    let (x, cw, cb) = (c.leaf("x")?, c.leaf("conv_w")?, c.leaf("conv_b")?);
    let (fw, fb) = (c.leaf("fc_w")?, c.leaf("fc_b")?);
    let conv = Conv2dParams { padding: [1, 1], ..Default::default() };
    let h = x.conv2d(&cw, Some(&cb), &conv)?.softplus()?.max_pool2d(&MaxPool2dParams::new(2))?;
    let y = linear(&h.flatten(1, -1)?, &fw, &fb)?.sum_all()?;
    let opts = BackwardOptions { create_graph: true, retain_graph: true };
    let Some(g) = grad(&[&y], &[&x], None, opts)?.remove(0) else {
        panic!("{name}: grad() returned no gradient for x");
    };
    c.check("g", Some(g.clone()))?;
    let penalty = g.square()?.sum_all()?;
    penalty.backward()?;
    c.check("loss", Some(penalty))?;
    for (n, t) in [("x", &x), ("conv_w", &cw), ("conv_b", &cb), ("fc_w", &fw)] {
        c.check_grad(n, t)?;
    }
    if let Some(gb) = fb.grad() {
        if to_f64s(&gb)?.iter().any(|&v| v != 0.0) {
            c.failures.push(format!("{name}: fc_b does not influence g but got a nonzero gradient"));
        }
    }
    c.finish();
    Ok(())
}
