//! Golden tests against PyTorch.
//!
//! The fixtures under `tests/golden/` are produced by `scripts/gen_golden.py`
//! (run it with a Python that has torch, numpy and safetensors; see its docstring)
//! and committed, so this test needs no Python.  `cases.json` lists the cases;
//! `fixtures.safetensors` holds every input (as a contiguous base tensor) and every
//! expected output in its real dtype.  Each input's view steps (`permute`, `expand`,
//! `slice`) are applied here exactly as the generator applied them before calling
//! torch, so most inputs reach the ops as non-contiguous views.
//!
//! All cases run; failures (errors, panics and mismatches) are collected and reported
//! together at the end.  Set `GOLDEN_FILTER=<substring>` to run only the cases whose
//! name or op contains the substring.

use oar_tensor::{AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, DType, Device, MaxPool2dParams, Tensor};
use safetensors::{Dtype as SDtype, SafeTensors};
use serde_json::Value;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

type R<T> = std::result::Result<T, String>;

/// Turns any displayable error into a message naming the failing step.
trait Ctx<T> {
    fn ctx(self, what: &str) -> R<T>;
}

impl<T, E: Display> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> R<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

// ----------------------------------------------------------------------------- fixtures

struct Fixtures<'a> {
    st: SafeTensors<'a>,
    dev: Device,
}

fn dtype_from_st(d: SDtype) -> R<DType> {
    Ok(match d {
        SDtype::F32 => DType::F32,
        SDtype::F64 => DType::F64,
        SDtype::F16 => DType::F16,
        SDtype::BF16 => DType::BF16,
        SDtype::I64 => DType::I64,
        SDtype::I32 => DType::I32,
        SDtype::U8 => DType::U8,
        SDtype::BOOL => DType::Bool,
        other => return Err(format!("unsupported safetensors dtype {other:?}")),
    })
}

fn dtype_from_name(s: &str) -> R<DType> {
    Ok(match s {
        "f32" => DType::F32,
        "f64" => DType::F64,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "i64" => DType::I64,
        "i32" => DType::I32,
        "u8" => DType::U8,
        "bool" => DType::Bool,
        other => return Err(format!("unknown dtype name {other:?}")),
    })
}

fn le<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N).map(|c| f(c.try_into().unwrap())).collect()
}

/// A stored tensor decoded to f64 (for comparisons), with its dtype and shape.
struct Expected {
    dtype: DType,
    shape: Vec<usize>,
    values: Vec<f64>,
}

