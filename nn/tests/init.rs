//! Statistical tests of the initializers and the layers' default initializations.
//!
//! PyTorch's random stream differs from Oar's, so values are not compared with PyTorch;
//! instead each scheme is checked against PyTorch's formula on ~100k samples: the bound
//! (every |w| <= bound, and the largest close to it) for the uniform schemes, the sample
//! standard deviation within 2% of the formula's (the standard error is ~0.15% for
//! uniform and ~0.25% for normal samples at this size, so 2% is far outside chance but
//! catches a wrong fan or gain), the mean near 0, and the distribution's shape (the
//! fraction of samples within half the bound / one std, the normal's kurtosis). Seeds:
//! `manual_seed` and explicit generators must reproduce values exactly.
//!
//! Tests that use the global generator hold `GLOBAL_RNG` so that parallel tests of this
//! binary do not interleave their draws.

use oar_nn::init::{calculate_gain, fans, FanMode, Init, Nonlinearity};
use oar_nn::{Conv2d, Conv2dOptions, Embedding, Linear, Param};
use oar_tensor::{manual_seed, DType, Device, Generator, Shape, Tensor};
use std::sync::Mutex;

static GLOBAL_RNG: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).expect("f64").to_vec::<f64>().expect("values")
}

struct Stats {
    n: usize,
    mean: f64,
    std: f64,
    max_abs: f64,
    kurtosis: f64,
}

fn stats(v: &[f64]) -> Stats {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let m2 = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let m4 = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
    let max_abs = v.iter().fold(0f64, |m, x| m.max(x.abs()));
    Stats { n: v.len(), mean, std: m2.sqrt(), max_abs, kurtosis: m4 / (m2 * m2) }
}

fn frac_within(v: &[f64], r: f64) -> f64 {
    v.iter().filter(|x| x.abs() < r).count() as f64 / v.len() as f64
}

/// U(-bound, bound): bounded, reaching the bound, std bound / sqrt(3), flat.
fn assert_uniform(what: &str, v: &[f64], bound: f64) {
    let s = stats(v);
    assert!(s.n >= 100_000 || s.n < 1000, "{what}: sample size {}", s.n);
    assert!(s.max_abs <= bound, "{what}: max |w| {} exceeds the bound {bound}", s.max_abs);
    if s.n < 1000 {
        return; // a bias vector: only the bound is meaningful
    }
    assert!(s.max_abs >= 0.999 * bound, "{what}: max |w| {} well below the bound {bound}", s.max_abs);
    let want_std = bound / 3f64.sqrt();
    assert!((s.std / want_std - 1.0).abs() < 0.02, "{what}: std {} vs U(-b, b)'s {want_std}", s.std);
    assert!(s.mean.abs() < 5.0 * want_std / (s.n as f64).sqrt(), "{what}: mean {} not near 0", s.mean);
    let half = frac_within(v, bound / 2.0);
    assert!((half - 0.5).abs() < 0.01, "{what}: {half} of the samples within bound / 2 (uniform: 0.5)");
}

/// N(0, std^2).
fn assert_normal(what: &str, v: &[f64], std: f64) {
    let s = stats(v);
    assert!(s.n >= 100_000, "{what}: sample size {}", s.n);
    assert!((s.std / std - 1.0).abs() < 0.02, "{what}: std {} vs {std}", s.std);
    assert!(s.mean.abs() < 5.0 * std / (s.n as f64).sqrt(), "{what}: mean {} not near 0", s.mean);
    assert!((s.kurtosis - 3.0).abs() < 0.1, "{what}: kurtosis {} (normal: 3)", s.kurtosis);
    let one = frac_within(v, std);
    assert!((one - 0.6827).abs() < 0.01, "{what}: {one} of the samples within one std (normal: 0.683)");
}

const LIN: [usize; 2] = [256, 400]; // fan_in 400, fan_out 256; 102400 samples
const CONV: [usize; 4] = [128, 16, 7, 7]; // fan_in 784, fan_out 6272; 100352 samples

