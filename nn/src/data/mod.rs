//! Data loading: the [`Dataset`] trait, an in-memory [`TensorDataset`], a
//! [`DataLoader`] (batching, seeded shuffling, drop-last, background
//! prefetch), the IDX reader and the MNIST loader.

mod idx;
mod loader;
mod mnist;
mod transforms;

pub use idx::{parse_idx, read_idx};
pub use loader::{DataLoader, DataLoaderConfig, Epoch};
pub use mnist::{Mnist, MNIST_MEAN, MNIST_STD};
pub use transforms::{to_unit_float, Normalize};

use oar_tensor::{Error, ErrorKind, Result, Tensor};

/// A batch of examples: inputs stacked along a new dim 0, and targets.
#[derive(Clone, Debug)]
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
}

/// Indexed examples (PyTorch's map-style `Dataset`).
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Example `index`: an input and its target.
    fn get(&self, index: usize) -> Result<(Tensor, Tensor)>;

    /// The examples at `indices`, collated into a batch. The default stacks
    /// [`Dataset::get`]'s results; in-memory datasets gather rows at once.
    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let mut inputs = Vec::with_capacity(indices.len());
        let mut targets = Vec::with_capacity(indices.len());
        for &i in indices {
            let (x, y) = self.get(i)?;
            inputs.push(x);
            targets.push(y);
        }
        let xr: Vec<&Tensor> = inputs.iter().collect();
        let yr: Vec<&Tensor> = targets.iter().collect();
        Ok(Batch { inputs: Tensor::stack(&xr, 0)?, targets: Tensor::stack(&yr, 0)? })
    }
}

/// Examples as rows of two tensors (PyTorch's `TensorDataset`): example `i`
/// is `(inputs[i], targets[i])`.
#[derive(Clone, Debug)]
pub struct TensorDataset {
    inputs: Tensor,
    targets: Tensor,
}

impl TensorDataset {
    pub fn new(inputs: Tensor, targets: Tensor) -> Result<Self> {
        if inputs.rank() == 0 || targets.rank() == 0 || inputs.dims()[0] != targets.dims()[0] {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "TensorDataset",
                shapes: vec![inputs.shape().clone(), targets.shape().clone()],
                msg: "inputs and targets need the same number of rows (dim 0)".into(),
            }));
        }
        Ok(TensorDataset { inputs, targets })
    }

    pub fn inputs(&self) -> &Tensor {
        &self.inputs
    }

    pub fn targets(&self) -> &Tensor {
        &self.targets
    }

    /// Rows `start..end` as a dataset of their own (a view, no copy).
    pub fn slice(&self, start: usize, end: usize) -> Result<TensorDataset> {
        if start > end || end > self.len() {
            return Err(Error::invalid_arg(
                "TensorDataset::slice",
                format!("range {start}..{end} of {} rows", self.len()),
            ));
        }
        TensorDataset::new(self.inputs.narrow(0, start, end - start)?, self.targets.narrow(0, start, end - start)?)
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.inputs.dims()[0]
    }

    fn get(&self, index: usize) -> Result<(Tensor, Tensor)> {
        if index >= self.len() {
            return Err(Error::from(ErrorKind::IndexOutOfRange {
                op: "TensorDataset::get",
                index: index as i64,
                dim: 0,
                size: self.len(),
            }));
        }
        Ok((self.inputs.narrow(0, index, 1)?.squeeze(0)?, self.targets.narrow(0, index, 1)?.squeeze(0)?))
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Batch> {
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::from_vec(idx, [indices.len()], self.inputs.device())?;
        Ok(Batch { inputs: self.inputs.index_select(0, &idx)?, targets: self.targets.index_select(0, &idx)? })
    }
}
