#![allow(dead_code)]

use oar_nn::{BatchNorm1d, BatchNorm2d, Conv2d, Conv2dOptions, Flatten, Linear, MaxPool2d, ReLU, Sequential};
use oar_nn::{Forward, Module};
use oar_tensor::{DType, Device, Result, Tensor};

pub fn randn(dims: &[usize]) -> Tensor {
    Tensor::randn(dims.to_vec(), DType::F32, &Device::cpu()).expect("randn")
}

/// Largest |a - b| relative to the largest |a| (f32 outputs).
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Conv -> BatchNorm -> ReLU twice, then a linear head: the batch-norm
/// folding case. Running statistics are made non-trivial by a few
/// training-mode batches before switching to eval mode.
pub fn conv_bn_net() -> Result<Sequential> {
    let mut net = Sequential::new()
        .add(Conv2d::new(3, 8, 3)?)
        .add(BatchNorm2d::new(8)?)
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::with_options(8, 6, 3, Conv2dOptions::default().padding(1).bias(false))?)
        .add(BatchNorm2d::new(6)?)
        .add(ReLU)
        .add(Flatten::new(1, -1))
        .add(Linear::new(6 * 7 * 7, 5)?);
    net.train();
    for _ in 0..3 {
        net.forward(&randn(&[4, 3, 16, 16]))?;
    }
    net.eval();
    Ok(net)
}

/// Linear -> BatchNorm1d -> ReLU, then a bias-free linear layer -> batch
/// norm, then a linear head: batch-norm folding into linear layers, with
/// and without bias. Running statistics as in [`conv_bn_net`].
pub fn linear_bn_net() -> Result<Sequential> {
    let mut net = Sequential::new()
        .add(Linear::new(20, 16)?)
        .add(BatchNorm1d::new(16)?)
        .add(ReLU)
        .add(Linear::no_bias(16, 8)?)
        .add(BatchNorm1d::new(8)?)
        .add(Linear::new(8, 4)?);
    net.train();
    for _ in 0..3 {
        net.forward(&randn(&[6, 20]).mul_scalar(2.0)?.add_scalar(0.5)?)?;
    }
    net.eval();
    Ok(net)
}
