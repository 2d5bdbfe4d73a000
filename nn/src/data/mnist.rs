//! The MNIST digits in IDX files (`{prefix}-images-idx3-ubyte[.gz]` and
//! `{prefix}-labels-idx1-ubyte[.gz]`, prefix `train` or `t10k`).

use super::transforms::{to_unit_float, Normalize};
use super::{read_idx, TensorDataset};
use oar_tensor::{DType, Error, Result, Tensor};
use std::path::{Path, PathBuf};

/// Mean of the MNIST training pixels (in [0, 1]), the usual normalization constant.
pub const MNIST_MEAN: f64 = 0.1307;
/// Standard deviation of the MNIST training pixels.
pub const MNIST_STD: f64 = 0.3081;

/// MNIST images (`[N, 28, 28]` u8) and labels (`[N]` u8).
#[derive(Clone, Debug)]
pub struct Mnist {
    pub images: Tensor,
    pub labels: Tensor,
}

fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(format!("{name}.gz")), dir.join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::io(
        format!("looking for {name}[.gz] in {}", dir.display()),
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    ))
}

impl Mnist {
    /// Loads the `prefix` split (`"train"` or `"t10k"`) from `dir`.
    pub fn load(dir: impl AsRef<Path>, prefix: &str) -> Result<Mnist> {
        let dir = dir.as_ref();
        let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        let images = read_idx(&images_path)?;
        let labels = read_idx(&labels_path)?;
        if images.dtype() != DType::U8 || images.rank() != 3 {
            return Err(Error::invalid_file(
                &images_path,
                format!("expected u8 images [N, H, W], got {} {}", images.dtype(), images.shape()),
            ));
        }
        if labels.dtype() != DType::U8 || labels.rank() != 1 || labels.dims()[0] != images.dims()[0] {
            return Err(Error::invalid_file(
                &labels_path,
                format!("expected {} u8 labels, got {} {}", images.dims()[0], labels.dtype(), labels.shape()),
            ));
        }
        if let Some(bad) = labels.to_vec::<u8>()?.iter().find(|&&l| l > 9) {
            return Err(Error::invalid_file(&labels_path, format!("label {bad} is not a digit")));
        }
        Ok(Mnist { images, labels })
    }

    pub fn len(&self) -> usize {
        self.images.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Images as normalized f32 `[N, 1, 28, 28]` (pixels / 255, then
    /// `(x - MNIST_MEAN) / MNIST_STD`) with i64 labels, ready for a CNN.
    pub fn to_dataset(&self) -> Result<TensorDataset> {
        let x = to_unit_float(&self.images)?.unsqueeze(1)?;
        let x = Normalize::new(vec![MNIST_MEAN], vec![MNIST_STD])?.apply(&x)?;
        TensorDataset::new(x, self.labels.to_dtype(DType::I64)?)
    }
}