impl<'a> Fixtures<'a> {
    fn view(&self, key: &str) -> R<safetensors::tensor::TensorView<'_>> {
        self.st.tensor(key).map_err(|e| format!("fixture {key}: {e}"))
    }

    /// Builds the tensor stored under `key`, in its stored dtype.
    fn load(&self, key: &str) -> R<Tensor> {
        let v = self.view(key)?;
        let shape: Vec<usize> = v.shape().to_vec();
        let d = v.data();
        let dev = &self.dev;
        let what = format!("from_vec({key})");
        match dtype_from_st(v.dtype())? {
            DType::F32 => Tensor::from_vec(le(d, f32::from_le_bytes), shape, dev).ctx(&what),
            DType::F64 => Tensor::from_vec(le(d, f64::from_le_bytes), shape, dev).ctx(&what),
            DType::F16 => {
                Tensor::from_vec(le(d, |b: [u8; 2]| half::f16::from_bits(u16::from_le_bytes(b))), shape, dev).ctx(&what)
            }
            DType::BF16 => {
                Tensor::from_vec(le(d, |b: [u8; 2]| half::bf16::from_bits(u16::from_le_bytes(b))), shape, dev)
                    .ctx(&what)
            }
            DType::I64 => Tensor::from_vec(le(d, i64::from_le_bytes), shape, dev).ctx(&what),
            DType::I32 => Tensor::from_vec(le(d, i32::from_le_bytes), shape, dev).ctx(&what),
            DType::U8 => Tensor::from_vec(d.to_vec(), shape, dev).ctx(&what),
            DType::Bool => Tensor::from_vec(d.iter().map(|&b| b != 0).collect::<Vec<bool>>(), shape, dev).ctx(&what),
        }
    }

    fn expected(&self, key: &str) -> R<Expected> {
        let v = self.view(key)?;
        let d = v.data();
        let dtype = dtype_from_st(v.dtype())?;
        let values: Vec<f64> = match dtype {
            DType::F32 => le(d, |b| f32::from_le_bytes(b) as f64),
            DType::F64 => le(d, f64::from_le_bytes),
            DType::F16 => le(d, |b: [u8; 2]| half::f16::from_bits(u16::from_le_bytes(b)).to_f64()),
            DType::BF16 => le(d, |b: [u8; 2]| half::bf16::from_bits(u16::from_le_bytes(b)).to_f64()),
            DType::I64 => le(d, |b| i64::from_le_bytes(b) as f64),
            DType::I32 => le(d, |b| i32::from_le_bytes(b) as f64),
            DType::U8 => d.iter().map(|&b| b as f64).collect(),
            DType::Bool => d.iter().map(|&b| if b != 0 { 1.0 } else { 0.0 }).collect(),
        };
        Ok(Expected { dtype, shape: v.shape().to_vec(), values })
    }

    /// Loads an input and applies its view steps.
    fn input(&self, spec: &Value) -> R<Tensor> {
        let key = spec["key"].as_str().ok_or("input without key")?;
        let mut t = self.load(key)?;
        let steps = spec["view"].as_array().ok_or("input without view list")?;
        for step in steps {
            let obj = step.as_object().ok_or("view step is not an object")?;
            let (kind, arg) = obj.iter().next().ok_or("empty view step")?;
            t = match kind.as_str() {
                "permute" => t.permute(i64s(arg)?).ctx("view permute")?,
                "expand" => t.expand(usizes(arg)?).ctx("view expand")?,
                "slice" => {
                    let a = i64s(arg)?;
                    if a.len() != 4 {
                        return Err(format!("slice step needs 4 numbers, got {a:?}"));
                    }
                    t.slice(a[0], a[1] as usize, a[2] as usize, a[3] as usize).ctx("view slice")?
                }
                other => return Err(format!("unknown view step {other:?}")),
            };
        }
        Ok(t)
    }
}

// ----------------------------------------------------------------------------- JSON args

fn i64s(v: &Value) -> R<Vec<i64>> {
    v.as_array()
        .ok_or_else(|| format!("expected a list, got {v}"))?
        .iter()
        .map(|x| x.as_i64().ok_or_else(|| format!("expected an integer, got {x}")))
        .collect()
}

fn usizes(v: &Value) -> R<Vec<usize>> {
    i64s(v)?
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| format!("expected a non-negative integer, got {x}")))
        .collect()
}

fn num(v: &Value) -> R<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("bad number {n}")),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        // JSON has no non-finite numbers; the generator writes them as strings.
        Value::String(s) => match s.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            _ => Err(format!("bad number string {s:?}")),
        },
        _ => Err(format!("expected a number, got {v}")),
    }
}

struct Args<'a>(&'a Value);

impl Args<'_> {
    fn get(&self, k: &str) -> R<&Value> {
        self.0.get(k).ok_or_else(|| format!("missing arg {k:?}"))
    }
    fn f64(&self, k: &str) -> R<f64> {
        num(self.get(k)?)
    }
    fn opt_f64(&self, k: &str) -> R<Option<f64>> {
        match self.get(k)? {
            Value::Null => Ok(None),
            v => num(v).map(Some),
        }
    }
    fn i64(&self, k: &str) -> R<i64> {
        self.get(k)?.as_i64().ok_or_else(|| format!("arg {k:?} is not an integer"))
    }
    fn usize(&self, k: &str) -> R<usize> {
        usize::try_from(self.i64(k)?).map_err(|_| format!("arg {k:?} is negative"))
    }
    fn bool(&self, k: &str) -> R<bool> {
        self.get(k)?.as_bool().ok_or_else(|| format!("arg {k:?} is not a bool"))
    }
    fn i64s(&self, k: &str) -> R<Vec<i64>> {
        i64s(self.get(k)?)
    }
    fn usizes(&self, k: &str) -> R<Vec<usize>> {
        usizes(self.get(k)?)
    }
    fn pair(&self, k: &str) -> R<[usize; 2]> {
        let v = self.usizes(k)?;
        <[usize; 2]>::try_from(v.as_slice()).map_err(|_| format!("arg {k:?} must have 2 entries, got {v:?}"))
    }
    fn dtype(&self, k: &str) -> R<DType> {
        dtype_from_name(self.get(k)?.as_str().ok_or_else(|| format!("arg {k:?} is not a string"))?)
    }
}

