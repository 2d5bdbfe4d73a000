//! Every differentiable op's VJP against central finite differences in f64,
//! on random inputs including broadcast and non-contiguous (transposed,
//! sliced, expanded) views.

use oar_autograd::{gradcheck, GradcheckOptions};
use oar_tensor::{
    AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, DType, Device, Generator, MaxPool2dParams, Result, Tensor,
};

const F64: DType = DType::F64;

struct Rand(Generator);

impl Rand {
    fn new(seed: u64) -> Self {
        Rand(Generator::new(seed))
    }
    fn randn(&mut self, shape: &[usize]) -> Tensor {
        Tensor::randn_with(&mut self.0, shape.to_vec(), F64, &Device::cpu()).unwrap()
    }
    /// Values in [lo, hi).
    fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        let u = Tensor::rand_with(&mut self.0, shape.to_vec(), F64, &Device::cpu()).unwrap();
        u.mul_scalar(hi - lo).unwrap().add_scalar(lo).unwrap()
    }
    /// A `[a, b]` tensor that is a transposed (non-contiguous) view.
    fn randn_t(&mut self, a: usize, b: usize) -> Tensor {
        let t = self.randn(&[b, a]).t().unwrap();
        assert!(!t.is_contiguous());
        t
    }
}

fn check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    check_with(name, inputs, GradcheckOptions::default(), f)
}

fn check_with(name: &str, inputs: &[Tensor], opts: GradcheckOptions, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    if let Err(e) = gradcheck(f, inputs, opts) {
        panic!("{name}: {e}");
    }
}

fn i64s(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec(), &Device::cpu()).unwrap()
}

#[test]
fn unary_ops() {
    let mut r = Rand::new(1);
    type Un = fn(&Tensor) -> Result<Tensor>;
    let any: [(&str, Un); 13] = [
        ("neg", Tensor::neg),
        ("abs", Tensor::abs),
        ("exp", Tensor::exp),
        ("sin", Tensor::sin),
        ("cos", Tensor::cos),
        ("tanh", Tensor::tanh),
        ("sigmoid", Tensor::sigmoid),
        ("relu", Tensor::relu),
        ("erf", Tensor::erf),
        ("gelu", Tensor::gelu),
        ("gelu_tanh", Tensor::gelu_tanh),
        ("silu", Tensor::silu),
        ("square", Tensor::square),
    ];
    for (name, f) in any {
        check(name, &[r.randn_t(3, 4)], |t| f(&t[0]));
    }
    let positive: [(&str, Un); 4] =
        [("log", Tensor::log), ("sqrt", Tensor::sqrt), ("rsqrt", Tensor::rsqrt), ("recip", Tensor::recip)];
    for (name, f) in positive {
        check(name, &[r.uniform(&[3, 4], 0.5, 2.0)], |t| f(&t[0]));
    }
    // softplus is linear above 20: cover both sides.
    check("softplus", &[r.uniform(&[4, 6], -25.0, 25.0)], |t| t[0].softplus());
    // Piecewise-constant ops have zero gradient (away from their jumps).
    for (name, f) in
        [("sign", Tensor::sign as Un), ("floor", Tensor::floor), ("ceil", Tensor::ceil), ("round", Tensor::round)]
    {
        let x = r
            .uniform(&[3, 4], 0.1, 0.4)
            .add(&Tensor::arange(-6.0, 6.0, 1.0, F64, &Device::cpu()).unwrap().reshape([3, 4]).unwrap())
            .unwrap();
        check(name, &[x], |t| f(&t[0]));
    }
}

#[test]
fn clamp() {
    let mut r = Rand::new(2);
    check("clamp both", &[r.randn_t(4, 5)], |t| t[0].clamp(Some(-0.5), Some(0.5)));
    check("clamp min", &[r.randn(&[6])], |t| t[0].clamp(Some(0.1), None));
    check("clamp max", &[r.randn(&[6])], |t| t[0].clamp(None, Some(0.1)));
}

