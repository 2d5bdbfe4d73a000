//! Reference models used by the examples, tests and benchmarks, with the
//! same parameter names as their PyTorch definitions in
//! `scripts/gen_nn_golden.py`, so weights move between the two.

use crate::{Conv2d, Conv2dOptions, Forward, Linear, Module};
use oar_tensor::{MaxPool2dParams, Result, Tensor};

/// LeNet-5 for 28x28 MNIST digits: Conv2d(1, 6, 5, padding 2) - ReLU -
/// MaxPool(2) - Conv2d(6, 16, 5) - ReLU - MaxPool(2) - Linear(400, 120) -
/// ReLU - Linear(120, 84) - ReLU - Linear(84, 10). Input `[N, 1, 28, 28]`.
#[derive(Debug, Module)]
pub struct LeNet5 {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

impl LeNet5 {
    pub fn new() -> Result<Self> {
        Ok(LeNet5 {
            conv1: Conv2d::with_options(1, 6, 5, Conv2dOptions::default().padding(2))?,
            conv2: Conv2d::new(6, 16, 5)?,
            fc1: Linear::new(16 * 5 * 5, 120)?,
            fc2: Linear::new(120, 84)?,
            fc3: Linear::new(84, 10)?,
        })
    }
}

impl Forward for LeNet5 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pool = MaxPool2dParams::new(2);
        let x = self.conv1.forward(x)?.relu()?.max_pool2d(&pool)?;
        let x = self.conv2.forward(&x)?.relu()?.max_pool2d(&pool)?;
        let x = self.fc1.forward(&x.flatten(1, -1)?)?.relu()?;
        let x = self.fc2.forward(&x)?.relu()?;
        self.fc3.forward(&x)
    }
}

/// The seed's SimpleCNN: Conv2d(3, 10, 3) - ReLU - MaxPool(2) - flatten -
/// Linear(10 * 15 * 15, 10). Input `[N, 3, 32, 32]`.
#[derive(Debug, Module)]
pub struct SimpleCnn {
    pub conv: Conv2d,
    pub fc: Linear,
}

impl SimpleCnn {
    pub fn new() -> Result<Self> {
        Ok(SimpleCnn { conv: Conv2d::new(3, 10, 3)?, fc: Linear::new(10 * 15 * 15, 10)? })
    }
}

impl Forward for SimpleCnn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv.forward(x)?.relu()?.max_pool2d(&MaxPool2dParams::new(2))?;
        self.fc.forward(&x.flatten(1, -1)?)
    }
}

/// A 784-512-512-10 MLP with ReLU. Input `[N, 784]` (or `[N, 1, 28, 28]`, flattened).
#[derive(Debug, Module)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

impl Mlp {
    pub fn new() -> Result<Self> {
        Ok(Mlp { fc1: Linear::new(784, 512)?, fc2: Linear::new(512, 512)?, fc3: Linear::new(512, 10)? })
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1)?;
        let x = self.fc1.forward(&x)?.relu()?;
        let x = self.fc2.forward(&x)?.relu()?;
        self.fc3.forward(&x)
    }
}