// ----------------------------------------------------------------------------- dispatch

fn need(ins: &[Tensor], n: usize, op: &str) -> R<()> {
    if ins.len() == n {
        Ok(())
    } else {
        Err(format!("{op}: expected {n} inputs, the case has {}", ins.len()))
    }
}

/// Runs op `op` of the API on `ins`, returning its outputs.
fn dispatch(op: &str, a: &Args, ins: &[Tensor], dev: &Device) -> R<Vec<Tensor>> {
    macro_rules! unary {
        ($($name:ident),* $(,)?) => {
            match op {
                $(stringify!($name) => {
                    need(ins, 1, op)?;
                    return Ok(vec![ins[0].$name().ctx(op)?]);
                })*
                _ => {}
            }
        };
    }
    macro_rules! binary {
        ($($name:ident),* $(,)?) => {
            match op {
                $(stringify!($name) => {
                    need(ins, 2, op)?;
                    return Ok(vec![ins[0].$name(&ins[1]).ctx(op)?]);
                })*
                _ => {}
            }
        };
    }
    macro_rules! scalar {
        ($($name:ident),* $(,)?) => {
            match op {
                $(stringify!($name) => {
                    need(ins, 1, op)?;
                    return Ok(vec![ins[0].$name(a.f64("scalar")?).ctx(op)?]);
                })*
                _ => {}
            }
        };
    }
    macro_rules! reduce {
        ($($name:ident),* $(,)?) => {
            match op {
                $(stringify!($name) => {
                    need(ins, 1, op)?;
                    return Ok(vec![ins[0].$name(a.i64s("dims")?, a.bool("keepdim")?).ctx(op)?]);
                })*
                _ => {}
            }
        };
    }
    unary!(
        neg, abs, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, erf, gelu, gelu_tanh, silu, softplus, recip,
        square, sign, floor, ceil, round, sum_all, mean_all, max_all, min_all, t, contiguous,
    );
    binary!(add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, matmul);
    scalar!(add_scalar, sub_scalar, mul_scalar, div_scalar, pow_scalar, maximum_scalar, minimum_scalar);
    reduce!(sum, mean, max, min, prod, logsumexp);

    let x1 = || -> R<&Tensor> {
        need(ins, 1, op)?;
        Ok(&ins[0])
    };
    let out = match op {
        "clamp" => x1()?.clamp(a.opt_f64("min")?, a.opt_f64("max")?).ctx(op)?,
        "where_cond" => {
            need(ins, 3, op)?;
            ins[0].where_cond(&ins[1], &ins[2]).ctx(op)?
        }
        "var" => x1()?.var(a.i64s("dims")?, a.usize("correction")?, a.bool("keepdim")?).ctx(op)?,
        "std" => x1()?.std(a.i64s("dims")?, a.usize("correction")?, a.bool("keepdim")?).ctx(op)?,
        "argmax" => x1()?.argmax(a.i64("dim")?, a.bool("keepdim")?).ctx(op)?,
        "argmin" => x1()?.argmin(a.i64("dim")?, a.bool("keepdim")?).ctx(op)?,
        "softmax" => x1()?.softmax(a.i64("dim")?).ctx(op)?,
        "log_softmax" => x1()?.log_softmax(a.i64("dim")?).ctx(op)?,
        "conv2d" => {
            if ins.len() != 2 && ins.len() != 3 {
                return Err(format!("conv2d: expected 2 or 3 inputs, got {}", ins.len()));
            }
            let p = Conv2dParams {
                stride: a.pair("stride")?,
                padding: a.pair("padding")?,
                dilation: a.pair("dilation")?,
                groups: a.usize("groups")?,
            };
            ins[0].conv2d(&ins[1], ins.get(2), &p).ctx(op)?
        }
        "conv_transpose2d" => {
            if ins.len() != 2 && ins.len() != 3 {
                return Err(format!("conv_transpose2d: expected 2 or 3 inputs, got {}", ins.len()));
            }
            let p = ConvTranspose2dParams {
                stride: a.pair("stride")?,
                padding: a.pair("padding")?,
                output_padding: a.pair("output_padding")?,
                dilation: a.pair("dilation")?,
                groups: a.usize("groups")?,
            };
            ins[0].conv_transpose2d(&ins[1], ins.get(2), &p).ctx(op)?
        }
        "max_pool2d" | "max_pool2d_with_indices" => {
            let p = MaxPool2dParams {
                kernel: a.pair("kernel")?,
                stride: a.pair("stride")?,
                padding: a.pair("padding")?,
                dilation: a.pair("dilation")?,
                ceil_mode: a.bool("ceil_mode")?,
            };
            if op == "max_pool2d" {
                x1()?.max_pool2d(&p).ctx(op)?
            } else {
                let (v, i) = x1()?.max_pool2d_with_indices(&p).ctx(op)?;
                return Ok(vec![v, i]);
            }
        }
        "avg_pool2d" => {
            let p = AvgPool2dParams {
                kernel: a.pair("kernel")?,
                stride: a.pair("stride")?,
                padding: a.pair("padding")?,
                ceil_mode: a.bool("ceil_mode")?,
                count_include_pad: a.bool("count_include_pad")?,
            };
            x1()?.avg_pool2d(&p).ctx(op)?
        }
        "adaptive_avg_pool2d" => x1()?.adaptive_avg_pool2d(a.pair("output")?).ctx(op)?,
        "cat" => {
            let refs: Vec<&Tensor> = ins.iter().collect();
            Tensor::cat(&refs, a.i64("dim")?).ctx(op)?
        }
        "stack" => {
            let refs: Vec<&Tensor> = ins.iter().collect();
            Tensor::stack(&refs, a.i64("dim")?).ctx(op)?
        }
        "split" => return x1()?.split(a.usize("size")?, a.i64("dim")?).ctx(op),
        "chunk" => return x1()?.chunk(a.usize("n")?, a.i64("dim")?).ctx(op),
        "index_select" => {
            need(ins, 2, op)?;
            ins[0].index_select(a.i64("dim")?, &ins[1]).ctx(op)?
        }
        "gather" => {
            need(ins, 2, op)?;
            ins[0].gather(a.i64("dim")?, &ins[1]).ctx(op)?
        }
        "scatter_add" => {
            need(ins, 3, op)?;
            ins[0].scatter_add(a.i64("dim")?, &ins[1], &ins[2]).ctx(op)?
        }
        "one_hot" => x1()?.one_hot(a.usize("num_classes")?).ctx(op)?,
        "masked_fill" => {
            need(ins, 2, op)?;
            ins[0].masked_fill(&ins[1], a.f64("value")?).ctx(op)?
        }
        "pad" => x1()?.pad(&a.i64s("pads")?, a.f64("value")?).ctx(op)?,
        "to_dtype" => x1()?.to_dtype(a.dtype("dtype")?).ctx(op)?,
        // shape / view ops
        "reshape" => x1()?.reshape(a.usizes("shape")?).ctx(op)?,
        "permute" => x1()?.permute(a.i64s("dims")?).ctx(op)?,
        "transpose" => x1()?.transpose(a.i64("dim0")?, a.i64("dim1")?).ctx(op)?,
        "expand" => x1()?.expand(a.usizes("shape")?).ctx(op)?,
        "broadcast_to" => x1()?.broadcast_to(a.usizes("shape")?).ctx(op)?,
        "narrow" => x1()?.narrow(a.i64("dim")?, a.usize("start")?, a.usize("len")?).ctx(op)?,
        "slice" => x1()?.slice(a.i64("dim")?, a.usize("start")?, a.usize("end")?, a.usize("step")?).ctx(op)?,
        "squeeze" => x1()?.squeeze(a.i64("dim")?).ctx(op)?,
        "unsqueeze" => x1()?.unsqueeze(a.i64("dim")?).ctx(op)?,
        "flatten" => x1()?.flatten(a.i64("start_dim")?, a.i64("end_dim")?).ctx(op)?,
        // creation
        "arange" => {
            need(ins, 0, op)?;
            Tensor::arange(a.f64("start")?, a.f64("end")?, a.f64("step")?, a.dtype("dtype")?, dev).ctx(op)?
        }
        "linspace" => {
            need(ins, 0, op)?;
            Tensor::linspace(a.f64("start")?, a.f64("end")?, a.usize("steps")?, a.dtype("dtype")?, dev).ctx(op)?
        }
        "eye" => {
            need(ins, 0, op)?;
            Tensor::eye(a.usize("n")?, a.dtype("dtype")?, dev).ctx(op)?
        }
        "full" => {
            need(ins, 0, op)?;
            Tensor::full(a.usizes("shape")?, a.f64("value")?, a.dtype("dtype")?, dev).ctx(op)?
        }
        "zeros" => {
            need(ins, 0, op)?;
            Tensor::zeros(a.usizes("shape")?, a.dtype("dtype")?, dev).ctx(op)?
        }
        "ones" => {
            need(ins, 0, op)?;
            Tensor::ones(a.usizes("shape")?, a.dtype("dtype")?, dev).ctx(op)?
        }
        _ => {
            return Err(format!("unknown op {op:?} (harness does not know it)"));
        }
    };
    Ok(vec![out])
}