fn draw(init: Init, shape: &[usize], seed: u64) -> Vec<f64> {
    let mut g = Generator::new(seed);
    values(&init.tensor_with(&mut g, shape, DType::F32, &Device::cpu()).expect("draw"))
}

#[test]
fn gains_and_fans_are_pytorchs() {
    assert_eq!(calculate_gain(Nonlinearity::Linear), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Conv), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Sigmoid), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
    assert_eq!(calculate_gain(Nonlinearity::Relu), 2f64.sqrt());
    assert_eq!(calculate_gain(Nonlinearity::Selu), 0.75);
    assert!((calculate_gain(Nonlinearity::LeakyRelu(0.2)) - (2.0 / 1.04f64).sqrt()).abs() < 1e-15);
    assert_eq!(fans(&Shape::from(&LIN[..])).unwrap(), (400, 256));
    assert_eq!(fans(&Shape::from(&CONV[..])).unwrap(), (784, 6272));
    let err = fans(&Shape::from(&[5usize][..])).unwrap_err().to_string();
    assert!(err.contains("init") && err.contains("2 dims"), "{err}");
}

#[test]
fn kaiming_uniform() {
    let relu_in = Init::KaimingUniform { a: 0.0, mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu };
    assert_uniform("kaiming_uniform relu fan_in", &draw(relu_in, &LIN, 1), 2f64.sqrt() * (3.0 / 400f64).sqrt());
    assert_eq!(Init::kaiming_uniform_relu(), relu_in);
    let relu_out = Init::KaimingUniform { a: 0.0, mode: FanMode::FanOut, nonlinearity: Nonlinearity::Relu };
    assert_uniform(
        "kaiming_uniform relu fan_out (conv)",
        &draw(relu_out, &CONV, 2),
        2f64.sqrt() * (3.0 / 6272f64).sqrt(),
    );
    // Leaky ReLU: the gain comes from `a`, as PyTorch's kaiming_uniform_(w, a, nonlinearity="leaky_relu").
    let leaky = Init::KaimingUniform { a: 0.3, mode: FanMode::FanIn, nonlinearity: Nonlinearity::LeakyRelu(0.0) };
    let gain = (2.0 / (1.0 + 0.09f64)).sqrt();
    assert_uniform("kaiming_uniform leaky_relu a=0.3 (conv)", &draw(leaky, &CONV, 3), gain * (3.0 / 784f64).sqrt());
    // PyTorch's Linear/Conv default: a = sqrt(5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    assert_uniform("pytorch_default", &draw(Init::pytorch_default(), &LIN, 4), 1.0 / 400f64.sqrt());
}

#[test]
fn kaiming_normal() {
    let relu = Init::KaimingNormal { a: 0.0, mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu };
    assert_normal("kaiming_normal relu fan_in", &draw(relu, &LIN, 5), 2f64.sqrt() / 400f64.sqrt());
    let tanh_out = Init::KaimingNormal { a: 0.0, mode: FanMode::FanOut, nonlinearity: Nonlinearity::Tanh };
    assert_normal("kaiming_normal tanh fan_out (conv)", &draw(tanh_out, &CONV, 6), 5.0 / 3.0 / 6272f64.sqrt());
    let leaky = Init::KaimingNormal { a: 0.1, mode: FanMode::FanIn, nonlinearity: Nonlinearity::LeakyRelu(0.1) };
    let gain = (2.0 / 1.01f64).sqrt();
    assert_normal("kaiming_normal leaky_relu (conv)", &draw(leaky, &CONV, 7), gain / 784f64.sqrt());
}

