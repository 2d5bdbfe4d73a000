//! VJPs of matmul, convolutions and pooling.

use super::{sum_to, when, Ctx, Grads};
use oar_tensor::op::Op;
use oar_tensor::{
    is_grad_enabled, no_grad, AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, MaxPool2dParams, Result, Tensor,
};

/// `a @ b`: `g @ b^T` and `a^T @ g`, summed over broadcast batch dims.
pub(super) fn matmul(c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (a, b) = (c.x(0), c.x(1));
    let ga = when(c.needs(0), || sum_to(&g.matmul(&b.transpose(-1, -2)?)?, a.shape()))?;
    let gb = when(c.needs(1), || {
        // A transposed matrix (Linear's `x @ w.t()`) gets its gradient in its
        // own layout, (g^T a)^T, so the weight's gradient comes out contiguous:
        // the optimizer's element-wise update then runs on contiguous data
        // instead of walking a transpose (PyTorch's gradient layout contract).
        let bl = b.layout();
        if a.rank() == 2 && b.rank() == 2 && bl.strides() == [1, b.dims()[0]] && b.dims()[1] > 1 {
            return g.transpose(0, 1)?.matmul(a)?.transpose(0, 1);
        }
        sum_to(&a.transpose(-1, -2)?.matmul(g)?, b.shape())
    })?;
    Ok(vec![ga, gb])
}