// ----------------------------------------------------------------------------- comparison

struct Mismatch {
    msg: String,
}

fn fmt_shape(s: &[usize]) -> String {
    format!("{s:?}")
}

/// Compares `got` with `exp`; returns the max abs error on success.
fn compare(got: &Tensor, exp: &Expected, rtol: f64, atol: f64) -> std::result::Result<f64, Mismatch> {
    if got.dims() != exp.shape.as_slice() {
        return Err(Mismatch {
            msg: format!("shape: expected {}, got {}", fmt_shape(&exp.shape), fmt_shape(got.dims())),
        });
    }
    if got.dtype() != exp.dtype {
        return Err(Mismatch { msg: format!("dtype: expected {:?}, got {:?}", exp.dtype, got.dtype()) });
    }
    let vals = got
        .to_dtype(DType::F64)
        .and_then(|t| t.to_vec::<f64>())
        .map_err(|e| Mismatch { msg: format!("reading the result: {e}") })?;
    if vals.len() != exp.values.len() {
        return Err(Mismatch { msg: format!("numel: expected {}, got {} values", exp.values.len(), vals.len()) });
    }
    let exact = !exp.dtype.is_float();
    let mut max_err = 0f64;
    let mut bad = 0usize;
    let mut first_bad: Option<usize> = None;
    for (i, (&g, &e)) in vals.iter().zip(exp.values.iter()).enumerate() {
        let ok = if e.is_nan() {
            g.is_nan()
        } else if e.is_infinite() || exact {
            g == e
        } else {
            (g - e).abs() <= atol + rtol * e.abs()
        };
        let err = if (e.is_nan() && g.is_nan()) || e == g { 0.0 } else { (g - e).abs() };
        // NaN errors (a NaN where a number was expected) count as infinite
        max_err = max_err.max(if err.is_nan() { f64::INFINITY } else { err });
        if !ok {
            bad += 1;
            first_bad.get_or_insert(i);
        }
    }
    if let Some(i) = first_bad {
        // the first mismatch plus a few following values help diagnose
        let hi = (i + 4).min(vals.len());
        return Err(Mismatch {
            msg: format!(
                "{bad}/{} values off (rtol {rtol:e}, atol {atol:e}), max abs err {max_err:e}; first at flat index \
                 {i}: expected {:?}, got {:?}; expected[{i}..{hi}] = {:?}, got[{i}..{hi}] = {:?}",
                vals.len(),
                exp.values[i],
                vals[i],
                &exp.values[i..hi],
                &vals[i..hi]
            ),
        });
    }
    Ok(max_err)
}