#[test]
fn binary_ops_with_broadcasting() {
    let mut r = Rand::new(3);
    type Bin = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let ops: [(&str, Bin); 6] = [
        ("add", Tensor::add),
        ("sub", Tensor::sub),
        ("mul", Tensor::mul),
        ("maximum", Tensor::maximum),
        ("minimum", Tensor::minimum),
        ("div", Tensor::div),
    ];
    for (name, f) in ops {
        let y = if name == "div" { r.uniform(&[1, 4], 0.5, 2.0) } else { r.randn(&[1, 4]) };
        check(name, &[r.randn(&[3, 1]), y.clone()], |t| f(&t[0], &t[1]));
        check(&format!("{name} rank-broadcast"), &[r.randn_t(3, 4), y.reshape([4]).unwrap()], |t| f(&t[0], &t[1]));
    }
    check("pow", &[r.uniform(&[3, 4], 0.5, 2.0), r.randn(&[4])], |t| t[0].pow(&t[1]));
    check("pow broadcast base", &[r.uniform(&[1, 4], 0.5, 2.0), r.randn(&[3, 1])], |t| t[0].pow(&t[1]));
}

#[test]
fn scalar_ops() {
    let mut r = Rand::new(4);
    let x = r.randn_t(3, 4);
    check("add_scalar", std::slice::from_ref(&x), |t| t[0].add_scalar(1.5));
    check("sub_scalar", std::slice::from_ref(&x), |t| t[0].sub_scalar(1.5));
    check("mul_scalar", std::slice::from_ref(&x), |t| t[0].mul_scalar(-2.5));
    check("div_scalar", std::slice::from_ref(&x), |t| t[0].div_scalar(4.0));
    check("maximum_scalar", std::slice::from_ref(&x), |t| t[0].maximum_scalar(0.2));
    check("minimum_scalar", std::slice::from_ref(&x), |t| t[0].minimum_scalar(0.2));
    let pos = r.uniform(&[3, 4], 0.5, 2.0);
    check("pow_scalar", std::slice::from_ref(&pos), |t| t[0].pow_scalar(2.5));
    check("pow_scalar negative", std::slice::from_ref(&pos), |t| t[0].pow_scalar(-1.5));
    check("pow_scalar zero", &[pos], |t| t[0].pow_scalar(0.0));
}

#[test]
fn where_and_masked_fill() {
    let mut r = Rand::new(5);
    let cond = r.randn(&[3, 4]).gt_scalar(0.0).unwrap();
    check("where", &[cond.clone(), r.randn_t(3, 4), r.randn(&[4])], |t| t[0].where_cond(&t[1], &t[2]));
    check("masked_fill", &[r.randn(&[3, 4]), cond], |t| t[0].masked_fill(&t[1], 2.0));
}

#[test]
fn casts() {
    let mut r = Rand::new(6);
    // Through f32 and back: a linear function, so a large step is exact up to f32 rounding.
    let opts = GradcheckOptions { eps: 1e-2, atol: 1e-4, rtol: 1e-4, ..Default::default() };
    check_with("to_dtype f32", &[r.randn(&[5])], opts, |t| t[0].to_dtype(DType::F32)?.mul_scalar(3.0)?.to_dtype(F64));
}

#[test]
fn reductions() {
    let mut r = Rand::new(7);
    let x = r.randn(&[3, 4, 5]);
    check("sum dim", std::slice::from_ref(&x), |t| t[0].sum(1, false));
    check("sum dims keepdim", std::slice::from_ref(&x), |t| t[0].sum([0, 2], true));
    check("sum_all", &[r.randn_t(3, 4)], |t| t[0].sum_all());
    check("mean", std::slice::from_ref(&x), |t| t[0].mean([-1], false));
    check("max dim", std::slice::from_ref(&x), |t| t[0].max(2, false));
    check("min dims keepdim", std::slice::from_ref(&x), |t| t[0].min([0, 1], true));
    check("max_all", &[r.randn_t(3, 4)], |t| t[0].max_all());
    check("min_all", &[r.randn_t(3, 4)], |t| t[0].min_all());
    check("mean_all", &[r.randn_t(3, 4)], |t| t[0].mean_all());
    check("mean dims keepdim", &[x.permute([2, 0, 1]).unwrap()], |t| t[0].mean([0, 2], true));
    check("prod", &[r.uniform(&[3, 4], 0.5, 1.5)], |t| t[0].prod(1, false));
    check("logsumexp", std::slice::from_ref(&x), |t| t[0].logsumexp(1, true));
    check("var", std::slice::from_ref(&x), |t| t[0].var(2, 1, false));
    check("var population", std::slice::from_ref(&x), |t| t[0].var([0, 1], 0, true));
    check("std", &[x], |t| t[0].std(1, 1, false));
}

