//! # Oar
//!
//! A layered deep-learning library in Rust. This facade re-exports the
//! workspace crates; most programs only need `use oar::prelude::*`.

pub use oar_autograd as autograd;
pub use oar_jit as jit;
pub use oar_nn as nn;
pub use oar_tensor as tensor;
pub use oar_tensor::{
    manual_seed, no_grad, num_threads, set_num_threads, AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, DType,
    Device, Error, MaxPool2dParams, Result, Shape, Tensor,
};

/// The names most programs use.
pub mod prelude {
    pub use oar_autograd::Backward;
    pub use oar_nn::optim::Optimizer;
    pub use oar_nn::{Forward, Module};
    pub use oar_tensor::{
        AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, DType, Device, MaxPool2dParams, Result, Shape, Tensor,
    };
}

// The Rust examples in the README and the autograd guide run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDocTests;

#[cfg(doctest)]
#[doc = include_str!("../docs/autograd.md")]
struct AutogradGuideDocTests;

#[cfg(doctest)]
#[doc = include_str!("../docs/nn.md")]
struct NnGuideDocTests;

#[cfg(doctest)]
#[doc = include_str!("../docs/jit.md")]
struct JitGuideDocTests;
