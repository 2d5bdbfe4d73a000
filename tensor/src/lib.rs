//! # oar-tensor
//!
//! N-dimensional tensors for Oar: dtypes, shapes and strided views, the op
//! vocabulary ([`Op`]), the object-safe device trait ([`Backend`]) and the CPU
//! backend (a fork-join thread team + the `gemm` crate).
//!
//! ```
//! use oar_tensor::{Device, DType, Tensor};
//! # fn main() -> oar_tensor::Result<()> {
//! let dev = Device::cpu();
//! let a = Tensor::arange(0.0, 6.0, 1.0, DType::F32, &dev)?.reshape([2, 3])?;
//! let b = Tensor::ones([3], DType::F32, &dev)?;
//! let c = a.add(&b)?;                       // broadcasts [2, 3] + [3]
//! assert_eq!(c.to_vec::<f32>()?, vec![1., 2., 3., 4., 5., 6.]);
//! let s = c.t()?.matmul(&c)?;               // [3, 2] @ [2, 3], transposed view, no copy
//! assert_eq!(s.dims(), &[3, 3]);
//! # Ok(()) }
//! ```
//!
//! Every op goes through one dispatch path ([`Tensor::apply`]): inputs are
//! validated by [`Op::infer`], executed by the device's backend (or turned into
//! a view), and, when grad mode needs it or a trace is active, the op and its
//! inputs are recorded as the output's [`Provenance`] for autograd and the jit.

pub mod cpu;
mod creation;
pub mod device;
mod dtype;
mod error;
mod infer;
mod layout;
pub mod op;
mod ops;
pub mod pool_arc;
mod random;
pub mod record;
mod shape;
mod tensor;

pub use cpu::{num_threads, set_num_threads, ArenaStats, BufferArena, CpuStorage};
pub use device::{Backend, BackendStorage, Device, DeviceLocation, OpInput, Storage, Storages};
pub use dtype::{DType, Float, FloatDType, WithDType};
pub use error::{Error, ErrorKind, Result};
pub use layout::Layout;
pub use op::{
    AvgPool2dParams, BinaryOp, CmpOp, Conv2dParams, ConvTranspose2dParams, MaxPool2dParams, MetaRef, Metas, Op,
    ReduceOp, TensorMeta, UnaryOp,
};
pub use pool_arc::PoolArc;
pub use random::{manual_seed, Generator};
pub use record::{is_grad_enabled, is_tracing, no_grad, set_grad_enabled, start_trace};
pub use shape::{Dim, Dims, Shape};
pub use tensor::{Node, NodeInputs, NodeRef, Provenance, Tensor, TensorId};

/// Half-precision float types used for [`DType::F16`] and [`DType::BF16`].
pub use half::{bf16, f16};
