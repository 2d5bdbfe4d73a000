//! Input transforms (torchvision's `ToTensor` scaling and `Normalize`).

use oar_tensor::{DType, Error, ErrorKind, Result, Tensor};

/// u8 pixels to f32 in [0, 1] (`x / 255`).
pub fn to_unit_float(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::U8 {
        return Err(Error::from(ErrorKind::UnsupportedDType {
            op: "to_unit_float",
            dtype: x.dtype(),
            msg: "expected u8 pixels",
        }));
    }
    x.to_dtype(DType::F32)?.div_scalar(255.0)
}

/// Per-channel `(x - mean[c]) / std[c]` over dim 1 of `[N, C, ...]` (or dim 0
/// of `[C, ...]`) input; one value applies to every channel.
#[derive(Clone, Debug)]
pub struct Normalize {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Normalize {
    pub fn new(mean: Vec<f64>, std: Vec<f64>) -> Result<Normalize> {
        if mean.is_empty() || mean.len() != std.len() || std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err(Error::invalid_arg(
                "Normalize",
                format!("expected equally many means and positive stds, got {mean:?} and {std:?}"),
            ));
        }
        Ok(Normalize { mean, std })
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.mean.len() == 1 {
            return x.sub_scalar(self.mean[0])?.div_scalar(self.std[0]);
        }
        let c = self.mean.len();
        let dim = if x.rank() >= 4 { 1 } else { 0 };
        if x.rank() < 2 || x.dims()[dim] != c {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "Normalize",
                shapes: vec![x.shape().clone()],
                msg: format!("expected {c} channels in dim {dim}"),
            }));
        }
        let mut shape = vec![1; x.rank()];
        shape[dim] = c;
        let dev = x.device();
        let mean = Tensor::from_vec(self.mean.clone(), shape.as_slice(), dev)?.to_dtype(x.dtype())?;
        let std = Tensor::from_vec(self.std.clone(), shape.as_slice(), dev)?.to_dtype(x.dtype())?;
        x.sub(&mean)?.div(&std)
    }
}
