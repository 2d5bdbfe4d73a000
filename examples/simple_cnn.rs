//! The seed's first example: a SimpleCNN layer (Conv2d(3, 10, 3) -> ReLU ->
//! MaxPool2d(2) -> flatten -> Linear(10 * 15 * 15, 10)) on a random
//! `[1, 3, 32, 32]` input, then a few SGD steps on a random batch.
//!
//! cargo run --release --example simple_cnn

use oar::nn::loss::{cross_entropy, CrossEntropyOptions};
use oar::nn::optim::{Sgd, SgdConfig};
use oar::nn::{Conv2d, Linear, MaxPool2d};
use oar::prelude::*;

/// The model, declared as in the seed's Python: three members and a forward.
#[derive(Module)]
struct SimpleCnn {
    conv: Conv2d,
    pool: MaxPool2d,
    fc: Linear,
}

impl SimpleCnn {
    fn new() -> Result<Self> {
        Ok(SimpleCnn { conv: Conv2d::new(3, 10, 3)?, pool: MaxPool2d::new(2), fc: Linear::new(10 * 15 * 15, 10)? })
    }
}

impl Forward for SimpleCnn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.pool.forward(&self.conv.forward(x)?.relu()?)?;
        self.fc.forward(&x.flatten(1, -1)?)
    }
}

fn main() -> Result<()> {
    oar::manual_seed(0);
    let dev = Device::cpu();
    let model = SimpleCnn::new()?;
    println!("SimpleCNN: {} parameters", model.num_parameters());
    for (name, p) in model.named_parameters() {
        println!("  {name:<12} {:?}", p.dims());
    }

    let x = Tensor::randn([1, 3, 32, 32], DType::F32, &dev)?;
    let y = model.forward(&x)?;
    println!("output shape: {:?}", y.dims());

    // A few training steps on a random batch: the loss goes down.
    let batch = Tensor::randn([16, 3, 32, 32], DType::F32, &dev)?;
    let targets = Tensor::from_vec((0..16i64).map(|i| i % 10).collect::<Vec<_>>(), [16], &dev)?;
    let mut opt = Sgd::new(model.parameters(), SgdConfig::new(0.05).momentum(0.9))?;
    for step in 1..=5 {
        let loss = cross_entropy(&model.forward(&batch)?, &targets, &CrossEntropyOptions::default())?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        println!("step {step}: loss {:.4}", loss.item()?);
    }
    Ok(())
}
