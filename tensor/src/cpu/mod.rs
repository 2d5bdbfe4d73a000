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
use crate::{Error, ErrorKind, Layout, Result, Shape};
use smallvec::SmallVec;
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

/// The op a fused op runs first, or `op` itself.
fn fused_head(op: &Op) -> &Op {
    match op {
        Op::Fused { head, .. } => head,
        _ => op,
    }
}

/// Where a fused op's inputs split into its head's and its epilogue's
/// operands.
fn fused_split(op: &Op, inputs: usize) -> Result<usize> {
    let n = op.epilogue_operands();
    inputs.checked_sub(n).ok_or_else(|| {
        Error::invalid(op.name(), format!("{n} epilogue operands after the head's inputs, got {inputs} inputs"))
    })
}

/// The tensor operands of an epilogue over an output of shape `out`.
fn epilogue_operands<'a>(extra: &[OpInput<'a>], out: &Shape) -> Result<SmallVec<[elementwise::Operand<'a>; 2]>> {
    extra.iter().map(|x| elementwise::Operand::new(cpu(x.storage)?, x.layout, out)).collect()
}

/// The error for a prepacked op this backend never packs.
fn not_packed(op: &Op) -> Error {
    Error::invalid("prepacked", format!("the CPU backend packs no input of `{}`", op.name()))
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
                let (head_inputs, extra) = inputs.split_at(fused_split(op, inputs.len())?);
                let operands = epilogue_operands(extra, out)?;
                let ops = elementwise::Epilogue::new(epilogue, &operands, outputs[0].dtype)?;
                if let Op::Conv2d(p) = &**head {
                    let bias = if head_inputs.len() > 2 { Some((s(2)?, l(2))) } else { None };
                    if let Some(y) = conv::conv2d_fused((s(0)?, l(0)), (s(1)?, l(1)), bias, p, &outputs[0].shape, ops) {
                        return one(y);
                    }
                }
                let mut out = self.execute(head, head_inputs, outputs)?;
                let buf = out[0].cpu_mut().ok_or_else(|| Error::invalid(op.name(), "the head's output is shared"))?;
                elementwise::epilogue(buf, ops)?;
                Ok(out)
            }
            Op::Prepacked { op: inner, input: 1, logical } => match fused_head(inner) {
                Op::Conv2d(p) => {
                    let (head_inputs, extra) = inputs.split_at(fused_split(inner, inputs.len())?);
                    let operands = epilogue_operands(extra, out)?;
                    let epilogue = match &**inner {
                        Op::Fused { epilogue, .. } => {
                            Some(elementwise::Epilogue::new(epilogue, &operands, outputs[0].dtype)?)
                        }
                        _ => None,
                    };
                    let bias = if head_inputs.len() > 2 { Some((s(2)?, l(2))) } else { None };
                    one(conv::conv2d_prepacked((s(0)?, l(0)), s(1)?, &logical.shape, bias, p, out, epilogue)?)
                }
                // A row-major copy of the weight: the op as it is, reading
                // the copy with the weight's shape.
                Op::Matmul => {
                    if inputs[1].storage.len() != logical.shape.numel() {
                        return Err(Error::invalid(
                            "matmul (prepacked)",
                            format!(
                                "{} packed elements for a {:?} weight",
                                inputs[1].storage.len(),
                                logical.shape.dims()
                            ),
                        ));
                    }
                    let rows = Layout::contiguous(logical.shape.clone());
                    let mut unpacked: smallvec::SmallVec<[OpInput<'_>; 3]> = inputs.iter().copied().collect();
                    unpacked[1] = OpInput { storage: inputs[1].storage, layout: &rows };
                    self.execute(inner, &unpacked, outputs)
                }
                _ => Err(not_packed(inner)),
            },
            Op::Prepacked { op: inner, .. } => Err(not_packed(inner)),
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

    fn packed_layout(&self, op: &Op, input: usize, logical: &TensorMeta) -> Option<Layout> {
        // Linear weights are packed as row-major copies; convolution weights
        // in the kernels' channel-blocked order, which no layout describes.
        (input == 1 && matches!(fused_head(op), Op::Matmul)).then(|| Layout::contiguous(logical.shape.clone()))
    }

    fn execute_in_place(
        &self,
        ops: &[Op],
        target: &mut Storage,
        layout: &Layout,
        operands: &[OpInput<'_>],
    ) -> Result<bool> {
        let whole = layout.is_contiguous() && layout.offset() == 0 && layout.numel() == target.len();
        let dtype = target.dtype();
        if !whole || !dtype.is_float() {
            return Ok(false);
        }
        let Some(buf) = target.cpu_mut() else { return Ok(false) };
        let out = layout.shape();
        let operands = epilogue_operands(operands, out)?;
        elementwise::epilogue(buf, elementwise::Epilogue::new(ops, &operands, dtype)?)?;
        Ok(true)
    }

    fn prepack(&self, op: &Op, input: usize, inputs: &[TensorMeta], data: OpInput<'_>) -> Result<Option<Storage>> {
        // Alone or heading a fused op: convolution weights for the direct
        // kernels, transposed linear weights for the gemm crate.
        if input != 1 || !matches!(fused_head(op), Op::Conv2d(_) | Op::Matmul) {
            return Ok(None);
        }
        let out = op.infer(inputs)?;
        let w = (cpu(data.storage)?, data.layout);
        let packed = match fused_head(op) {
            Op::Conv2d(p) => conv::prepack_conv2d(&inputs[0].shape, w, p, &out[0].shape),
            _ => matmul::prepack_rhs(&inputs[0].shape, w, &out[0].shape),
        };
        Ok(packed.map(Storage::cpu))
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
