//! Error paths of the public API: wrong shapes, dtypes, dims and devices must
//! return `Err` (never panic, never silently succeed where PyTorch raises), and
//! the error's message must name the op and, for shape errors, the shapes.
//!
//! `conv_transpose2d_empty_kernel`, `empty_view_with_offset` and
//! `matmul_empty_inner_dim_strided` are regression tests for panics that
//! `tests/no_panic.rs` found.

use oar_tensor::{
    AvgPool2dParams, Backend, BackendStorage, Conv2dParams, ConvTranspose2dParams, CpuStorage, DType, Device,
    DeviceLocation, Error, ErrorKind, Layout, MaxPool2dParams, Op, OpInput, Result, Storage, Storages, Tensor,
    TensorMeta,
};
use std::any::Any;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

// ---------------------------------------------------------------- helpers

fn cpu() -> Device {
    Device::cpu()
}

/// A float tensor `0, 1, 2, ...` of `shape` and `dtype`.
fn t(shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::arange(0.0, n as f64, 1.0, DType::F64, &cpu()).unwrap().reshape(shape).unwrap().to_dtype(dtype).unwrap()
}

fn f32t(shape: &[usize]) -> Tensor {
    t(shape, DType::F32)
}

fn idx(values: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &cpu()).unwrap()
}

/// Runs `f`, asserting that it neither panics nor succeeds, and returns the
/// error's Display message.
#[track_caller]
fn err_msg<T: Debug>(what: &str, f: impl FnOnce() -> Result<T>) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(p) => panic!("{what}: panicked: {}", panic_text(&*p)),
        Ok(Ok(v)) => panic!("{what}: expected an error, got Ok({v:?})"),
        Ok(Err(e)) => e.to_string(),
    }
}

/// Asserts an error whose message contains every one of `needles`.
#[track_caller]
fn expect_err<T: Debug>(what: &str, needles: &[&str], f: impl FnOnce() -> Result<T>) -> String {
    let msg = err_msg(what, f);
    for n in needles {
        assert!(msg.contains(n), "{what}: error message {msg:?} does not contain {n:?}");
    }
    msg
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".into()
    }
}

const FLOATS: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];
const INTS: [DType; 3] = [DType::I64, DType::I32, DType::U8];

// ---------------------------------------------------------------- unary / clamp

type UnaryFn = fn(&Tensor) -> Result<Tensor>;

fn unary_ops() -> Vec<(&'static str, UnaryFn, bool)> {
    // (name, method, defined on integers)
    vec![
        ("neg", Tensor::neg, true),
        ("abs", Tensor::abs, true),
        ("exp", Tensor::exp, false),
        ("log", Tensor::log, false),
        ("sqrt", Tensor::sqrt, false),
        ("rsqrt", Tensor::rsqrt, false),
        ("sin", Tensor::sin, false),
        ("cos", Tensor::cos, false),
        ("tanh", Tensor::tanh, false),
        ("sigmoid", Tensor::sigmoid, false),
        ("relu", Tensor::relu, true),
        ("gelu", Tensor::gelu, false),
        ("gelu_tanh", Tensor::gelu_tanh, false),
        ("silu", Tensor::silu, false),
        ("softplus", Tensor::softplus, false),
        ("recip", Tensor::recip, false),
        ("square", Tensor::square, true),
        ("sign", Tensor::sign, true),
        ("floor", Tensor::floor, false),
        ("ceil", Tensor::ceil, false),
        ("round", Tensor::round, false),
    ]
}

#[test]
fn unary_wrong_dtype() {
    for (name, f, ints) in unary_ops() {
        // Bool is never accepted.
        let b = t(&[2, 3], DType::Bool);
        expect_err(name, &[name, "bool"], || f(&b));
        for dt in INTS {
            let x = t(&[2, 3], dt);
            if ints {
                assert!(f(&x).is_ok(), "{name} on {dt} should work");
            } else {
                expect_err(name, &[name, dt.as_str()], || f(&x));
            }
        }
        for dt in FLOATS {
            assert!(f(&t(&[2, 3], dt)).is_ok(), "{name} on {dt} should work");
        }
    }
}

#[test]
fn clamp_errors() {
    let b = t(&[2, 2], DType::Bool);
    expect_err("clamp bool", &["clamp", "bool"], || b.clamp(Some(0.0), Some(1.0)));
    let x = f32t(&[2, 2]);
    expect_err("clamp no bounds", &["clamp"], || x.clamp(None, None));
    assert!(x.clamp(Some(1.0), None).is_ok());
    assert!(t(&[2, 2], DType::I32).clamp(None, Some(1.0)).is_ok());
}

// ---------------------------------------------------------------- binary / scalar

type BinFn = fn(&Tensor, &Tensor) -> Result<Tensor>;
type ScalarFn = fn(&Tensor, f64) -> Result<Tensor>;

fn binary_ops() -> Vec<(&'static str, BinFn, &'static str, ScalarFn, bool)> {
    // (name, tensor form, scalar name, scalar form, float only)
    vec![
        ("add", Tensor::add, "add_scalar", Tensor::add_scalar, false),
        ("sub", Tensor::sub, "sub_scalar", Tensor::sub_scalar, false),
        ("mul", Tensor::mul, "mul_scalar", Tensor::mul_scalar, false),
        ("div", Tensor::div, "div_scalar", Tensor::div_scalar, true),
        ("pow", Tensor::pow, "pow_scalar", Tensor::pow_scalar, false),
        ("maximum", Tensor::maximum, "maximum_scalar", Tensor::maximum_scalar, false),
        ("minimum", Tensor::minimum, "minimum_scalar", Tensor::minimum_scalar, false),
    ]
}

#[test]
fn binary_shape_mismatch() {
    for (name, f, ..) in binary_ops() {
        let (a, b) = (f32t(&[2, 3]), f32t(&[4]));
        expect_err(name, &[name, "shape", "[2, 3]", "[4]"], || f(&a, &b));
        let (a, b) = (f32t(&[2, 3, 4]), f32t(&[3, 3, 1]));
        expect_err(name, &[name, "[2, 3, 4]", "[3, 3, 1]"], || f(&a, &b));
        // Zero-size dims broadcast only against 0 or 1.
        let (a, b) = (f32t(&[0, 3]), f32t(&[2, 3]));
        expect_err(name, &[name, "[0, 3]", "[2, 3]"], || f(&a, &b));
        // Valid broadcasts still work.
        assert_eq!(f(&f32t(&[2, 1, 3]), &f32t(&[4, 1])).unwrap().dims(), &[2, 4, 3]);
        assert_eq!(f(&f32t(&[0, 3]), &f32t(&[1, 3])).unwrap().dims(), &[0, 3]);
    }
}