#[test]
fn xavier() {
    assert_uniform("xavier_uniform", &draw(Init::XavierUniform { gain: 1.0 }, &LIN, 8), (6.0 / 656f64).sqrt());
    let g = 5.0 / 3.0;
    assert_uniform(
        "xavier_uniform gain (conv)",
        &draw(Init::XavierUniform { gain: g }, &CONV, 9),
        g * (6.0 / 7056f64).sqrt(),
    );
    assert_normal("xavier_normal", &draw(Init::XavierNormal { gain: 1.0 }, &LIN, 10), (2.0 / 656f64).sqrt());
    assert_normal(
        "xavier_normal gain (conv)",
        &draw(Init::XavierNormal { gain: 2.0 }, &CONV, 11),
        2.0 * (2.0 / 7056f64).sqrt(),
    );
}

#[test]
fn uniform_normal_constant() {
    // U(low, high) off-center: shift to the center and check as U(-b, b).
    let v: Vec<f64> = draw(Init::Uniform { low: -0.5, high: 1.5 }, &LIN, 12).iter().map(|x| x - 0.5).collect();
    assert_uniform("uniform(-0.5, 1.5)", &v, 1.0);
    let v: Vec<f64> = draw(Init::Normal { mean: 3.0, std: 0.2 }, &LIN, 13).iter().map(|x| x - 3.0).collect();
    assert_normal("normal(3, 0.2)", &v, 0.2);
    let dev = Device::cpu();
    assert!(values(&Init::Zeros.tensor([3, 2], DType::F32, &dev).unwrap()).iter().all(|&x| x == 0.0));
    assert!(values(&Init::Ones.tensor([3, 2], DType::F32, &dev).unwrap()).iter().all(|&x| x == 1.0));
    assert!(values(&Init::Constant(0.25).tensor([4], DType::F64, &dev).unwrap()).iter().all(|&x| x == 0.25));
    // f64 tensors are drawn in f64 (53 random bits, not an f32 draw cast up).
    let mut g = Generator::new(14);
    let t = Init::Normal { mean: 0.0, std: 1.0 }.tensor_with(&mut g, [1000], DType::F64, &dev).unwrap();
    assert_eq!(t.dtype(), DType::F64);
    assert!(values(&t).iter().any(|&x| x != x as f32 as f64));
    // Invalid parameters are errors naming init.
    let err = Init::Uniform { low: 1.0, high: 0.0 }.tensor([2], DType::F32, &dev).unwrap_err().to_string();
    assert!(err.contains("init") && err.contains("low <= high"), "{err}");
    let err = Init::Normal { mean: 0.0, std: -1.0 }.tensor([2], DType::F32, &dev).unwrap_err().to_string();
    assert!(err.contains("init") && err.contains("std"), "{err}");
    let err = Init::XavierUniform { gain: 1.0 }.tensor([5], DType::F32, &dev).unwrap_err().to_string();
    assert!(err.contains("init"), "{err}");
}

#[test]
fn layer_default_inits() {
    let _g = lock();
    manual_seed(100);
    let lin = Linear::new(400, 256).unwrap();
    let bound = 1.0 / 400f64.sqrt();
    assert_uniform("Linear(400, 256).weight", &values(&lin.weight.get()), bound);
    assert_uniform("Linear(400, 256).bias", &values(&lin.bias.as_ref().unwrap().get()), bound);
    assert!(stats(&values(&lin.bias.as_ref().unwrap().get())).max_abs > 0.8 * bound, "Linear bias too narrow");
    let conv = Conv2d::new(16, 128, 7).unwrap();
    let bound = 1.0 / 784f64.sqrt();
    assert_uniform("Conv2d(16, 128, 7).weight", &values(&conv.weight.get()), bound);
    assert_uniform("Conv2d(16, 128, 7).bias", &values(&conv.bias.as_ref().unwrap().get()), bound);
    // Groups: fan_in = in / groups * kh * kw = 64 / 4 * 5 * 5 = 400 (weight [256, 16, 5, 5]).
    let grouped = Conv2d::with_options(64, 256, 5, Conv2dOptions::default().groups(4)).unwrap();
    assert_eq!(grouped.weight.dims(), [256, 16, 5, 5]);
    assert_uniform("Conv2d(64, 256, 5, groups=4).weight", &values(&grouped.weight.get()), 1.0 / 400f64.sqrt());
    assert_uniform("Conv2d groups bias", &values(&grouped.bias.as_ref().unwrap().get()), 1.0 / 400f64.sqrt());
    // Embedding: N(0, 1), the padding row zero.
    let emb = Embedding::with_padding(1000, 100, Some(7)).unwrap();
    let w = values(&emb.weight.get());
    assert!(w[700..800].iter().all(|&x| x == 0.0), "padding row not zero");
    let rest: Vec<f64> = w[..700].iter().chain(&w[800..]).copied().collect();
    let s = stats(&rest);
    assert!((s.std - 1.0).abs() < 0.02 && s.mean.abs() < 0.02, "Embedding init: mean {} std {}", s.mean, s.std);
}

