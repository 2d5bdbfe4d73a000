//! Layer modules with PyTorch's parameter layouts and default initializations.

mod activation;
mod conv;
mod dropout;
mod embedding;
mod linear;
mod norm;
mod pool;

pub use activation::{Flatten, Identity, LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Tanh, GELU};
pub use conv::{Conv2d, Conv2dOptions};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};

/// A size given for both spatial dims (`5`) or per dim (`[5, 3]`), as PyTorch
/// takes `kernel_size=5` or `(5, 3)`.
pub trait IntoPair {
    fn pair(self) -> [usize; 2];
}

impl IntoPair for usize {
    fn pair(self) -> [usize; 2] {
        [self, self]
    }
}

impl IntoPair for [usize; 2] {
    fn pair(self) -> [usize; 2] {
        self
    }
}

impl IntoPair for (usize, usize) {
    fn pair(self) -> [usize; 2] {
        [self.0, self.1]
    }
}