/// The weight gradient of a convolution of `input` that produced `grad_out`:
/// `gw[o, c, i, j] = sum over n, p, q of grad_out[n, o, p, q] * input_padded[n, c, p*s + i*d, q*s + j*d]`.
/// Computed per group as a convolution of the input (batch and channels
/// swapped) with the output gradient as the kernel; stride and dilation swap
/// roles. Gives `[O, C/groups, kh, kw]` with `O` = `grad_out`'s channels.
#[allow(clippy::too_many_arguments)]
fn conv_weight_grad(
    input: &Tensor,
    grad_out: &Tensor,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    kernel: [usize; 2],
) -> Result<Tensor> {
    if !is_grad_enabled() {
        // One kernel, unless this backward pass is itself being recorded.
        let p = Conv2dParams { stride, padding, dilation, groups };
        return input.conv2d_weight_grad(grad_out, kernel, &p);
    }
    let (cg, og) = (input.dims()[1] / groups, grad_out.dims()[1] / groups);
    let params = Conv2dParams { stride: dilation, padding, dilation: stride, groups: 1 };
    let mut parts = Vec::with_capacity(groups);
    for gi in 0..groups {
        let x = input.narrow(1, gi * cg, cg)?.transpose(0, 1)?;
        let k = grad_out.narrow(1, gi * og, og)?.transpose(0, 1)?;
        let w = x.conv2d(&k, None, &params)?; // [cg, og, kh', kw'], kh' >= kh
        let w = w.narrow(2, 0, kernel[0])?.narrow(3, 0, kernel[1])?;
        parts.push(w.transpose(0, 1)?);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::cat(&refs, 0)
}

fn bias_grad(c: &Ctx<'_>, g: &Tensor) -> Result<Option<Tensor>> {
    when(c.needs(2), || g.sum([0, 2, 3], false))
}

pub(super) fn conv2d(p: &Conv2dParams, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (x, w) = (c.x(0), c.x(1));
    let k = [w.dims()[2], w.dims()[3]];
    // The transposed convolution maps back to x's size up to the rows the
    // forward stride skipped; output_padding restores them.
    let mut output_padding = [0; 2];
    for i in 0..2 {
        let covered = (g.dims()[2 + i] - 1) * p.stride[i] + p.dilation[i] * (k[i] - 1) + 1;
        output_padding[i] = x.dims()[2 + i] + 2 * p.padding[i] - covered;
    }
    let tp = ConvTranspose2dParams {
        stride: p.stride,
        padding: p.padding,
        output_padding,
        dilation: p.dilation,
        groups: p.groups,
    };
    let gx = when(c.needs(0), || g.conv_transpose2d(w, None, &tp))?;
    let gw = when(c.needs(1), || conv_weight_grad(x, g, p.stride, p.padding, p.dilation, p.groups, k))?;
    let mut grads = vec![gx, gw];
    if c.inputs.len() == 3 {
        grads.push(bias_grad(c, g)?);
    }
    Ok(grads)
}

pub(super) fn conv_transpose2d(p: &ConvTranspose2dParams, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (x, w) = (c.x(0), c.x(1));
    let k = [w.dims()[2], w.dims()[3]];
    let cp = Conv2dParams { stride: p.stride, padding: p.padding, dilation: p.dilation, groups: p.groups };
    // The forward's output_padding rows are never read back: crop to x's size.
    let gx = when(c.needs(0), || g.conv2d(w, None, &cp)?.narrow(2, 0, x.dims()[2])?.narrow(3, 0, x.dims()[3]))?;
    // The transpose's weight gradient is the convolution weight gradient with
    // the roles of input and output swapped.
    let gw = when(c.needs(1), || conv_weight_grad(g, x, p.stride, p.padding, p.dilation, p.groups, k))?;
    let mut grads = vec![gx, gw];
    if c.inputs.len() == 3 {
        grads.push(bias_grad(c, g)?);
    }
    Ok(grads)
}

/// The gradient goes to each window's maximum (the recorded indices).
pub(super) fn max_pool2d(p: &MaxPool2dParams, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let kept = match c.op {
        Op::MaxPool2d(_) => c.maybe_out(1),
        _ => None,
    };
    let indices = match kept {
        Some(i) => i.clone(),
        // Dropped indices during a trace, or a values-only pool (applied
        // directly, as `max_pool2d` picks it only when nothing records it):
        // recompute them.
        None => {
            let _g = no_grad();
            Tensor::apply(Op::MaxPool2d(*p), &[x])?.swap_remove(1)
        }
    };
    let (n, ch, h, w) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let plane = g.dims()[2] * g.dims()[3];
    let gx = Tensor::zeros([n, ch, h * w], g.dtype(), g.device())?.scatter_add(
        2,
        &indices.reshape([n, ch, plane])?,
        &g.reshape([n, ch, plane])?,
    )?;
    Ok(vec![Some(gx.reshape(x.shape().clone())?)])
}

/// Each input element gets the gradient of every window containing it,
/// divided by that window's divisor: a transposed convolution with a kernel
/// of ones over the divided gradient, then cropped to the unpadded input.
pub(super) fn avg_pool2d(p: &AvgPool2dParams, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let (n, ch, h, w) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let (oh, ow) = (g.dims()[2], g.dims()[3]);
    let divisors = avg_pool_divisors(p, [h, w], [oh, ow]);
    let div = Tensor::from_vec(divisors, [oh, ow], g.device())?.to_dtype(g.dtype())?;
    let scaled = g.div(&div)?.reshape([n * ch, 1, oh, ow])?;
    let ones = Tensor::ones([1, 1, p.kernel[0], p.kernel[1]], g.dtype(), g.device())?;
    let tp = ConvTranspose2dParams { stride: p.stride, ..Default::default() };
    let full = scaled.conv_transpose2d(&ones, None, &tp)?; // padded coordinates
    let (fh, fw) = (full.dims()[2] as i64, full.dims()[3] as i64);
    let (ph, pw) = (p.padding[0] as i64, p.padding[1] as i64);
    let cropped = full.pad(&[-pw, w as i64 + pw - fw, -ph, h as i64 + ph - fh], 0.0)?;
    Ok(vec![Some(cropped.reshape(x.shape().clone())?)])
}

/// PyTorch's divisor for each output window of `avg_pool2d`.
fn avg_pool_divisors(p: &AvgPool2dParams, input: [usize; 2], output: [usize; 2]) -> Vec<f64> {
    let span = |i: usize, axis: usize| {
        let start = (i * p.stride[axis]) as i64 - p.padding[axis] as i64;
        let end = (start + p.kernel[axis] as i64).min((input[axis] + p.padding[axis]) as i64);
        let padded = end - start;
        let clipped = end.min(input[axis] as i64) - start.max(0);
        if p.count_include_pad {
            padded
        } else {
            clipped
        }
    };
    let mut out = Vec::with_capacity(output[0] * output[1]);
    for i in 0..output[0] {
        for j in 0..output[1] {
            out.push((span(i, 0) * span(j, 1)).max(1) as f64);
        }
    }
    out
}

/// Adaptive average pooling is `A_h x A_w^T` per plane, with `A` the averaging
/// matrices of PyTorch's windows; its gradient is `A_h^T g A_w`.
pub(super) fn adaptive_avg_pool2d(output: [usize; 2], c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let (h, w) = (x.dims()[2], x.dims()[3]);
    let a_h = averaging_matrix(output[0], h, g)?; // [oh, h]
    let a_w = averaging_matrix(output[1], w, g)?; // [ow, w]
    let gx = a_h.t()?.matmul(g)?.matmul(&a_w)?;
    Ok(vec![Some(gx)])
}

/// `[out, input]`: row i averages PyTorch's window `[floor(i*in/out), ceil((i+1)*in/out))`.
fn averaging_matrix(out: usize, input: usize, like: &Tensor) -> Result<Tensor> {
    let mut m = vec![0f64; out * input];
    for i in 0..out {
        let (start, end) = (i * input / out, ((i + 1) * input).div_ceil(out));
        for j in start..end {
            m[i * input + j] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::from_vec(m, [out, input], like.device())?.to_dtype(like.dtype())
}