#[test]
fn binary_dtype_mismatch() {
    for (name, f, sname, sf, float_only) in binary_ops() {
        let (a, b) = (f32t(&[2, 3]), t(&[2, 3], DType::F64));
        expect_err(name, &[name, "f32", "f64"], || f(&a, &b));
        let (a, b) = (t(&[2], DType::I64), t(&[2], DType::I32));
        expect_err(name, &[name, "i64", "i32"], || f(&a, &b));
        let (a, b) = (t(&[2], DType::Bool), t(&[2], DType::Bool));
        expect_err(name, &[name, "bool"], || f(&a, &b));
        expect_err(sname, &[sname, "bool"], || sf(&a, 1.0));
        for dt in INTS {
            let x = t(&[2], dt);
            if float_only {
                expect_err(name, &[name, dt.as_str()], || f(&x, &x));
                expect_err(sname, &[sname, dt.as_str()], || sf(&x, 2.0));
            } else {
                assert!(f(&x, &x).is_ok(), "{name} on {dt}");
                assert!(sf(&x, 2.0).is_ok(), "{sname} on {dt}");
            }
        }
    }
}

/// As PyTorch: "Integers to negative integer powers are not allowed".
#[test]
fn int_pow_scalar_negative_exponent() {
    let x = t(&[3], DType::I64);
    expect_err("pow_scalar(-1) on i64", &["pow_scalar"], || x.pow_scalar(-1.0));
}

// ---------------------------------------------------------------- comparisons / where / masked_fill

#[test]
fn compare_errors() {
    let ops: Vec<(&str, BinFn)> = vec![
        ("eq", Tensor::eq),
        ("ne", Tensor::ne),
        ("lt", Tensor::lt),
        ("le", Tensor::le),
        ("gt", Tensor::gt),
        ("ge", Tensor::ge),
    ];
    for (name, f) in ops {
        let (a, b) = (f32t(&[2, 3]), f32t(&[3, 2]));
        expect_err(name, &[name, "[2, 3]", "[3, 2]"], || f(&a, &b));
        let (a, b) = (f32t(&[2, 3]), t(&[2, 3], DType::I64));
        expect_err(name, &[name, "f32", "i64"], || f(&a, &b));
        let out = f(&a, &f32t(&[3])).unwrap();
        assert_eq!(out.dtype(), DType::Bool);
        assert_eq!(out.dims(), &[2, 3]);
    }
}

#[test]
fn where_errors() {
    let cond = t(&[2, 3], DType::Bool);
    let (a, b) = (f32t(&[2, 3]), f32t(&[2, 3]));
    // Condition must be bool.
    let fcond = f32t(&[2, 3]);
    expect_err("where f32 cond", &["where", "bool", "f32"], || fcond.where_cond(&a, &b));
    // Branches must share a dtype.
    let b64 = t(&[2, 3], DType::F64);
    expect_err("where dtype", &["where", "f32", "f64"], || cond.where_cond(&a, &b64));
    // Shapes must broadcast.
    let b4 = f32t(&[4]);
    expect_err("where shape", &["where", "[4]"], || cond.where_cond(&a, &b4));
    let c4 = t(&[4, 1, 1], DType::Bool);
    expect_err("where cond shape", &["where", "[3, 3]"], || c4.where_cond(&f32t(&[2, 3]), &f32t(&[3, 3])));
    assert_eq!(cond.where_cond(&f32t(&[3]), &f32t(&[2, 1])).unwrap().dims(), &[2, 3]);
}

#[test]
fn masked_fill_shape_errors() {
    let x = f32t(&[2, 3]);
    // A mask that broadcasts to a larger shape than x.
    let big = t(&[4, 2, 3], DType::Bool);
    expect_err("masked_fill larger mask", &["masked_fill", "[2, 3]", "[4, 2, 3]"], || x.masked_fill(&big, 0.0));
    assert!(x.masked_fill(&t(&[3], DType::Bool), 0.0).is_ok());
}

#[test]
fn masked_fill_errors_name_the_op() {
    let x = f32t(&[2, 3]);
    let fmask = f32t(&[2, 3]);
    expect_err("masked_fill f32 mask", &["masked_fill", "f32"], || x.masked_fill(&fmask, 0.0));
    let bad = t(&[4], DType::Bool);
    expect_err("masked_fill mask shape", &["masked_fill", "[2, 3]", "[4]"], || x.masked_fill(&bad, 0.0));
}

// ---------------------------------------------------------------- casts / host reads / creation

#[test]
fn casts_between_all_dtypes_work() {
    for from in DType::ALL {
        let x = t(&[2, 3], from).t().unwrap();
        for to in DType::ALL {
            let y = x.to_dtype(to).unwrap();
            assert_eq!(y.dtype(), to);
            assert_eq!(y.dims(), &[3, 2]);
        }
    }
}

#[test]
fn to_vec_wrong_type() {
    let x = f32t(&[2, 3]);
    expect_err("to_vec::<f64>", &["to_vec", "f32", "f64"], || x.to_vec::<f64>());
    expect_err("to_vec::<i64>", &["to_vec", "i64"], || x.to_vec::<i64>());
    let b = t(&[2], DType::Bool);
    expect_err("to_vec::<u8> on bool", &["to_vec", "bool", "u8"], || b.to_vec::<u8>());
    // After a cast the type matches.
    assert!(x.to_dtype(DType::I64).unwrap().to_vec::<i64>().is_ok());
    expect_err("to_scalar::<i32> on f32", &["to_vec", "i32"], || f32t(&[]).to_scalar::<i32>());
}

