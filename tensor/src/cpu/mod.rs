//! The CPU backend: team-parallel kernels, gemm matrix products, im2col convolution.

pub(crate) mod alloc;
mod arena;
mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_direct;
mod elementwise;
mod index;
mod matmul;
mod pool;
mod reduce;
#[cfg(target_arch = "x86_64")]
mod sgemm;
mod simd;
pub(crate) mod small_bufs;
mod storage;
mod strided;
mod team;
mod threads;

pub use arena::{ArenaStats, BufferArena};
pub use storage::CpuStorage;
pub use threads::{num_threads, set_num_threads};

use crate::device::{Backend, BackendStorage, DeviceLocation, OpInput, Storage, Storages};
use crate::op::{Op, TensorMeta};
use crate::{Error, ErrorKind, Layout, Result};
use std::borrow::Cow;

/// The CPU backend. Stateless; the kernel thread team is process-wide.
#[derive(Debug, Default)]
pub struct CpuBackend;

#[inline]
fn cpu(s: &dyn BackendStorage) -> Result<&CpuStorage> {
    s.as_cpu().ok_or_else(|| {
        Error::from(ErrorKind::Device {
            device: "cpu".into(),
            msg: "received a buffer that does not live on the CPU".into(),
        })
    })
}

impl Backend for CpuBackend {
    fn location(&self) -> DeviceLocation {
        DeviceLocation::Cpu
    }

    fn execute(&self, op: &Op, inputs: &[OpInput<'_>], outputs: &[TensorMeta]) -> Result<Storages> {
        let s = |i: usize| cpu(inputs[i].storage);
        let l = |i: usize| inputs[i].layout;
        let out = &outputs[0].shape;
        // Inputs of broadcasting ops, viewed with the output's shape.
        let bl = |i: usize| -> Result<Cow<'_, Layout>> {
            let li = l(i);
            if li.shape() == out {
                Ok(Cow::Borrowed(li))
            } else {
                Ok(Cow::Owned(li.broadcast_to(out, op.name())?))
            }
        };
        let one = |r: CpuStorage| -> Result<Storages> { Ok(smallvec::smallvec![Storage::cpu(r)]) };
        match op {
            Op::Unary(u) => one(elementwise::unary(*u, s(0)?, l(0))?),
            Op::UnaryBackward(u) => one(elementwise::unary_backward(*u, s(0)?, l(0), s(1)?, l(1))?),
            Op::Clamp { min, max } => one(elementwise::clamp(s(0)?, l(0), *min, *max)?),
            Op::Binary(b) => one(elementwise::binary(*b, s(0)?, &*bl(0)?, s(1)?, &*bl(1)?)?),
            Op::BinaryScalar { op: b, scalar } => one(elementwise::binary_scalar(*b, s(0)?, l(0), *scalar)?),
            Op::Compare(c) => one(elementwise::compare(*c, s(0)?, &*bl(0)?, s(1)?, &*bl(1)?)?),
            Op::Where => one(elementwise::where_cond(s(0)?, &*bl(0)?, s(1)?, &*bl(1)?, s(2)?, &*bl(2)?)?),
            Op::Cast(dt) => one(elementwise::cast(s(0)?, l(0), *dt)),
            Op::Contiguous => one(elementwise::cast(s(0)?, l(0), outputs[0].dtype)),
            Op::Reduce { op: r, dims, .. } => one(reduce::reduce(*r, s(0)?, l(0), dims)?),
            Op::Var { dims, correction, .. } => one(reduce::var(s(0)?, l(0), dims, *correction)?),
            Op::ArgMax { dim, .. } => one(reduce::arg_extremum(s(0)?, l(0), *dim, true)?),
            Op::ArgMin { dim, .. } => one(reduce::arg_extremum(s(0)?, l(0), *dim, false)?),
            Op::Softmax { dim } => one(reduce::softmax(s(0)?, l(0), *dim, false)?),
            Op::LogSoftmax { dim } => one(reduce::softmax(s(0)?, l(0), *dim, true)?),
            Op::Matmul => one(matmul::matmul(s(0)?, l(0), s(1)?, l(1), out)?),
            Op::Conv2d(p) => {
                let bias = if inputs.len() > 2 { Some((s(2)?, l(2))) } else { None };
                one(conv::conv2d((s(0)?, l(0)), (s(1)?, l(1)), bias, p, out)?)
            }
            Op::ConvTranspose2d(p) => {
                let bias = if inputs.len() > 2 { Some((s(2)?, l(2))) } else { None };
                one(conv::conv_transpose2d((s(0)?, l(0)), (s(1)?, l(1)), bias, p, out)?)
            }
            Op::Conv2dWeightGrad { params, .. } => {
                one(conv::conv2d_weight_grad((s(0)?, l(0)), (s(1)?, l(1)), params, out)?)
            }
            Op::MaxPool2d(p) => {
                let (v, i) = pool::max_pool2d_with_indices(s(0)?, l(0), p, out)?;
                Ok(smallvec::smallvec![Storage::cpu(v), Storage::cpu(i)])
            }
            Op::MaxPool2dValues(p) => one(pool::max_pool2d_values(s(0)?, l(0), p, out)?),
            Op::AvgPool2d(p) => one(pool::avg_pool2d(s(0)?, l(0), p, out)?),
            Op::AdaptiveAvgPool2d { .. } => one(pool::adaptive_avg_pool2d(s(0)?, l(0), out)?),
            Op::Cat { dim } => {
                let parts = (0..inputs.len()).map(|i| Ok((s(i)?, l(i)))).collect::<Result<Vec<_>>>()?;
                one(index::cat(&parts, *dim, out)?)
            }
            Op::IndexSelect { dim } => one(index::index_select((s(0)?, l(0)), (s(1)?, l(1)), *dim)?),
            Op::Gather { dim } => one(index::gather((s(0)?, l(0)), (s(1)?, l(1)), *dim)?),
            Op::ScatterAdd { dim } => one(index::scatter_add((s(0)?, l(0)), (s(1)?, l(1)), (s(2)?, l(2)), *dim)?),
            Op::OneHot { num_classes } => one(index::one_hot((s(0)?, l(0)), *num_classes)?),
            Op::Pad { pads, value } => one(index::pad((s(0)?, l(0)), pads, *value, out)?),
            Op::Fused { head, epilogue } => {
                let ops = elementwise::Epilogue::new(epilogue)?;
                if let Op::Conv2d(p) = &**head {
                    let bias = if inputs.len() > 2 { Some((s(2)?, l(2))) } else { None };
                    if let Some(y) = conv::conv2d_fused((s(0)?, l(0)), (s(1)?, l(1)), bias, p, &outputs[0].shape, ops) {
                        return one(y);
                    }
                }
                let mut out = self.execute(head, inputs, outputs)?;
                let buf = out[0].cpu_mut().ok_or_else(|| Error::invalid(op.name(), "the head's output is shared"))?;
                elementwise::epilogue(buf, ops)?;
                Ok(out)
            }
            Op::Reshape { .. } | Op::Permute { .. } | Op::Expand { .. } | Op::Slice { .. } | Op::ToDevice(_) => {
                Err(Error::invalid(op.name(), "view and transfer ops are not executed by backends"))
            }
        }
    }

