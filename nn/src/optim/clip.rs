use crate::param::Param;
use oar_tensor::{DType, Error, Result, Tensor};

/// Scales the gradients of `params` so that their global `norm_type`-norm
/// (as one vector; `f64::INFINITY` for the max norm) is at most `max_norm`,
/// as `torch.nn.utils.clip_grad_norm_`: every gradient is multiplied by
/// `min(1, max_norm / (total + 1e-6))`. Returns the total norm before
/// clipping, as a 0-d tensor (read it with `item()`; it stays on the
/// device, so no host sync is forced): f64 when any gradient is f64, f32
/// otherwise (half-precision gradients are accumulated in f32).
pub fn clip_grad_norm(params: &[Param], max_norm: f64, norm_type: f64) -> Result<Tensor> {
    if max_norm.is_nan() || max_norm < 0.0 || norm_type.is_nan() || norm_type <= 0.0 {
        return Err(Error::invalid_arg(
            "clip_grad_norm",
            format!("max_norm must be >= 0 and norm_type > 0, got {max_norm} and {norm_type}"),
        ));
    }
    let _guard = oar_tensor::no_grad();
    let grads: Vec<(Param, Tensor)> = params.iter().filter_map(|p| p.grad().map(|g| (p.clone(), g))).collect();
    let Some(first) = grads.first() else {
        return Tensor::zeros((), DType::F32, &oar_tensor::Device::cpu());
    };
    let device = first.1.device().clone();
    // f64 gradients are accumulated in f64 as PyTorch does: an f32 norm would scale
    // them by a factor off by ~1e-7 relative.
    let acc = if grads.iter().any(|(_, g)| g.dtype() == DType::F64) { DType::F64 } else { DType::F32 };
    let mut total: Option<Tensor> = None;
    for (_, g) in &grads {
        let g = g.to_dtype(acc)?;
        let part =
            if norm_type.is_infinite() { g.abs()?.max_all()? } else { g.abs()?.pow_scalar(norm_type)?.sum_all()? };
        let part = part.to_device(&device)?;
        total = Some(match total {
            None => part,
            Some(t) if norm_type.is_infinite() => t.maximum(&part)?,
            Some(t) => t.add(&part)?,
        });
    }
    let total = total.expect("at least one gradient");
    let total = if norm_type.is_infinite() { total } else { total.pow_scalar(1.0 / norm_type)? };
    // min(1, max_norm / (total + 1e-6)), computed on the device.
    let coef = total.add_scalar(1e-6)?.recip()?.mul_scalar(max_norm)?.minimum_scalar(1.0)?;
    for (p, g) in grads {
        let c = coef.to_device(g.device())?.to_dtype(g.dtype())?;
        p.set_grad(Some(g.mul(&c)?));
    }
    Ok(total)
}

/// Clamps every gradient element of `params` to `[-clip_value, clip_value]`
/// (`torch.nn.utils.clip_grad_value_`).
pub fn clip_grad_value(params: &[Param], clip_value: f64) -> Result<()> {
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(Error::invalid_arg("clip_grad_value", format!("clip_value must be >= 0, got {clip_value}")));
    }
    let _guard = oar_tensor::no_grad();
    for p in params {
        if let Some(g) = p.grad() {
            p.set_grad(Some(g.clamp(Some(-clip_value), Some(clip_value))?));
        }
    }
    Ok(())
}