#[test]
fn same_seed_same_values() {
    let _g = lock();
    let dev = Device::cpu();
    let schemes = [
        Init::kaiming_uniform_relu(),
        Init::KaimingNormal { a: 0.0, mode: FanMode::FanOut, nonlinearity: Nonlinearity::Relu },
        Init::XavierUniform { gain: 1.0 },
        Init::XavierNormal { gain: 1.0 },
        Init::Uniform { low: -1.0, high: 1.0 },
        Init::Normal { mean: 0.0, std: 1.0 },
    ];
    for init in schemes {
        manual_seed(42);
        let a = values(&init.tensor([8, 5, 3, 3], DType::F32, &dev).unwrap());
        manual_seed(42);
        let b = values(&init.tensor([8, 5, 3, 3], DType::F32, &dev).unwrap());
        assert_eq!(a, b, "{init:?}: manual_seed(42) twice");
        let c = values(&init.tensor([8, 5, 3, 3], DType::F32, &dev).unwrap());
        assert_ne!(a, c, "{init:?}: the next draw repeats the first");
        manual_seed(43);
        let d = values(&init.tensor([8, 5, 3, 3], DType::F32, &dev).unwrap());
        assert_ne!(a, d, "{init:?}: seeds 42 and 43 give the same values");
        // An explicit generator ignores (and does not advance) the global one.
        let e = draw(init, &[8, 5, 3, 3], 42);
        manual_seed(43);
        let _ = draw(init, &[8, 5, 3, 3], 99);
        let d2 = values(&init.tensor([8, 5, 3, 3], DType::F32, &dev).unwrap());
        assert_eq!(d, d2, "{init:?}: tensor_with advanced the global generator");
        assert_eq!(e, draw(init, &[8, 5, 3, 3], 42), "{init:?}: Generator::new(42) twice");
    }
    // Whole layers.
    manual_seed(5);
    let (l1, c1) = (Linear::new(10, 4).unwrap(), Conv2d::new(3, 4, 3).unwrap());
    manual_seed(5);
    let (l2, c2) = (Linear::new(10, 4).unwrap(), Conv2d::new(3, 4, 3).unwrap());
    assert_eq!(values(&l1.weight.get()), values(&l2.weight.get()));
    assert_eq!(values(&l1.bias.as_ref().unwrap().get()), values(&l2.bias.as_ref().unwrap().get()));
    assert_eq!(values(&c1.weight.get()), values(&c2.weight.get()));
    assert_eq!(values(&c1.bias.as_ref().unwrap().get()), values(&c2.bias.as_ref().unwrap().get()));
}

#[test]
fn init_overwrites_a_param_in_place() {
    let _g = lock();
    let dev = Device::cpu();
    let p = Param::new(Tensor::zeros([300, 400], DType::F64, &dev).unwrap()).unwrap();
    let handle = p.clone();
    manual_seed(9);
    Init::XavierNormal { gain: 1.0 }.init(&p).unwrap();
    // Same shape and dtype, visible through every handle, still a trainable leaf.
    assert_eq!((handle.dims(), handle.dtype()), (vec![300, 400], DType::F64));
    assert!(handle.get().requires_grad());
    assert_normal("init(XavierNormal) on an f64 param", &values(&handle.get()), (2.0 / 700f64).sqrt());
}