#[test]
fn prod_with_zeros() {
    // One zero: only it gets the product of the rest; two zeros: all zero.
    let mut r = Rand::new(8);
    let one_zero =
        r.uniform(&[2, 4], 0.5, 1.5).mul(&i64s(&[1, 0, 1, 1, 1, 1, 1, 1], &[2, 4]).to_dtype(F64).unwrap()).unwrap();
    check("prod one zero", &[one_zero], |t| t[0].prod(1, false));
    let two_zeros = r.uniform(&[1, 4], 0.5, 1.5).mul(&i64s(&[0, 1, 0, 1], &[1, 4]).to_dtype(F64).unwrap()).unwrap();
    check("prod two zeros", &[two_zeros], |t| t[0].prod(1, false));
}

#[test]
fn softmax_family() {
    let mut r = Rand::new(9);
    check("softmax", &[r.randn(&[3, 5])], |t| t[0].softmax(1));
    check("softmax dim 0 transposed", &[r.randn_t(4, 3)], |t| t[0].softmax(0));
    check("log_softmax", &[r.randn(&[3, 5])], |t| t[0].log_softmax(-1));
    check("log_softmax transposed", &[r.randn_t(4, 3)], |t| t[0].log_softmax(0));
}

#[test]
fn matmul() {
    let mut r = Rand::new(10);
    check("2d", &[r.randn(&[3, 4]), r.randn(&[4, 5])], |t| t[0].matmul(&t[1]));
    check("2d transposed", &[r.randn_t(3, 4), r.randn_t(4, 2)], |t| t[0].matmul(&t[1]));
    check("batched", &[r.randn(&[2, 3, 4]), r.randn(&[2, 4, 2])], |t| t[0].matmul(&t[1]));
    check("broadcast batch", &[r.randn(&[2, 1, 3, 4]), r.randn(&[3, 4, 2])], |t| t[0].matmul(&t[1]));
    check("matrix @ shared", &[r.randn(&[2, 3, 4]), r.randn(&[4, 5])], |t| t[0].matmul(&t[1]));
    check("vector @ matrix", &[r.randn(&[4]), r.randn(&[4, 3])], |t| t[0].matmul(&t[1]));
    check("matrix @ vector", &[r.randn(&[3, 4]), r.randn(&[4])], |t| t[0].matmul(&t[1]));
}

#[test]
fn conv2d() {
    let mut r = Rand::new(11);
    let p = Conv2dParams { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 2 };
    check("grouped, strided, padded, bias", &[r.randn(&[2, 4, 7, 6]), r.randn(&[6, 2, 3, 3]), r.randn(&[6])], |t| {
        t[0].conv2d(&t[1], Some(&t[2]), &p)
    });
    let p = Conv2dParams { stride: [1, 1], padding: [2, 1], dilation: [2, 1], groups: 1 };
    check("dilated, non-square kernel", &[r.randn(&[1, 2, 6, 5]), r.randn(&[3, 2, 3, 2])], |t| {
        t[0].conv2d(&t[1], None, &p)
    });
    let p = Conv2dParams { stride: [2, 3], padding: [0, 1], dilation: [1, 1], groups: 3 };
    check("depthwise, uneven stride", &[r.randn(&[2, 3, 7, 8]), r.randn(&[3, 1, 3, 3]), r.randn(&[3])], |t| {
        t[0].conv2d(&t[1], Some(&t[2]), &p)
    });
    // The input as a non-contiguous (channels-last) view.
    let x = r.randn(&[2, 5, 5, 3]).permute([0, 3, 1, 2]).unwrap();
    check("channels-last input", &[x, r.randn(&[4, 3, 2, 2])], |t| t[0].conv2d(&t[1], None, &Conv2dParams::default()));
}

