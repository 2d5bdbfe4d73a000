//! Activation modules and the shape-only layers (`Flatten`, `Identity`).

use super::pool::stateless;
use crate::functional;
use crate::module::{Forward, Module, Visitor};
use oar_tensor::{Result, Tensor};

/// `max(x, 0)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReLU;

/// Gaussian error linear unit: exact (erf) by default, or the tanh
/// approximation (`approximate="tanh"`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GELU {
    pub tanh_approximation: bool,
}

/// `x * sigmoid(x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiLU;

#[derive(Clone, Copy, Debug, Default)]
pub struct Sigmoid;

#[derive(Clone, Copy, Debug, Default)]
pub struct Tanh;

/// `x` where positive, `negative_slope * x` elsewhere (default slope 0.01).
#[derive(Clone, Copy, Debug)]
pub struct LeakyReLU {
    pub negative_slope: f64,
}

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU { negative_slope: 0.01 }
    }
}

impl LeakyReLU {
    pub fn new(negative_slope: f64) -> Self {
        LeakyReLU { negative_slope }
    }
}

/// Softmax along `dim` (negative counts from the end).
#[derive(Clone, Copy, Debug)]
pub struct Softmax {
    pub dim: isize,
}

impl Softmax {
    pub fn new(dim: isize) -> Self {
        Softmax { dim }
    }
}

/// Log-softmax along `dim`.
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax {
    pub dim: isize,
}

impl LogSoftmax {
    pub fn new(dim: isize) -> Self {
        LogSoftmax { dim }
    }
}

/// Flattens dims `start..=end` into one (`nn.Flatten()` is dims 1 to -1).
#[derive(Clone, Copy, Debug)]
pub struct Flatten {
    pub start_dim: isize,
    pub end_dim: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { start_dim: 1, end_dim: -1 }
    }
}

impl Flatten {
    pub fn new(start_dim: isize, end_dim: isize) -> Self {
        Flatten { start_dim, end_dim }
    }
}

/// Returns its input.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

stateless!(ReLU, GELU, SiLU, Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax, Flatten, Identity);

impl Forward for ReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()
    }
}

impl Forward for GELU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.tanh_approximation {
            x.gelu_tanh()
        } else {
            x.gelu()
        }
    }
}

impl Forward for SiLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.silu()
    }
}

impl Forward for Sigmoid {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.sigmoid()
    }
}

impl Forward for Tanh {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.tanh()
    }
}

impl Forward for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        functional::leaky_relu(x, self.negative_slope)
    }
}

impl Forward for Softmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.softmax(self.dim)
    }
}

impl Forward for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.log_softmax(self.dim)
    }
}

impl Forward for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.flatten(self.start_dim, self.end_dim)
    }
}

impl Forward for Identity {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
}