    fn execute1(&self, op: &Op, inputs: &[OpInput<'_>], output: &TensorMeta) -> Result<Storage> {
        // Same-shape element-wise ops need no broadcast views: straight to the kernel.
        let r = match (op, inputs) {
            (Op::Unary(u), [x]) => elementwise::unary(*u, cpu(x.storage)?, x.layout)?,
            (Op::BinaryScalar { op: b, scalar }, [x]) => {
                elementwise::binary_scalar(*b, cpu(x.storage)?, x.layout, *scalar)?
            }
            (Op::Binary(b), [x, y]) if x.layout.shape() == &output.shape && y.layout.shape() == &output.shape => {
                elementwise::binary(*b, cpu(x.storage)?, x.layout, cpu(y.storage)?, y.layout)?
            }
            (Op::UnaryBackward(u), [g, s]) => {
                elementwise::unary_backward(*u, cpu(g.storage)?, g.layout, cpu(s.storage)?, s.layout)?
            }
            _ => return Ok(self.execute(op, inputs, std::slice::from_ref(output))?.swap_remove(0)),
        };
        Ok(Storage::cpu(r))
    }

    fn copy_from_host(&self, data: CpuStorage) -> Result<Storage> {
        Ok(Storage::cpu(data))
    }

    fn copy_to_host(&self, storage: &dyn BackendStorage, layout: &Layout) -> Result<CpuStorage> {
        let s = cpu(storage)?;
        if layout.offset() == 0 && layout.is_contiguous() && layout.numel() == s.len() {
            return Ok(s.clone());
        }
        Ok(elementwise::cast(s, layout, s.dtype()))
    }
}
