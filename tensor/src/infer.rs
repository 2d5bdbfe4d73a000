//! Shape and dtype inference for every [`Op`]: the one place inputs are validated.

use crate::op::{BinaryOp, MetaRef, Metas, Op, ReduceOp, TensorMeta};
use crate::{DType, Error, ErrorKind, Result, Shape};
use smallvec::smallvec;

fn arity(op: &Op, inputs: &[MetaRef<'_>], n: std::ops::RangeInclusive<usize>) -> Result<()> {
    if !n.contains(&inputs.len()) {
        return Err(Error::invalid(op.name(), format!("expected {n:?} inputs, got {}", inputs.len())));
    }
    Ok(())
}

fn same_dtype(name: &'static str, a: &MetaRef<'_>, b: &MetaRef<'_>) -> Result<()> {
    if a.dtype != b.dtype {
        return Err(Error::from(ErrorKind::DTypeMismatch { op: name, expected: a.dtype, got: b.dtype }));
    }
    Ok(())
}

fn float_only(name: &'static str, m: &MetaRef<'_>) -> Result<()> {
    if !m.dtype.is_float() {
        return Err(Error::from(ErrorKind::UnsupportedDType {
            op: name,
            dtype: m.dtype,
            msg: "expected a floating-point tensor",
        }));
    }
    Ok(())
}

fn not_bool(name: &'static str, m: &MetaRef<'_>) -> Result<()> {
    if m.dtype == DType::Bool {
        return Err(Error::from(ErrorKind::UnsupportedDType {
            op: name,
            dtype: m.dtype,
            msg: "not defined for bool tensors",
        }));
    }
    Ok(())
}

fn index_dtype(name: &'static str, m: &MetaRef<'_>) -> Result<()> {
    if !matches!(m.dtype, DType::I64 | DType::I32) {
        return Err(Error::from(ErrorKind::DTypeMismatch { op: name, expected: DType::I64, got: m.dtype }));
    }
    Ok(())
}

fn reduced_shape(shape: &Shape, dims: &[usize], keepdim: bool) -> Shape {
    let mut out = Vec::with_capacity(shape.rank());
    for (i, &d) in shape.dims().iter().enumerate() {
        if dims.contains(&i) {
            if keepdim {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    Shape::from(out)
}

fn check_dims(name: &'static str, shape: &Shape, dims: &[usize]) -> Result<()> {
    for &d in dims {
        if d >= shape.rank() {
            return Err(Error::from(ErrorKind::DimOutOfRange {
                op: name,
                dim: d as i64,
                rank: shape.rank(),
                shape: shape.clone(),
            }));
        }
    }
    Ok(())
}

/// Output size of a sliding window (conv, pooling), PyTorch's formula.
pub(crate) fn window_out(
    name: &'static str,
    input: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    ceil_mode: bool,
) -> Result<usize> {
    if k == 0 || stride == 0 || dil == 0 {
        return Err(Error::invalid(name, format!("kernel {k}, stride {stride} and dilation {dil} must be positive")));
    }
    let eff = dil * (k - 1) + 1;
    if input + 2 * pad < eff {
        return Err(Error::invalid(
            name,
            format!("input size {input} with padding {pad} is smaller than the effective kernel size {eff}"),
        ));
    }
    let span = input + 2 * pad - eff;
    let mut out = if ceil_mode { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    // The last window must start inside the input or the left padding.
    if ceil_mode && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Ok(out)
}

fn nchw(name: &'static str, m: &MetaRef<'_>) -> Result<[usize; 4]> {
    match *m.shape.dims() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::shape(name, &[m.shape], "expected a 4-d NCHW input")),
    }
}

pub(crate) fn infer(op: &Op, inputs: &[MetaRef<'_>]) -> Result<Metas> {
    let outs = infer_unchecked(op, inputs)?;
    if !op.is_view() {
        for m in &outs {
            if allocatable_numel(&m.shape, m.dtype).is_none() {
                return Err(overflow(op.name(), &m.shape));
            }
        }
    }
    Ok(outs)
}

fn infer_unchecked(op: &Op, inputs: &[MetaRef<'_>]) -> Result<Metas> {
    let name = op.name();
    let one = |shape: Shape, dtype: DType| Ok(smallvec![TensorMeta::new(shape, dtype)]);
    match op {
        Op::Unary(u) => {
            arity(op, inputs, 1..=1)?;
            let m = &inputs[0];
            if !(m.dtype.is_float() || (u.supports_int() && m.dtype.is_int())) {
                return Err(Error::from(ErrorKind::UnsupportedDType {
                    op: name,
                    dtype: m.dtype,
                    msg: if u.supports_int() {
                        "expected a numeric tensor"
                    } else {
                        "expected a floating-point tensor"
                    },
                }));
            }
            one(m.shape.to_owned(), m.dtype)
        }
        Op::Fused { head, epilogue } => {
            if head.is_view() || head.num_outputs() != 1 || matches!(**head, Op::Fused { .. } | Op::ToDevice(_)) {
                return Err(Error::invalid(name, format!("`{}` cannot head a fused op", head.name())));
            }
            if epilogue.len() > 64 {
                return Err(Error::invalid(name, format!("{} epilogue ops (at most 64)", epilogue.len())));
            }
            let n = op.epilogue_operands();
            let Some(split) = inputs.len().checked_sub(n) else {
                return Err(Error::invalid(
                    name,
                    format!(
                        "{n} binary epilogue ops need {n} operands after the head's inputs, got {} inputs",
                        inputs.len()
                    ),
                ));
            };
            let (head_inputs, mut operands) = (&inputs[..split], inputs[split..].iter());
            let mut outs = infer(head, head_inputs)?;
            for e in epilogue {
                if !crate::op::is_epilogue_op(e) {
                    return Err(Error::invalid(name, format!("`{}` cannot run as an epilogue", e.name())));
                }
                let m = outs[0].clone();
                float_only(name, &MetaRef::from(&m))?;
                outs = match (e, operands.next()) {
                    (Op::Binary(_), Some(y)) => {
                        let o = infer(e, &[MetaRef::from(&m), *y])?;
                        if o[0] != m {
                            return Err(Error::from(ErrorKind::ShapeMismatch {
                                op: name,
                                shapes: vec![m.shape.clone(), y.shape.to_owned()],
                                msg: format!(
                                    "an epilogue operand must broadcast to the output {} {:?}, got {} {:?}",
                                    m.dtype,
                                    m.shape.dims(),
                                    y.dtype,
                                    y.shape.dims()
                                ),
                            }));
                        }
                        o
                    }
                    _ => infer(e, &[MetaRef::from(&m)])?,
                };
            }
            Ok(outs)
        }
        Op::Prepacked { op: inner, input, logical } => {
            if inner.is_view() || matches!(**inner, Op::Prepacked { .. } | Op::ToDevice(_)) {
                return Err(Error::invalid(name, format!("`{}` cannot take a prepacked input", inner.name())));
            }
            let Some(packed) = inputs.get(*input) else {
                return Err(Error::invalid(name, format!("input {input} of {} is prepacked", inputs.len())));
            };
            if packed.dtype != logical.dtype {
                return Err(Error::from(ErrorKind::DTypeMismatch {
                    op: name,
                    expected: logical.dtype,
                    got: packed.dtype,
                }));
            }
            let mut unpacked: smallvec::SmallVec<[MetaRef<'_>; 4]> = inputs.iter().copied().collect();
            unpacked[*input] = MetaRef::from(logical);
            infer(inner, &unpacked)
        }
        Op::UnaryBackward(_) => {
            arity(op, inputs, 2..=2)?;
            let (g, saved) = (&inputs[0], &inputs[1]);
            same_dtype(name, g, saved)?;
            float_only(name, g)?;
            if g.shape != saved.shape {
                return Err(Error::shape(
                    name,
                    &[g.shape, saved.shape],
                    "gradient and saved tensor must have one shape",
                ));
            }
            one(g.shape.to_owned(), g.dtype)
        }
        Op::Clamp { min, max } => {
            arity(op, inputs, 1..=1)?;
            not_bool(name, &inputs[0])?;
            if min.is_none() && max.is_none() {
                return Err(Error::invalid(name, "at least one of min and max must be given"));
            }
            one(inputs[0].shape.to_owned(), inputs[0].dtype)
        }
        Op::Binary(b) => {
            arity(op, inputs, 2..=2)?;
            let (x, y) = (&inputs[0], &inputs[1]);
            same_dtype(name, x, y)?;
            binary_dtype(name, *b, x)?;
            one(x.shape.broadcast_with(y.shape, name)?, x.dtype)
        }
        Op::BinaryScalar { op: b, scalar } => {
            arity(op, inputs, 1..=1)?;
            binary_dtype(name, *b, &inputs[0])?;
            if !inputs[0].dtype.is_float() && (scalar.fract() != 0.0 || (*b == BinaryOp::Pow && *scalar < 0.0)) {
                return Err(Error::invalid(
                    name,
                    format!(
                        "scalar {scalar} is not a non-negative integer; cast the {} tensor to a float dtype first",
                        inputs[0].dtype
                    ),
                ));
            }
            one(inputs[0].shape.to_owned(), inputs[0].dtype)
        }
        Op::Compare(_) => {
            arity(op, inputs, 2..=2)?;
            same_dtype(name, &inputs[0], &inputs[1])?;
            one(inputs[0].shape.broadcast_with(inputs[1].shape, name)?, DType::Bool)
        }
        Op::Where => {
            arity(op, inputs, 3..=3)?;
            let (c, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
            if c.dtype != DType::Bool {
                return Err(Error::from(ErrorKind::DTypeMismatch { op: name, expected: DType::Bool, got: c.dtype }));
            }
            same_dtype(name, a, b)?;
            let s = c.shape.broadcast_with(a.shape, name)?.broadcast_with(b.shape, name)?;
            one(s, a.dtype)
        }
        Op::Cast(dt) => {
            arity(op, inputs, 1..=1)?;
            one(inputs[0].shape.to_owned(), *dt)
        }
        Op::Reduce { op: r, dims, keepdim } => {
            arity(op, inputs, 1..=1)?;
            let m = &inputs[0];
            check_dims(name, m.shape, dims)?;
            let dtype = match r {
                ReduceOp::Sum | ReduceOp::Prod if !m.dtype.is_float() => DType::I64,
                ReduceOp::Mean | ReduceOp::LogSumExp => {
                    float_only(name, m)?;
                    m.dtype
                }
                ReduceOp::Max | ReduceOp::Min => {
                    if dims.iter().any(|&d| m.shape.dims()[d] == 0) {
                        return Err(Error::shape(name, &[m.shape], "cannot reduce over a zero-size dim (no identity)"));
                    }
                    m.dtype
                }
                _ => m.dtype,
            };
            one(reduced_shape(m.shape, dims, *keepdim), dtype)
        }
        Op::Var { dims, keepdim, .. } => {
            arity(op, inputs, 1..=1)?;
            float_only(name, &inputs[0])?;
            check_dims(name, inputs[0].shape, dims)?;
            one(reduced_shape(inputs[0].shape, dims, *keepdim), inputs[0].dtype)
        }
        Op::ArgMax { dim, keepdim } | Op::ArgMin { dim, keepdim } => {
            arity(op, inputs, 1..=1)?;
            let m = &inputs[0];
            not_bool(name, m)?;
            check_dims(name, m.shape, &[*dim])?;
            if m.shape.dims()[*dim] == 0 {
                return Err(Error::shape(name, &[m.shape], "cannot take the arg-extremum of a zero-size dim"));
            }
            one(reduced_shape(m.shape, &[*dim], *keepdim), DType::I64)
        }
        Op::Softmax { dim } | Op::LogSoftmax { dim } => {
            arity(op, inputs, 1..=1)?;
            float_only(name, &inputs[0])?;
            check_dims(name, inputs[0].shape, &[*dim])?;
            one(inputs[0].shape.to_owned(), inputs[0].dtype)
        }
        Op::Matmul => {
            arity(op, inputs, 2..=2)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            same_dtype(name, a, b)?;
            not_bool(name, a)?;
            let (ra, rb) = (a.shape.rank(), b.shape.rank());
            if ra < 2 || rb < 2 {
                return Err(Error::shape(name, &[a.shape, b.shape], "the matmul op needs rank >= 2 operands"));
            }
            let (m, k) = (a.shape.dims()[ra - 2], a.shape.dims()[ra - 1]);
            let (k2, n) = (b.shape.dims()[rb - 2], b.shape.dims()[rb - 1]);
            if k != k2 {
                return Err(Error::shape(name, &[a.shape, b.shape], format!("inner dimensions differ ({k} vs {k2})")));
            }
            let ba = Shape::new(&a.shape.dims()[..ra - 2]);
            let bb = Shape::new(&b.shape.dims()[..rb - 2]);
            let batch = ba
                .broadcast_with(&bb, name)
                .map_err(|_| Error::shape(name, &[a.shape, b.shape], "batch dimensions do not broadcast"))?;
            let mut dims = batch.dims().to_vec();
            dims.extend([m, n]);
            one(Shape::from(dims), a.dtype)
        }
        Op::Conv2d(p) => {
            arity(op, inputs, 2..=3)?;
            let (x, w) = (&inputs[0], &inputs[1]);
            float_only(name, x)?;
            same_dtype(name, x, w)?;
            let [n, c, h, wd] = nchw(name, x)?;
            let [o, cg, kh, kw] = match *w.shape.dims() {
                [a, b, c, d] => [a, b, c, d],
                _ => {
                    return Err(Error::shape(name, &[x.shape, w.shape], "weight must be 4-d [out, in/groups, kh, kw]"))
                }
            };
            let g = p.groups;
            if g == 0 || c % g != 0 || o % g != 0 || cg * g != c {
                return Err(Error::shape(
                    name,
                    &[x.shape, w.shape],
                    format!("input channels {c} and output channels {o} must be divisible by groups {g}, and weight.shape[1] = in/groups"),
                ));
            }
            check_bias(name, inputs, o)?;
            let oh = window_out(name, h, kh, p.stride[0], p.padding[0], p.dilation[0], false)?;
            let ow = window_out(name, wd, kw, p.stride[1], p.padding[1], p.dilation[1], false)?;
            one(Shape::new(&[n, o, oh, ow]), x.dtype)
        }
        Op::Conv2dWeightGrad { params: p, kernel: [kh, kw] } => {
            arity(op, inputs, 2..=2)?;
            let (x, g) = (&inputs[0], &inputs[1]);
            float_only(name, x)?;
            same_dtype(name, x, g)?;
            let [n, c, h, wd] = nchw(name, x)?;
            let [gn, o, gh, gw] = nchw(name, g)?;
            let groups = p.groups;
            if gn != n || groups == 0 || c % groups != 0 || o % groups != 0 {
                return Err(Error::shape(
                    name,
                    &[x.shape, g.shape],
                    format!("batch sizes must match and channels {c} and {o} must be divisible by groups {groups}"),
                ));
            }
            let oh = window_out(name, h, *kh, p.stride[0], p.padding[0], p.dilation[0], false)?;
            let ow = window_out(name, wd, *kw, p.stride[1], p.padding[1], p.dilation[1], false)?;
            if [oh, ow] != [gh, gw] {
                return Err(Error::shape(
                    name,
                    &[x.shape, g.shape],
                    format!("the convolution of the input with a {kh}x{kw} kernel is {oh}x{ow}, not {gh}x{gw}"),
                ));
            }
            one(Shape::new(&[o, c / groups, *kh, *kw]), x.dtype)
        }
        Op::ConvTranspose2d(p) => {
            arity(op, inputs, 2..=3)?;
            let (x, w) = (&inputs[0], &inputs[1]);
            float_only(name, x)?;
            same_dtype(name, x, w)?;
            let [n, c, h, wd] = nchw(name, x)?;
            let [ci, og, kh, kw] = match *w.shape.dims() {
                [a, b, c, d] => [a, b, c, d],
                _ => {
                    return Err(Error::shape(name, &[x.shape, w.shape], "weight must be 4-d [in, out/groups, kh, kw]"))
                }
            };
            let g = p.groups;
            if g == 0 || ci != c || c % g != 0 {
                return Err(Error::shape(
                    name,
                    &[x.shape, w.shape],
                    format!("weight.shape[0] must equal input channels {c}, divisible by groups {g}"),
                ));
            }
            let o = og * g;
            if kh == 0 || kw == 0 {
                return Err(Error::shape(name, &[x.shape, w.shape], "kernel size must be positive"));
            }
            check_bias(name, inputs, o)?;
            let mut out = [0usize; 2];
            for i in 0..2 {
                let (s, d, op_) = (p.stride[i], p.dilation[i], p.output_padding[i]);
                if s == 0 || d == 0 {
                    return Err(Error::invalid(name, "stride and dilation must be positive"));
                }
                if op_ >= s.max(d) {
                    return Err(Error::invalid(
                        name,
                        format!("output_padding {op_} must be smaller than stride or dilation"),
                    ));
                }
                let k = [kh, kw][i];
                let inp = [h, wd][i];
                let full = (inp.max(1) - 1) * s + d * (k - 1) + op_ + 1;
                if inp == 0 || full <= 2 * p.padding[i] {
                    return Err(Error::shape(name, &[x.shape, w.shape], "padding leaves an empty output"));
                }
                out[i] = full - 2 * p.padding[i];
            }
            one(Shape::new(&[n, o, out[0], out[1]]), x.dtype)
        }
        Op::MaxPool2d(p) | Op::MaxPool2dValues(p) => {
            // The values-only form is what `max_pool2d` records outside
            // autograd: its errors name the function the user called.
            let name = "max_pool2d";
            arity(op, inputs, 1..=1)?;
            let s = pool_out(name, &inputs[0], p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode)?;
            let values = TensorMeta::new(s.clone(), inputs[0].dtype);
            Ok(match op {
                Op::MaxPool2d(_) => smallvec![values, TensorMeta::new(s, DType::I64)],
                _ => smallvec![values],
            })
        }
        Op::AvgPool2d(p) => {
            arity(op, inputs, 1..=1)?;
            one(pool_out(name, &inputs[0], p.kernel, p.stride, p.padding, [1, 1], p.ceil_mode)?, inputs[0].dtype)
        }
        Op::AdaptiveAvgPool2d { output } => {
            arity(op, inputs, 1..=1)?;
            float_only(name, &inputs[0])?;
            let [n, c, h, w] = nchw(name, &inputs[0])?;
            if output[0] == 0 || output[1] == 0 || h == 0 || w == 0 {
                return Err(Error::shape(
                    name,
                    &[inputs[0].shape],
                    format!("output size {output:?} and input H, W must be positive"),
                ));
            }
            one(Shape::new(&[n, c, output[0], output[1]]), inputs[0].dtype)
        }
        Op::Cat { dim } => {
            if inputs.is_empty() {
                return Err(Error::invalid(name, "expected at least one tensor"));
            }
            let first = &inputs[0];
            check_dims(name, first.shape, &[*dim])?;
            let mut total = 0;
            for m in inputs {
                same_dtype(name, first, m)?;
                let ok = m.shape.rank() == first.shape.rank()
                    && m.shape.dims().iter().zip(first.shape.dims()).enumerate().all(|(i, (a, b))| i == *dim || a == b);
                if !ok {
                    let shapes: Vec<&Shape> = inputs.iter().map(|m| m.shape).collect();
                    return Err(Error::shape(name, &shapes, format!("all tensors must match except in dim {dim}")));
                }
                total += m.shape.dims()[*dim];
            }
            let mut s = first.shape.to_owned();
            s.dims_mut()[*dim] = total;
            one(s, first.dtype)
        }
        Op::IndexSelect { dim } => {
            arity(op, inputs, 2..=2)?;
            let (x, idx) = (&inputs[0], &inputs[1]);
            check_dims(name, x.shape, &[*dim])?;
            index_dtype(name, idx)?;
            if idx.shape.rank() > 1 {
                return Err(Error::shape(name, &[x.shape, idx.shape], "index must be 0-d or 1-d"));
            }
            let mut s = x.shape.to_owned();
            s.dims_mut()[*dim] = idx.shape.numel();
            one(s, x.dtype)
        }
        Op::Gather { dim } => {
            arity(op, inputs, 2..=2)?;
            let (x, idx) = (&inputs[0], &inputs[1]);
            check_dims(name, x.shape, &[*dim])?;
            index_dtype(name, idx)?;
            let ok = idx.shape.rank() == x.shape.rank()
                && idx.shape.dims().iter().zip(x.shape.dims()).enumerate().all(|(i, (a, b))| i == *dim || a <= b);
            if !ok {
                return Err(Error::shape(
                    name,
                    &[x.shape, idx.shape],
                    format!("index must have the input's rank and no larger size outside dim {dim}"),
                ));
            }
            one(idx.shape.to_owned(), x.dtype)
        }
        Op::ScatterAdd { dim } => {
            arity(op, inputs, 3..=3)?;
            let (x, idx, src) = (&inputs[0], &inputs[1], &inputs[2]);
            check_dims(name, x.shape, &[*dim])?;
            index_dtype(name, idx)?;
            same_dtype(name, x, src)?;
            not_bool(name, x)?;
            let r = x.shape.rank();
            let ok = idx.shape.rank() == r
                && src.shape.rank() == r
                && (0..r).all(|i| {
                    idx.shape.dims()[i] <= src.shape.dims()[i]
                        && (i == *dim || idx.shape.dims()[i] <= x.shape.dims()[i])
                });
            if !ok {
                return Err(Error::shape(
                    name,
                    &[x.shape, idx.shape, src.shape],
                    "index must have the same rank, be no larger than src, and no larger than self outside dim",
                ));
            }
            one(x.shape.to_owned(), x.dtype)
        }
        Op::OneHot { num_classes } => {
            arity(op, inputs, 1..=1)?;
            if inputs[0].dtype != DType::I64 {
                return Err(Error::from(ErrorKind::DTypeMismatch {
                    op: name,
                    expected: DType::I64,
                    got: inputs[0].dtype,
                }));
            }
            if *num_classes == 0 {
                return Err(Error::invalid(name, "num_classes must be positive"));
            }
            let mut d = inputs[0].shape.dims().to_vec();
            d.push(*num_classes);
            one(Shape::from(d), DType::I64)
        }
        Op::Pad { pads, .. } => {
            arity(op, inputs, 1..=1)?;
            let m = &inputs[0];
            if pads.len() != m.shape.rank() {
                return Err(Error::shape(
                    name,
                    &[m.shape],
                    format!("expected {} (before, after) pairs, got {}", m.shape.rank(), pads.len()),
                ));
            }
            let d: Vec<usize> = m.shape.dims().iter().zip(pads).map(|(&d, &(a, b))| d + a + b).collect();
            one(Shape::from(d), m.dtype)
        }
        Op::Reshape { shape } => {
            arity(op, inputs, 1..=1)?;
            let s = Shape::new(shape);
            if s.checked_numel() != Some(inputs[0].shape.numel()) {
                return Err(Error::shape(name, &[inputs[0].shape, &s], "element counts differ"));
            }
            one(s, inputs[0].dtype)
        }
        Op::Permute { perm } => {
            arity(op, inputs, 1..=1)?;
            let m = &inputs[0];
            let r = m.shape.rank();
            let mut seen = vec![false; r];
            if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
                return Err(Error::shape(name, &[m.shape], format!("{perm:?} is not a permutation of {r} dims")));
            }
            one(Shape::from(perm.iter().map(|&p| m.shape.dims()[p]).collect::<Vec<_>>()), m.dtype)
        }
        Op::Expand { shape } => {
            arity(op, inputs, 1..=1)?;
            let s = Shape::new(shape);
            s.checked_numel()
                .ok_or_else(|| Error::shape(name, &[inputs[0].shape, &s], "the number of elements overflows"))?;
            crate::Layout::contiguous(inputs[0].shape.to_owned()).broadcast_to(&s, name)?;
            one(s, inputs[0].dtype)
        }
        Op::Slice { dim, start, end, step } => {
            arity(op, inputs, 1..=1)?;
            let m = &inputs[0];
            check_dims(name, m.shape, &[*dim])?;
            let size = m.shape.dims()[*dim];
            if *step == 0 || start > end || *end > size {
                return Err(Error::invalid(
                    name,
                    format!(
                        "range {start}..{end} step {step} is invalid for dim {dim} of size {size} (shape {})",
                        m.shape
                    ),
                ));
            }
            let mut s = m.shape.to_owned();
            s.dims_mut()[*dim] = (end - start).div_ceil(*step);
            one(s, m.dtype)
        }
        Op::Contiguous | Op::ToDevice(_) => {
            arity(op, inputs, 1..=1)?;
            one(inputs[0].shape.to_owned(), inputs[0].dtype)
        }
    }
}

/// Output shape of a 2-d pooling window over an NCHW float input.
fn pool_out(
    name: &'static str,
    x: &MetaRef<'_>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Result<Shape> {
    float_only(name, x)?;
    let [n, c, h, w] = nchw(name, x)?;
    if (0..2).any(|i| padding[i] * 2 > kernel[i]) {
        return Err(Error::invalid(name, format!("padding {padding:?} must be at most half the kernel {kernel:?}")));
    }
    let oh = window_out(name, h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)?;
    let ow = window_out(name, w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)?;
    Ok(Shape::new(&[n, c, oh, ow]))
}

fn binary_dtype(name: &'static str, b: BinaryOp, m: &MetaRef<'_>) -> Result<()> {
    not_bool(name, m)?;
    if b.float_only() {
        float_only(name, m)?;
    }
    Ok(())
}

fn check_bias(name: &'static str, inputs: &[MetaRef<'_>], out_channels: usize) -> Result<()> {
    if let Some(b) = inputs.get(2) {
        same_dtype(name, &inputs[0], b)?;
        if b.shape.dims() != [out_channels] {
            return Err(Error::shape(name, &[inputs[1].shape, b.shape], format!("bias must be [{out_channels}]")));
        }
    }
    Ok(())
}

/// Rejects shapes whose element count or byte size overflows (they could never be allocated).
pub(crate) fn check_size(op: &'static str, shape: &Shape, dtype: DType) -> Result<usize> {
    allocatable_numel(shape, dtype).ok_or_else(|| overflow(op, shape))
}

/// The element count when a buffer of this shape could be allocated at all.
fn allocatable_numel(shape: &Shape, dtype: DType) -> Option<usize> {
    shape.checked_numel().filter(|n| n.checked_mul(dtype.size_in_bytes()).is_some_and(|b| b <= isize::MAX as usize))
}

fn overflow(op: &'static str, shape: &Shape) -> Error {
    Error::shape(op, &[shape], "the number of elements overflows")
}