#[test]
fn to_scalar_many_elements() {
    let x = f32t(&[2, 3]);
    expect_err("to_scalar", &["to_scalar", "[2, 3]"], || x.to_scalar::<f32>());
    expect_err("to_scalar empty", &["to_scalar", "[0]"], || f32t(&[0]).to_scalar::<f32>());
    expect_err("item", &["item", "[2, 3]"], || x.item());
    assert_eq!(f32t(&[1, 1]).to_scalar::<f32>().unwrap(), 0.0);
    assert_eq!(f32t(&[]).to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn creation_errors() {
    let dev = cpu();
    expect_err("from_vec", &["from_vec", "[2, 3]", "5"], || Tensor::from_vec(vec![1f32; 5], [2, 3], &dev));
    expect_err("from_vec 0-d", &["from_vec", "[]"], || Tensor::from_vec(Vec::<i64>::new(), (), &dev));
    expect_err("from_slice", &["from_vec", "[4]"], || Tensor::from_slice(&[1u8, 2], [4], &dev));
    expect_err("arange zero step", &["arange"], || Tensor::arange(0.0, 10.0, 0.0, DType::F32, &dev));
    expect_err("arange nan", &["arange"], || Tensor::arange(0.0, f64::NAN, 1.0, DType::F32, &dev));
    expect_err("arange inf", &["arange"], || Tensor::arange(0.0, f64::INFINITY, 1.0, DType::F32, &dev));
    expect_err("arange wrong direction", &["arange"], || Tensor::arange(0.0, 10.0, -1.0, DType::I64, &dev));
    for dt in [DType::I64, DType::I32, DType::U8, DType::Bool] {
        expect_err("rand int", &["rand", dt.as_str()], || Tensor::rand([2], dt, &dev));
        expect_err("randn int", &["randn", dt.as_str()], || Tensor::randn([2], dt, &dev));
        let mut g = oar_tensor::Generator::new(1);
        expect_err("rand_with int", &["rand", dt.as_str()], || Tensor::rand_with(&mut g, [2], dt, &dev));
    }
    assert!(Tensor::rand([2], DType::BF16, &dev).is_ok());
    expect_err("requires_grad int", &["requires_grad", "i64"], || t(&[2], DType::I64).with_requires_grad(true));
}

#[test]
fn arange_too_many_elements() {
    expect_err("arange 1e300 elements", &["arange"], || Tensor::arange(0.0, 1.0, 1e-300, DType::F32, &cpu()));
}

#[test]
fn eye_too_large() {
    expect_err("eye(2^33)", &["eye"], || Tensor::eye(1 << 33, DType::F32, &cpu()));
}

#[test]
fn shape_numel_overflow() {
    let big = [1usize << 33, 1 << 33];
    err_msg("zeros with overflowing numel", || Tensor::zeros(big, DType::F32, &cpu()));
    err_msg("reshape to overflowing numel", || f32t(&[4]).reshape(big));
    err_msg("expand to overflowing numel", || f32t(&[1, 1]).expand(big));
}

// ---------------------------------------------------------------- reductions

#[test]
fn reduction_dim_errors() {
    let x = f32t(&[2, 3]);
    expect_err("sum dim 2", &["sum", "dim 2", "[2, 3]"], || x.sum(2, false));
    expect_err("sum dim -3", &["sum", "-3", "[2, 3]"], || x.sum(-3, false));
    expect_err("sum repeated", &["sum", "repeated"], || x.sum([1, -1], false));
    expect_err("mean dim", &["mean", "[2, 3]"], || x.mean([0, 5], true));
    expect_err("max dim", &["max", "[2, 3]"], || x.max(7, false));
    expect_err("min dim", &["min", "[2, 3]"], || x.min(-4, false));
    expect_err("prod dim", &["prod", "[2, 3]"], || x.prod(2, false));
    expect_err("logsumexp dim", &["logsumexp", "[2, 3]"], || x.logsumexp(2, false));
    expect_err("var dim", &["var", "[2, 3]"], || x.var(2, 1, false));
    expect_err("std dim", &["var", "[2, 3]"], || x.std(2, 1, false));
    expect_err("argmax dim", &["argmax", "[2, 3]"], || x.argmax(2, false));
    expect_err("argmin dim", &["argmin", "[2, 3]"], || x.argmin(-3, false));
    expect_err("softmax dim", &["softmax", "[2, 3]"], || x.softmax(2));
    expect_err("log_softmax dim", &["log_softmax", "[2, 3]"], || x.log_softmax(-3));
    // A 0-d tensor has no dim 1.
    expect_err("sum 0-d", &["sum", "[]"], || f32t(&[]).sum(1, false));
}

#[test]
fn reduction_dtype_errors() {
    for dt in [DType::I64, DType::I32, DType::U8, DType::Bool] {
        let x = t(&[2, 3], dt);
        let s = dt.as_str();
        expect_err("mean int", &["mean", s], || x.mean(0, false));
        expect_err("mean_all int", &["mean", s], || x.mean_all());
        expect_err("logsumexp int", &["logsumexp", s], || x.logsumexp(1, false));
        expect_err("var int", &["var", s], || x.var(0, 1, false));
        expect_err("std int", &["var", s], || x.std(0, 1, false));
        expect_err("softmax int", &["softmax", s], || x.softmax(1));
        expect_err("log_softmax int", &["log_softmax", s], || x.log_softmax(1));
        // Integer sums and products promote to i64, as PyTorch.
        assert_eq!(x.sum(0, false).unwrap().dtype(), DType::I64);
        assert_eq!(x.prod(0, false).unwrap().dtype(), DType::I64);
    }
}

#[test]
fn reduction_empty_errors() {
    let x = f32t(&[2, 0]);
    expect_err("max over empty", &["max", "[2, 0]"], || x.max(1, false));
    expect_err("min over empty", &["min", "[2, 0]"], || x.min(1, false));
    expect_err("max_all empty", &["max", "[2, 0]"], || x.max_all());
    expect_err("argmax over empty", &["argmax", "[2, 0]"], || x.argmax(1, false));
    expect_err("argmin over empty", &["argmin", "[2, 0]"], || x.argmin(-1, true));
    // Reducing a non-empty dim of an empty tensor is fine.
    assert_eq!(x.max(0, false).unwrap().dims(), &[0]);
    assert_eq!(x.sum(1, false).unwrap().to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
}

#[test]
fn argmax_bool() {
    let b = t(&[2, 3], DType::Bool);
    expect_err("argmax bool", &["argmax", "bool"], || b.argmax(1, false));
    expect_err("argmin bool", &["argmin", "bool"], || b.argmin(1, false));
}

// ---------------------------------------------------------------- views

#[test]
fn view_errors() {
    let x = f32t(&[2, 3]);
    expect_err("reshape", &["reshape", "[2, 3]", "[4]"], || x.reshape([4]));
    expect_err("reshape non-contiguous", &["reshape", "[3, 2]", "[7]"], || x.t().unwrap().reshape([7]));
    expect_err("permute short", &["permute", "[2, 3]"], || x.permute([0]));
    expect_err("permute repeated", &["permute", "repeated"], || x.permute([0, 0]));
    expect_err("permute out of range", &["permute", "[2, 3]"], || x.permute([0, 2]));
    expect_err("transpose", &["transpose", "[2, 3]"], || x.transpose(0, 2));
    expect_err("t rank 3", &["t", "[2, 3, 4]"], || f32t(&[2, 3, 4]).t());
    expect_err("expand", &["expand", "[2, 3]", "[2, 4]"], || x.expand([2, 4]));
    expect_err("expand lower rank", &["expand", "[2, 3]", "[3]"], || x.expand([3]));
    expect_err("broadcast_to", &["expand", "[2, 3]", "[3, 3]"], || x.broadcast_to([3, 3]));
    expect_err("narrow dim", &["narrow", "[2, 3]"], || x.narrow(2, 0, 1));
    expect_err("narrow range", &["narrow", "[2, 3]"], || x.narrow(1, 2, 2));
    expect_err("narrow overflow", &["narrow"], || x.narrow(1, usize::MAX, 2));
    expect_err("slice dim", &["slice", "[2, 3]"], || x.slice(-3, 0, 1, 1));
    expect_err("slice step 0", &["slice", "step"], || x.slice(1, 0, 3, 0));
    expect_err("squeeze", &["squeeze", "[2, 3]"], || x.squeeze(2));
    expect_err("unsqueeze", &["unsqueeze", "[2, 3]"], || x.unsqueeze(3));
    expect_err("unsqueeze neg", &["unsqueeze", "[2, 3]"], || x.unsqueeze(-4));
    expect_err("flatten dim", &["flatten", "[2, 3]"], || x.flatten(0, 2));
    expect_err("flatten order", &["flatten"], || f32t(&[2, 3, 4]).flatten(2, 1));
    expect_err("split size 0", &["split"], || x.split(0, 1));
    expect_err("split dim", &["split", "[2, 3]"], || x.split(1, 2));
    expect_err("split_sizes", &["split", "[2, 3]"], || x.split_sizes(&[1, 1], 1));
    expect_err("chunk 0", &["chunk"], || x.chunk(0, 0));
    expect_err("chunk dim", &["chunk", "[2, 3]"], || x.chunk(2, -3));
    expect_err("size", &["size", "[2, 3]"], || x.size(2));
    // Valid edge cases.
    assert_eq!(x.unsqueeze(2).unwrap().dims(), &[2, 3, 1]);
    assert_eq!(x.unsqueeze(-3).unwrap().dims(), &[1, 2, 3]);
    assert_eq!(x.slice(1, 5, 9, 2).unwrap().dims(), &[2, 0]);
    assert_eq!(x.squeeze(0).unwrap().dims(), &[2, 3]);
    assert_eq!(f32t(&[]).flatten(0, 0).unwrap().dims(), &[1]);
    assert_eq!(x.chunk(4, 1).unwrap().len(), 3);
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_errors() {
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![2, 3], vec![4, 5]),
        (vec![3], vec![4]),
        (vec![3], vec![4, 5]),
        (vec![2, 3], vec![4]),
        (vec![2, 2, 3], vec![3, 3, 4]),
        (vec![5, 2, 3], vec![4, 3, 2]),
        (vec![], vec![3]),
        (vec![3], vec![]),
    ];
    for (sa, sb) in cases {
        let (a, b) = (f32t(&sa), f32t(&sb));
        let fa = format!("{sa:?}");
        let fb = format!("{sb:?}");
        expect_err(&format!("matmul {fa} @ {fb}"), &["matmul", &fa, &fb], || a.matmul(&b));
    }
    let (a, b) = (f32t(&[2, 3]), t(&[3, 2], DType::F64));
    expect_err("matmul dtype", &["matmul", "f32", "f64"], || a.matmul(&b));
    let bb = t(&[2, 2], DType::Bool);
    expect_err("matmul bool", &["matmul", "bool"], || bb.matmul(&bb));
    // Valid torch.matmul shapes.
    assert_eq!(f32t(&[3]).matmul(&f32t(&[3])).unwrap().dims(), &[] as &[usize]);
    assert_eq!(f32t(&[3]).matmul(&f32t(&[2, 3, 4])).unwrap().dims(), &[2, 4]);
    assert_eq!(f32t(&[5, 1, 2, 3]).matmul(&f32t(&[4, 3, 2])).unwrap().dims(), &[5, 4, 2, 2]);
}

// ---------------------------------------------------------------- conv

#[test]
fn conv2d_errors() {
    let p = Conv2dParams::default();
    let x = f32t(&[1, 3, 5, 5]);
    let w = f32t(&[4, 3, 3, 3]);
    assert_eq!(x.conv2d(&w, None, &p).unwrap().dims(), &[1, 4, 3, 3]);
    // Input rank.
    let x2 = f32t(&[5, 5]);
    expect_err("conv2d 2-d input", &["conv2d", "[5, 5]"], || x2.conv2d(&w, None, &p));
    let x5 = f32t(&[1, 1, 3, 5, 5]);
    expect_err("conv2d 5-d input", &["conv2d", "[1, 1, 3, 5, 5]"], || x5.conv2d(&w, None, &p));
    // Channel mismatch.
    let w2 = f32t(&[4, 2, 3, 3]);
    expect_err("conv2d channels", &["conv2d", "[1, 3, 5, 5]", "[4, 2, 3, 3]"], || x.conv2d(&w2, None, &p));
    // Weight rank.
    let w3 = f32t(&[4, 3, 3]);
    expect_err("conv2d 3-d weight", &["conv2d", "[4, 3, 3]"], || x.conv2d(&w3, None, &p));
    // Groups.
    let g2 = Conv2dParams { groups: 2, ..p };
    expect_err("conv2d groups", &["conv2d", "groups"], || x.conv2d(&w, None, &g2));
    let g0 = Conv2dParams { groups: 0, ..p };
    expect_err("conv2d groups 0", &["conv2d"], || x.conv2d(&w, None, &g0));
    // Kernel larger than the padded input.
    let wbig = f32t(&[4, 3, 7, 7]);
    expect_err("conv2d kernel too big", &["conv2d"], || x.conv2d(&wbig, None, &p));
    // Zero stride / dilation.
    expect_err("conv2d stride 0", &["conv2d"], || x.conv2d(&w, None, &Conv2dParams { stride: [0, 1], ..p }));
    expect_err("conv2d dilation 0", &["conv2d"], || x.conv2d(&w, None, &Conv2dParams { dilation: [1, 0], ..p }));
    // Bias.
    let b3 = f32t(&[3]);
    expect_err("conv2d bias shape", &["conv2d", "[3]"], || x.conv2d(&w, Some(&b3), &p));
    let b64 = t(&[4], DType::F64);
    expect_err("conv2d bias dtype", &["conv2d", "f64"], || x.conv2d(&w, Some(&b64), &p));
    // Dtypes.
    let w64 = t(&[4, 3, 3, 3], DType::F64);
    expect_err("conv2d weight dtype", &["conv2d", "f32", "f64"], || x.conv2d(&w64, None, &p));
    let xi = t(&[1, 3, 5, 5], DType::I64);
    let wi = t(&[4, 3, 3, 3], DType::I64);
    expect_err("conv2d int", &["conv2d", "i64"], || xi.conv2d(&wi, None, &p));
}

#[test]
fn conv_transpose2d_errors() {
    let p = ConvTranspose2dParams::default();
    let x = f32t(&[1, 3, 4, 4]);
    let w = f32t(&[3, 2, 3, 3]);
    assert_eq!(x.conv_transpose2d(&w, None, &p).unwrap().dims(), &[1, 2, 6, 6]);
    let x2 = f32t(&[4, 4]);
    expect_err("conv_transpose2d 2-d input", &["conv_transpose2d", "[4, 4]"], || x2.conv_transpose2d(&w, None, &p));
    let w2 = f32t(&[2, 2, 3, 3]);
    expect_err("conv_transpose2d channels", &["conv_transpose2d", "[1, 3, 4, 4]", "[2, 2, 3, 3]"], || {
        x.conv_transpose2d(&w2, None, &p)
    });
    let w3 = f32t(&[3, 2, 3]);
    expect_err("conv_transpose2d 3-d weight", &["conv_transpose2d", "[3, 2, 3]"], || x.conv_transpose2d(&w3, None, &p));
    let g2 = ConvTranspose2dParams { groups: 2, ..p };
    expect_err("conv_transpose2d groups", &["conv_transpose2d", "groups"], || x.conv_transpose2d(&w, None, &g2));
    let g0 = ConvTranspose2dParams { groups: 0, ..p };
    expect_err("conv_transpose2d groups 0", &["conv_transpose2d"], || x.conv_transpose2d(&w, None, &g0));
    let s0 = ConvTranspose2dParams { stride: [0, 1], ..p };
    expect_err("conv_transpose2d stride 0", &["conv_transpose2d"], || x.conv_transpose2d(&w, None, &s0));
    let op = ConvTranspose2dParams { output_padding: [1, 0], ..p };
    expect_err("conv_transpose2d output_padding", &["conv_transpose2d", "output_padding"], || {
        x.conv_transpose2d(&w, None, &op)
    });
    let pad = ConvTranspose2dParams { padding: [3, 3], ..p };
    expect_err("conv_transpose2d padding", &["conv_transpose2d"], || x.conv_transpose2d(&w, None, &pad));
    let b = f32t(&[3]);
    expect_err("conv_transpose2d bias", &["conv_transpose2d", "[3]"], || x.conv_transpose2d(&w, Some(&b), &p));
    let w64 = t(&[3, 2, 3, 3], DType::F64);
    expect_err("conv_transpose2d dtype", &["conv_transpose2d", "f32", "f64"], || x.conv_transpose2d(&w64, None, &p));
    let xi = t(&[1, 3, 4, 4], DType::I32);
    let wi = t(&[3, 2, 3, 3], DType::I32);
    expect_err("conv_transpose2d int", &["conv_transpose2d", "i32"], || xi.conv_transpose2d(&wi, None, &p));
}

/// Regression test: a zero-size kernel used to panic in conv_transpose2d.
#[test]
fn conv_transpose2d_empty_kernel() {
    let x = f32t(&[1, 3, 4, 4]);
    let w = f32t(&[3, 2, 0, 3]);
    expect_err("conv_transpose2d kernel 0", &["conv_transpose2d"], || {
        x.conv_transpose2d(&w, None, &ConvTranspose2dParams::default())
    });
}

// ---------------------------------------------------------------- pooling

#[test]
fn pooling_errors() {
    let x = f32t(&[1, 2, 4, 4]);
    let mp = MaxPool2dParams::new(2);
    let ap = AvgPool2dParams::new(2);
    assert_eq!(x.max_pool2d(&mp).unwrap().dims(), &[1, 2, 2, 2]);
    for shape in [vec![4usize, 4], vec![4], vec![1, 1, 2, 4, 4]] {
        let y = f32t(&shape);
        let s = format!("{shape:?}");
        expect_err("max_pool2d rank", &["max_pool2d", &s], || y.max_pool2d(&mp));
        expect_err("max_pool2d_with_indices rank", &["max_pool2d", &s], || y.max_pool2d_with_indices(&mp));
        expect_err("avg_pool2d rank", &["avg_pool2d", &s], || y.avg_pool2d(&ap));
        expect_err("adaptive_avg_pool2d rank", &["adaptive_avg_pool2d", &s], || y.adaptive_avg_pool2d([2, 2]));
    }
    // Integer inputs.
    for dt in [DType::I64, DType::U8, DType::Bool] {
        let xi = t(&[1, 2, 4, 4], dt);
        expect_err("max_pool2d int", &["max_pool2d", dt.as_str()], || xi.max_pool2d(&mp));
        expect_err("avg_pool2d int", &["avg_pool2d", dt.as_str()], || xi.avg_pool2d(&ap));
        expect_err("adaptive_avg_pool2d int", &["adaptive_avg_pool2d", dt.as_str()], || xi.adaptive_avg_pool2d([2, 2]));
    }
    // Bad window parameters.
    expect_err("max_pool2d kernel 0", &["max_pool2d"], || x.max_pool2d(&MaxPool2dParams { kernel: [0, 2], ..mp }));
    expect_err("max_pool2d stride 0", &["max_pool2d"], || x.max_pool2d(&MaxPool2dParams { stride: [2, 0], ..mp }));
    expect_err("max_pool2d dilation 0", &["max_pool2d"], || x.max_pool2d(&MaxPool2dParams { dilation: [0, 1], ..mp }));
    let msg = expect_err("max_pool2d kernel too big", &["max_pool2d"], || x.max_pool2d(&MaxPool2dParams::new(5)));
    assert!(!msg.contains("values"), "names the internal values-only op: {msg}");
    expect_err("max_pool2d padding", &["max_pool2d", "padding"], || {
        x.max_pool2d(&MaxPool2dParams { padding: [2, 2], ..mp })
    });
    expect_err("avg_pool2d kernel 0", &["avg_pool2d"], || x.avg_pool2d(&AvgPool2dParams { kernel: [2, 0], ..ap }));
    expect_err("avg_pool2d stride 0", &["avg_pool2d"], || x.avg_pool2d(&AvgPool2dParams { stride: [0, 2], ..ap }));
    expect_err("avg_pool2d kernel too big", &["avg_pool2d"], || x.avg_pool2d(&AvgPool2dParams::new(5)));
    expect_err("avg_pool2d padding", &["avg_pool2d", "padding"], || {
        x.avg_pool2d(&AvgPool2dParams { padding: [0, 2], ..ap })
    });
    expect_err("adaptive_avg_pool2d output 0", &["adaptive_avg_pool2d", "[1, 2, 4, 4]"], || {
        x.adaptive_avg_pool2d([0, 2])
    });
    let e = f32t(&[1, 2, 0, 4]);
    expect_err("adaptive_avg_pool2d empty", &["adaptive_avg_pool2d", "[1, 2, 0, 4]"], || e.adaptive_avg_pool2d([2, 2]));
}

// ---------------------------------------------------------------- cat / stack

#[test]
fn cat_stack_errors() {
    let (a, b) = (f32t(&[2, 3]), f32t(&[2, 4]));
    expect_err("cat dim 0", &["cat", "[2, 3]", "[2, 4]"], || Tensor::cat(&[&a, &b], 0));
    assert_eq!(Tensor::cat(&[&a, &b], 1).unwrap().dims(), &[2, 7]);
    expect_err("cat dim range", &["cat", "[2, 3]"], || Tensor::cat(&[&a, &b], 2));
    let c = f32t(&[2, 3, 1]);
    expect_err("cat rank", &["cat", "[2, 3]", "[2, 3, 1]"], || Tensor::cat(&[&a, &c], 0));
    let d = t(&[2, 3], DType::F64);
    expect_err("cat dtype", &["cat", "f32", "f64"], || Tensor::cat(&[&a, &d], 0));
    expect_err("cat empty list", &["cat"], || Tensor::cat(&[], 0));
    let s = f32t(&[]);
    expect_err("cat 0-d", &["cat"], || Tensor::cat(&[&s, &s], 0));

    expect_err("stack shapes", &["stack", "[2, 3]", "[2, 4]"], || Tensor::stack(&[&a, &b], 0));
    expect_err("stack dim", &["stack", "[2, 3]"], || Tensor::stack(&[&a, &a], 3));
    expect_err("stack dtype", &["f32", "f64"], || Tensor::stack(&[&a, &d], 0));
    expect_err("stack empty list", &["stack"], || Tensor::stack(&[], 0));
    assert_eq!(Tensor::stack(&[&a, &a], -1).unwrap().dims(), &[2, 3, 2]);
}

#[test]
fn stack_dtype_error_names_stack() {
    let (a, d) = (f32t(&[2, 3]), t(&[2, 3], DType::F64));
    expect_err("stack dtype", &["stack", "f32", "f64"], || Tensor::stack(&[&a, &d], 0));
}

// ---------------------------------------------------------------- indexing

#[test]
fn index_select_errors() {
    let x = f32t(&[3, 4]);
    let i = idx(&[0, 2], &[2]);
    expect_err("index_select dim", &["index_select", "[3, 4]"], || x.index_select(2, &i));
    let fi = f32t(&[2]);
    expect_err("index_select f32 index", &["index_select", "f32"], || x.index_select(0, &fi));
    let u = t(&[2], DType::U8);
    expect_err("index_select u8 index", &["index_select", "u8"], || x.index_select(0, &u));
    let i2 = idx(&[0, 1, 2, 0], &[2, 2]);
    expect_err("index_select 2-d index", &["index_select", "[3, 4]", "[2, 2]"], || x.index_select(0, &i2));
    // Out-of-range index values are data errors.
    let oob = idx(&[0, 3], &[2]);
    expect_err("index_select value 3", &["index_select", "3"], || x.index_select(0, &oob));
    let neg = idx(&[-1], &[1]);
    expect_err("index_select value -1", &["index_select", "-1"], || x.index_select(1, &neg));
    let oob32 = Tensor::from_vec(vec![4i32], [1], &cpu()).unwrap();
    expect_err("index_select i32 value 4", &["index_select", "4"], || x.index_select(1, &oob32));
    // Out-of-range values in a non-contiguous index view.
    let iv = idx(&[0, 9, 1, 9], &[2, 2]).t().unwrap().narrow(0, 1, 1).unwrap().squeeze(0).unwrap();
    expect_err("index_select strided index", &["index_select", "9"], || x.index_select(0, &iv));
    assert_eq!(x.index_select(-1, &idx(&[3, 0, 3], &[3])).unwrap().dims(), &[3, 3]);
}

#[test]
fn gather_errors() {
    let x = f32t(&[3, 4]);
    let i = idx(&[0, 1, 2, 0], &[2, 2]);
    assert_eq!(x.gather(1, &i).unwrap().dims(), &[2, 2]);
    expect_err("gather dim", &["gather", "[3, 4]"], || x.gather(2, &i));
    let i1 = idx(&[0, 1], &[2]);
    expect_err("gather rank", &["gather", "[3, 4]", "[2]"], || x.gather(0, &i1));
    let ibig = idx(&[0; 10], &[2, 5]);
    expect_err("gather size", &["gather", "[3, 4]", "[2, 5]"], || x.gather(0, &ibig));
    let fi = f32t(&[2, 2]);
    expect_err("gather dtype", &["gather", "f32"], || x.gather(0, &fi));
    let oob = idx(&[0, 4], &[1, 2]);
    expect_err("gather value 4", &["gather", "4"], || x.gather(1, &oob));
    let neg = idx(&[-2, 0], &[2, 1]);
    expect_err("gather value -2", &["gather", "-2"], || x.gather(0, &neg));
}

#[test]
fn scatter_add_errors() {
    let x = f32t(&[3, 4]);
    let i = idx(&[0, 1, 2, 0], &[2, 2]);
    let src = f32t(&[2, 2]);
    assert_eq!(x.scatter_add(0, &i, &src).unwrap().dims(), &[3, 4]);
    expect_err("scatter_add dim", &["scatter_add", "[3, 4]"], || x.scatter_add(2, &i, &src));
    let i1 = idx(&[0, 1], &[2]);
    expect_err("scatter_add index rank", &["scatter_add", "[3, 4]", "[2]"], || x.scatter_add(0, &i1, &src));
    let small = f32t(&[1, 2]);
    expect_err("scatter_add src smaller", &["scatter_add", "[2, 2]", "[1, 2]"], || x.scatter_add(0, &i, &small));
    let ibig = idx(&[0; 10], &[2, 5]);
    let sbig = f32t(&[2, 5]);
    expect_err("scatter_add index wider", &["scatter_add", "[2, 5]"], || x.scatter_add(0, &ibig, &sbig));
    let s64 = t(&[2, 2], DType::F64);
    expect_err("scatter_add src dtype", &["scatter_add", "f32", "f64"], || x.scatter_add(0, &i, &s64));
    let fi = f32t(&[2, 2]);
    expect_err("scatter_add index dtype", &["scatter_add", "f32"], || x.scatter_add(0, &fi, &src));
    let b = t(&[3, 4], DType::Bool);
    let bs = t(&[2, 2], DType::Bool);
    expect_err("scatter_add bool", &["scatter_add", "bool"], || b.scatter_add(0, &i, &bs));
    let oob = idx(&[0, 3, 1, 1], &[2, 2]);
    expect_err("scatter_add value 3", &["scatter_add", "3"], || x.scatter_add(0, &oob, &src));
    let neg = idx(&[0, -1, 1, 1], &[2, 2]);
    expect_err("scatter_add value -1", &["scatter_add", "-1"], || x.scatter_add(1, &neg, &src));
}

#[test]
fn one_hot_errors() {
    let i = idx(&[0, 2, 1], &[3]);
    assert_eq!(i.one_hot(3).unwrap().dims(), &[3, 3]);
    expect_err("one_hot value 2", &["one_hot", "index 2", "size 2"], || i.one_hot(2));
    let i3 = idx(&[0, 3], &[2]);
    expect_err("one_hot value 3", &["one_hot", "index 3"], || i3.one_hot(3));
    let neg = idx(&[-1], &[1]);
    expect_err("one_hot value -1", &["one_hot", "-1"], || neg.one_hot(4));
    expect_err("one_hot 0 classes", &["one_hot"], || i.one_hot(0));
    let f = f32t(&[3]);
    expect_err("one_hot f32", &["one_hot", "f32"], || f.one_hot(3));
    let b = t(&[3], DType::Bool);
    expect_err("one_hot bool", &["one_hot", "bool"], || b.one_hot(3));
}

#[test]
fn pad_errors() {
    let x = f32t(&[2, 3]);
    assert_eq!(x.pad(&[1, 1, 0, 2], 0.0).unwrap().dims(), &[4, 5]);
    expect_err("pad odd", &["pad", "[2, 3]"], || x.pad(&[1], 0.0));
    expect_err("pad too many", &["pad", "[2, 3]"], || x.pad(&[1, 1, 1, 1, 1, 1], 0.0));
    expect_err("pad crop too much", &["pad"], || x.pad(&[-2, -2], 0.0));
    expect_err("pad crop dim 0", &["pad"], || x.pad(&[0, 0, -3, 0], 0.0));
    expect_err("pad 0-d", &["pad", "[]"], || f32t(&[]).pad(&[1, 1], 0.0));
    // Cropping exactly to nothing is allowed (PyTorch gives an empty dim).
    assert_eq!(x.pad(&[-1, -2], 0.0).unwrap().dims(), &[2, 0]);
}

#[test]
fn pad_extreme_negative() {
    let x = f32t(&[2, 3]);
    expect_err("pad i64::MIN", &["pad"], || x.pad(&[i64::MIN, 0], 0.0));
}

// ---------------------------------------------------------------- devices

/// A second device for mismatch tests: it stores host data as is and runs nothing.
#[derive(Debug)]
struct FakeBackend;

#[derive(Debug)]
struct FakeStorage(CpuStorage);

impl BackendStorage for FakeStorage {
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Backend for FakeBackend {
    fn location(&self) -> DeviceLocation {
        DeviceLocation::Cuda(0)
    }
    fn execute(&self, op: &Op, _inputs: &[OpInput<'_>], _outputs: &[TensorMeta]) -> Result<Storages> {
        Err(Error::from(ErrorKind::NotImplemented { op: op.name(), device: "cuda:0".into() }))
    }
    fn copy_from_host(&self, data: CpuStorage) -> Result<Storage> {
        Ok(Storage::new(FakeStorage(data)))
    }
    fn copy_to_host(&self, storage: &dyn BackendStorage, layout: &Layout) -> Result<CpuStorage> {
        let s = storage
            .as_any()
            .downcast_ref::<FakeStorage>()
            .ok_or_else(|| Error::from(ErrorKind::Device { device: "cuda:0".into(), msg: "foreign buffer".into() }))?;
        if layout.offset() == 0 && layout.is_contiguous() && layout.numel() == s.0.len() {
            Ok(s.0.clone())
        } else {
            Err(Error::from(ErrorKind::Device {
                device: "cuda:0".into(),
                msg: "strided reads are not supported".into(),
            }))
        }
    }
}

fn fake() -> Device {
    Device::from_backend(Arc::new(FakeBackend))
}

#[test]
fn device_mismatch() {
    let dev = fake();
    assert_eq!(dev.location(), DeviceLocation::Cuda(0));
    assert_ne!(dev, cpu());
    let a = f32t(&[2, 3]);
    let b = Tensor::from_vec(vec![1f32; 6], [2, 3], &dev).unwrap();
    assert_eq!(b.device().to_string(), "cuda:0");
    expect_err("add cpu+fake", &["add", "cpu", "cuda:0"], || a.add(&b));
    expect_err("add fake+cpu", &["add", "cuda:0", "cpu"], || b.add(&a));
    expect_err("mul", &["mul", "cpu", "cuda:0"], || a.mul(&b));
    expect_err("lt", &["lt", "cpu", "cuda:0"], || a.lt(&b));
    expect_err("matmul", &["matmul", "cpu", "cuda:0"], || a.matmul(&b.t().unwrap()));
    expect_err("cat", &["cat", "cpu", "cuda:0"], || Tensor::cat(&[&a, &b], 0));
    let cond = t(&[2, 3], DType::Bool);
    expect_err("where", &["where", "cpu", "cuda:0"], || cond.where_cond(&a, &b));
    let i = Tensor::from_vec(vec![0i64, 1], [2], &dev).unwrap();
    expect_err("index_select", &["index_select", "cpu", "cuda:0"], || a.index_select(0, &i));
    let x = f32t(&[1, 1, 3, 3]);
    let w = Tensor::from_vec(vec![1f32; 4], [1, 1, 2, 2], &dev).unwrap();
    expect_err("conv2d", &["conv2d", "cpu", "cuda:0"], || x.conv2d(&w, None, &Conv2dParams::default()));
    // Moving the data makes it work.
    let back = b.to_device(&cpu()).unwrap();
    assert_eq!(a.add(&back).unwrap().to_vec::<f32>().unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    // The fake device runs nothing: the backend's error surfaces.
    expect_err("exec on fake", &["add", "cuda:0"], || b.add(&b));
}

/// Regression test: an empty view with a non-zero offset used to panic.
#[test]
fn empty_view_with_offset() {
    // [0, 2] sliced along dim 1 at start 1: Layout::slice used to add 1 * stride
    // to the offset although the view is empty; reshape kept that offset on a
    // contiguous layout, and contiguous_range() then indexed past the empty buffer.
    let z = Tensor::zeros([0, 2], DType::F32, &cpu()).unwrap();
    let v = z.slice(1, 1, 2, 1).unwrap().reshape([0]).unwrap();
    let no_panic = |what: &str, f: &dyn Fn() -> Result<()>| {
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            panic!("{what} on an empty offset view panicked: {}", panic_text(&*p));
        }
    };
    no_panic("to_vec", &|| v.to_vec::<f32>().map(drop));
    no_panic("neg", &|| v.neg().map(drop));
    no_panic("add", &|| v.add(&v).map(drop));
    no_panic("sum", &|| v.sum(0, false).map(drop));
    assert_eq!(v.to_vec::<f32>().unwrap(), Vec::<f32>::new());
}

/// Regression test: matmul of empty, strided operands used to panic.
#[test]
fn matmul_empty_inner_dim_strided() {
    let a = Tensor::zeros([2, 1, 0], DType::F32, &cpu()).unwrap();
    // [0, 2, 3] transposed to [2, 0, 3]: batch stride 3 into an empty buffer.
    let b = Tensor::zeros([0, 2, 3], DType::F32, &cpu()).unwrap().transpose(0, 1).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| a.matmul(&b)));
    match r {
        Err(p) => panic!("matmul [2, 1, 0] @ [2, 0, 3] (strided) panicked: {}", panic_text(&*p)),
        Ok(r) => assert_eq!(r.unwrap().to_vec::<f32>().unwrap(), vec![0.0; 6]),
    }
}

/// Prepacking checks its arguments and a prepacked op its packed input; a
/// prepacked op cannot be saved, and has no derivative.
#[test]
fn prepack_errors_name_the_op() -> Result<()> {
    use oar_tensor::op::{Conv2dParams, Op};
    let (x, w) = (f32t(&[1, 3, 8, 8]), f32t(&[4, 3, 3, 3]));
    let conv = Op::Conv2d(Conv2dParams::default());
    expect_err("prepack of another tensor", &["prepack", "input 1 of `conv2d`"], || {
        x.prepack(&conv, 1, &[x.meta(), w.meta()])
    });
    expect_err("prepack past the inputs", &["prepack", "input 5"], || w.prepack(&conv, 5, &[x.meta(), w.meta()]));
    let w2 = f32t(&[4, 2, 3, 3]);
    expect_err("prepack with a bad shape", &["conv2d"], || w2.prepack(&conv, 1, &[x.meta(), w2.meta()]));
    let Some((op, packed)) = w.prepack(&conv, 1, &[x.meta(), w.meta()])? else {
        println!("skipped the packed-op checks: this CPU runs no direct convolution kernels");
        return Ok(());
    };
    let short = f32t(&[packed.dims()[0] - 1]);
    expect_err("prepacked op with a short buffer", &["conv2d (prepacked)", "packed weights"], || {
        Tensor::apply(op.clone(), &[&x, &short])
    });
    expect_err("prepacked op with f64 packed weights", &["prepacked", "expected f32, got f64"], || {
        Tensor::apply(op.clone(), &[&x, &packed.to_dtype(DType::F64)?])
    });
    expect_err("prepacked op of the wrong input", &["prepacked"], || {
        let Op::Prepacked { op: inner, logical, .. } = op.clone() else { unreachable!() };
        Tensor::apply(Op::Prepacked { op: inner, input: 7, logical }, &[&x, &packed])
    });
    let matmul = Op::Prepacked { op: Box::new(Op::Matmul), input: 1, logical: f32t(&[2, 2]).meta() };
    expect_err("prepacked matmul with a short buffer", &["matmul (prepacked)", "3 packed elements"], || {
        Tensor::apply(matmul.clone(), &[&f32t(&[2, 2]), &f32t(&[3])])
    });
    let softmax = Op::Prepacked { op: Box::new(Op::Softmax { dim: 0 }), input: 0, logical: f32t(&[4]).meta() };
    expect_err("prepacked op the backend never packs", &["packs no input of `softmax`"], || {
        Tensor::apply(softmax.clone(), &[&f32t(&[4])])
    });
    assert!(serde_json::to_string(&op).is_err(), "a prepacked op was serialized");
    Ok(())
}

#[test]
fn fused_binary_epilogue_errors() {
    use oar_tensor::op::BinaryOp;
    let fused = |epilogue: Vec<Op>| Op::Fused { head: Box::new(Op::Matmul), epilogue };
    let add = Op::Binary(BinaryOp::Add);
    let (x, w) = (f32t(&[2, 3]), f32t(&[3, 4]));
    // An epilogue operand missing: the head then lacks its own inputs.
    expect_err("missing operand", &["matmul"], || Tensor::apply(fused(vec![add.clone()]), &[&x]));
    expect_err("missing operands", &["fused", "2 operands"], || {
        Tensor::apply(fused(vec![add.clone(), add.clone()]), &[&x])
    });
    // An operand that would widen the output, or of another dtype.
    expect_err("wider operand", &["fused", "[2, 4]", "[3, 2, 4]"], || {
        Tensor::apply(fused(vec![add.clone()]), &[&x, &w, &f32t(&[3, 2, 4])])
    });
    expect_err("operand shape", &["add", "[2, 4]", "[3]"], || {
        Tensor::apply(fused(vec![add.clone()]), &[&x, &w, &f32t(&[3])])
    });
    expect_err("operand dtype", &["add", "f64"], || {
        Tensor::apply(fused(vec![add.clone()]), &[&x, &w, &t(&[4], DType::F64)])
    });
}