#[test]
fn conv_transpose2d() {
    let mut r = Rand::new(12);
    let p =
        ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], output_padding: [1, 1], dilation: [1, 1], groups: 1 };
    check("strided, output padding, bias", &[r.randn(&[2, 4, 4, 3]), r.randn(&[4, 3, 3, 3]), r.randn(&[3])], |t| {
        t[0].conv_transpose2d(&t[1], Some(&t[2]), &p)
    });
    let p =
        ConvTranspose2dParams { stride: [1, 2], padding: [0, 1], output_padding: [0, 0], dilation: [2, 1], groups: 2 };
    check("grouped, dilated", &[r.randn(&[1, 4, 3, 4]), r.randn(&[4, 1, 2, 3])], |t| {
        t[0].conv_transpose2d(&t[1], None, &p)
    });
    // Channels-last input and a permuted weight (both non-contiguous views).
    let x = r.randn(&[2, 4, 3, 4]).permute([0, 3, 1, 2]).unwrap();
    let w = r.randn(&[3, 3, 4, 2]).permute([2, 3, 0, 1]).unwrap();
    assert!(!x.is_contiguous() && !w.is_contiguous());
    let p = ConvTranspose2dParams { stride: [2, 1], padding: [1, 0], output_padding: [1, 0], ..p };
    let p = ConvTranspose2dParams { groups: 1, dilation: [1, 1], ..p };
    check("non-contiguous input and weight", &[x, w, r.randn(&[2])], |t| t[0].conv_transpose2d(&t[1], Some(&t[2]), &p));
}

#[test]
fn pooling() {
    let mut r = Rand::new(13);
    let x = r.randn(&[2, 3, 7, 6]);
    check("max_pool2d k2", std::slice::from_ref(&x), |t| t[0].max_pool2d(&MaxPool2dParams::new(2)));
    let p = MaxPool2dParams { kernel: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], ceil_mode: true };
    check("max_pool2d padded ceil", std::slice::from_ref(&x), |t| t[0].max_pool2d(&p));
    let p = MaxPool2dParams { kernel: [2, 2], stride: [1, 1], padding: [0, 0], dilation: [2, 2], ceil_mode: false };
    check("max_pool2d dilated", std::slice::from_ref(&x), |t| t[0].max_pool2d(&p));
    check("max_pool2d with indices", std::slice::from_ref(&x), |t| {
        Ok(t[0].max_pool2d_with_indices(&MaxPool2dParams::new(3))?.0)
    });
    check("avg_pool2d k2", std::slice::from_ref(&x), |t| t[0].avg_pool2d(&AvgPool2dParams::new(2)));
    for (ceil_mode, count_include_pad) in [(false, true), (false, false), (true, true), (true, false)] {
        let p = AvgPool2dParams { kernel: [3, 2], stride: [2, 2], padding: [1, 1], ceil_mode, count_include_pad };
        check(&format!("avg_pool2d ceil {ceil_mode} include_pad {count_include_pad}"), std::slice::from_ref(&x), |t| {
            t[0].avg_pool2d(&p)
        });
    }
    check("adaptive 3x2", std::slice::from_ref(&x), |t| t[0].adaptive_avg_pool2d([3, 2]));
    check("adaptive 5x4 (overlapping)", std::slice::from_ref(&x), |t| t[0].adaptive_avg_pool2d([5, 4]));
    check("adaptive 1x1", &[x.permute([0, 1, 3, 2]).unwrap()], |t| t[0].adaptive_avg_pool2d([1, 1]));
}

