//! # oar-nn
//!
//! Neural-network building blocks on top of `oar-tensor` and `oar-autograd`:
//!
//! - [`Module`] (named parameters and buffers, train/eval mode, state dicts
//!   with PyTorch's dotted keys) with `#[derive(Module)]`, [`Forward`], and
//!   [`Sequential`];
//! - layers with PyTorch's layouts and default initializations ([`Linear`],
//!   [`Conv2d`], pooling, normalization, [`Dropout`], [`Embedding`],
//!   activations), their [`functional`] forms and [`init`]ializers;
//! - [`loss`]es, [`optim`]izers and [`lr_scheduler`]s;
//! - [`checkpoint`]s as safetensors (atomic writes, every mismatch reported);
//! - [`data`]: datasets, a prefetching loader, the IDX/MNIST reader.
//!
//! A model is a struct of layers:
//!
//! ```
//! use oar_nn::{Conv2d, Forward, Linear, Module};
//! use oar_tensor::{DType, Device, MaxPool2dParams, Result, Tensor};
//!
//! #[derive(Module)]
//! struct SimpleCnn {
//!     conv: Conv2d,
//!     fc: Linear,
//! }
//!
//! impl SimpleCnn {
//!     fn new() -> Result<Self> {
//!         Ok(SimpleCnn { conv: Conv2d::new(3, 10, 3)?, fc: Linear::new(10 * 15 * 15, 10)? })
//!     }
//! }
//!
//! impl Forward for SimpleCnn {
//!     fn forward(&self, x: &Tensor) -> Result<Tensor> {
//!         let x = self.conv.forward(x)?.relu()?.max_pool2d(&MaxPool2dParams::new(2))?;
//!         self.fc.forward(&x.flatten(1, -1)?)
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! let model = SimpleCnn::new()?;
//! let y = model.forward(&Tensor::randn([1, 3, 32, 32], DType::F32, &Device::cpu())?)?;
//! assert_eq!(y.dims(), &[1, 10]);
//! assert_eq!(model.state_dict().keys(), ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]);
//! # Ok(()) }
//! ```

pub mod checkpoint;
pub mod data;
pub mod functional;
pub mod init;
mod layers;
pub mod loss;
pub mod lr_scheduler;
pub mod models;
mod module;
pub mod optim;
mod param;
mod state;

pub use layers::*;
pub use module::{Entry, Forward, Layer, Module, Sequential, Visitor};
pub use oar_nn_derive::Module;
pub use param::{Buffer, Param};
pub use state::{LoadReport, StateDict};