// ----------------------------------------------------------------------------- test

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs one case: builds inputs, dispatches, compares every output.
fn run_case(fx: &Fixtures, case: &Value) -> R<()> {
    let op = case["op"].as_str().ok_or("case without op")?;
    let rtol = case["rtol"].as_f64().ok_or("case without rtol")?;
    let atol = case["atol"].as_f64().ok_or("case without atol")?;
    let ins: Vec<Tensor> =
        case["inputs"].as_array().ok_or("case without inputs")?.iter().map(|spec| fx.input(spec)).collect::<R<_>>()?;
    let in_shapes: Vec<String> = ins.iter().map(|t| fmt_shape(t.dims())).collect();
    let out_keys = case["outputs"].as_array().ok_or("case without outputs")?;
    let args = Args(&case["args"]);
    let outs = dispatch(op, &args, &ins, &fx.dev).map_err(|e| format!("inputs {}: {e}", in_shapes.join(" ")))?;
    if outs.len() != out_keys.len() {
        return Err(format!(
            "inputs {}: expected {} outputs, got {} (shapes {:?})",
            in_shapes.join(" "),
            out_keys.len(),
            outs.len(),
            outs.iter().map(|t| t.dims().to_vec()).collect::<Vec<_>>()
        ));
    }
    let mut errs = Vec::new();
    for (i, (got, key)) in outs.iter().zip(out_keys).enumerate() {
        let key = key.as_str().ok_or("output key is not a string")?;
        let exp = fx.expected(key)?;
        if let Err(m) = compare(got, &exp, rtol, atol) {
            errs.push(format!("out{i} {}: {}", fmt_shape(&exp.shape), m.msg));
        }
        if op == "contiguous" && !got.is_contiguous() {
            errs.push(format!("out{i}: contiguous() returned a non-contiguous tensor"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("inputs {}: {}", in_shapes.join(" "), errs.join("; ")))
    }
}

#[test]
fn golden_against_pytorch() {
    let dir = golden_dir();
    let cases_text = std::fs::read_to_string(dir.join("cases.json")).expect("read tests/golden/cases.json");
    let cases: Vec<Value> = serde_json::from_str(&cases_text).expect("parse cases.json");
    let bytes = std::fs::read(dir.join("fixtures.safetensors")).expect("read tests/golden/fixtures.safetensors");
    let fx = Fixtures { st: SafeTensors::deserialize(&bytes).expect("parse fixtures.safetensors"), dev: Device::cpu() };
    let filter = std::env::var("GOLDEN_FILTER").ok().filter(|s| !s.is_empty());
    let selected: Vec<&Value> = cases
        .iter()
        .filter(|c| match &filter {
            None => true,
            Some(f) => {
                c["name"].as_str().is_some_and(|n| n.contains(f.as_str()))
                    || c["op"].as_str().is_some_and(|n| n == f.as_str())
            }
        })
        .collect();

    // Panics inside the crate are recorded as failures; keep their default
    // report (with backtrace hint) quiet while the cases run.
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut run = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let mut failed_ops: std::collections::BTreeMap<String, usize> = Default::default();
    for case in &selected {
        let name = case["name"].as_str().unwrap_or("<unnamed>");
        let op = case["op"].as_str().unwrap_or("<no op>");
        run += 1;
        let res = match catch_unwind(AssertUnwindSafe(|| run_case(&fx, case))) {
            Ok(r) => r,
            Err(p) => Err(format!("PANIC: {}", panic_message(p.as_ref()))),
        };
        if let Err(e) = res {
            *failed_ops.entry(op.to_string()).or_default() += 1;
            failures.push(format!("{name} [{op}]: {e}"));
        }
    }
    std::panic::set_hook(prev_hook);

    let passed = run - failures.len();
    println!(
        "golden: {run} cases run ({} in cases.json{}), {passed} passed, {} failed",
        cases.len(),
        filter.as_ref().map(|f| format!(", filter {f:?}")).unwrap_or_default(),
        failures.len()
    );
    if !failed_ops.is_empty() {
        println!("golden: failures by op: {failed_ops:?}");
    }
    assert!(run >= selected.len(), "only {run} of {} cases ran", selected.len());
    if filter.is_none() {
        assert!(run >= cases.len(), "only {run} of {} cases ran", cases.len());
    }
    if !failures.is_empty() {
        let mut msg = format!("{} of {run} golden cases failed:\n", failures.len());
        for f in &failures {
            msg.push_str("  - ");
            msg.push_str(f);
            msg.push('\n');
        }
        panic!("{msg}");
    }
}