#[test]
fn joining_and_indexing() {
    let mut r = Rand::new(14);
    check("cat", &[r.randn(&[2, 3]), r.randn_t(2, 2), r.randn(&[2, 1])], |t| Tensor::cat(&[&t[0], &t[1], &t[2]], 1));
    check("stack", &[r.randn(&[2, 3]), r.randn_t(2, 3)], |t| Tensor::stack(&[&t[0], &t[1]], 0));
    let idx = i64s(&[2, 0, 2, 1], &[4]);
    check("index_select repeated", &[r.randn(&[3, 5]), idx.clone()], |t| t[0].index_select(0, &t[1]));
    check("index_select dim 1", &[r.randn_t(2, 3), idx.clone()], |t| t[0].index_select(1, &t[1]));
    let g = i64s(&[0, 2, 2, 1, 1, 0], &[2, 3]);
    check("gather", &[r.randn(&[2, 4]), g.clone()], |t| t[0].gather(1, &t[1]));
    check("scatter_add", &[r.randn(&[2, 4]), g.clone(), r.randn(&[2, 3])], |t| t[0].scatter_add(1, &t[1], &t[2]));
    check("scatter_add larger src", &[r.randn(&[2, 4]), g, r.randn(&[3, 5])], |t| t[0].scatter_add(1, &t[1], &t[2]));
    // Transposed (non-contiguous) values and indices.
    let gt = i64s(&[0, 2, 1, 1, 3, 0], &[3, 2]).t().unwrap();
    assert!(!gt.is_contiguous());
    check("gather non-contiguous", &[r.randn_t(2, 4), gt.clone()], |t| t[0].gather(1, &t[1]));
    check("scatter_add non-contiguous", &[r.randn_t(2, 4), gt, r.randn_t(2, 3)], |t| t[0].scatter_add(1, &t[1], &t[2]));
    check("pad", &[r.randn(&[2, 3])], |t| t[0].pad(&[1, 2, 0, 1], 0.5));
    check("pad negative", &[r.randn(&[3, 5])], |t| t[0].pad(&[-1, 2, 1, -1], 0.0));
}

#[test]
fn views() {
    let mut r = Rand::new(15);
    check("reshape", &[r.randn(&[2, 6])], |t| t[0].reshape([3, 4]));
    check("reshape of transposed (copies)", &[r.randn_t(3, 4)], |t| t[0].reshape([12]));
    check("permute", &[r.randn(&[2, 3, 4])], |t| t[0].permute([2, 0, 1]));
    check("transpose", &[r.randn(&[2, 3, 4])], |t| t[0].transpose(0, 2));
    check("expand", &[r.randn(&[3, 1])], |t| t[0].expand([2, 3, 4]));
    check("broadcast leaf", &[r.randn(&[4]).expand([3, 4]).unwrap()], |t| t[0].mul(&t[0]));
    check("narrow", &[r.randn(&[5, 3])], |t| t[0].narrow(0, 1, 3));
    check("slice step 2", &[r.randn(&[7, 3])], |t| t[0].slice(0, 1, 7, 2));
    check("slice step 3 uneven", &[r.randn(&[3, 8])], |t| t[0].slice(1, 2, 7, 3));
    check("slice empty", &[r.randn(&[3, 4])], |t| t[0].slice(1, 2, 2, 1)?.sum_all());
    check("squeeze/unsqueeze", &[r.randn(&[3, 1, 2])], |t| t[0].squeeze(1)?.unsqueeze(0));
    check("flatten", &[r.randn(&[2, 3, 2])], |t| t[0].flatten(1, 2));
    check("split", &[r.randn(&[5, 2])], |t| {
        let parts = t[0].split(2, 0)?;
        parts[0].mul(&parts[1])?.sum_all()?.add(&parts[2].sum_all()?)
    });
    check("chunk", &[r.randn(&[2, 6])], |t| {
        let parts = t[0].chunk(3, 1)?;
        parts[0].sub(&parts[2])
    });
    check("contiguous", &[r.randn_t(3, 4)], |t| t[0].contiguous());
}

#[test]
fn composite_mlp() {
    let mut r = Rand::new(16);
    let inputs = [r.randn(&[4, 5]), r.randn(&[3, 5]), r.randn(&[3]), i64s(&[0, 2, 1, 2], &[4])];
    check("linear -> gelu -> cross-entropy", &inputs, |t| {
        let logits = t[0].matmul(&t[1].t()?)?.add(&t[2])?.gelu()?;
        let picked = logits.log_softmax(1)?.gather(1, &t[3].unsqueeze(1)?)?;
        picked.mean_all()?.neg()
    });
}
