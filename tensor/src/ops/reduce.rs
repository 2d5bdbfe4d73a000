//! Reductions and softmax.

use crate::op::{Op, ReduceOp};
use crate::{Dim, Dims, Result, Tensor};

impl Tensor {
    fn reduce(&self, op: ReduceOp, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let dims = dims.resolve(self.shape(), op.name())?;
        Tensor::apply1(Op::Reduce { op, dims: dims.to_vec(), keepdim }, &[self])
    }

    fn reduce_all(&self, op: ReduceOp) -> Result<Tensor> {
        Tensor::apply1(Op::Reduce { op, dims: (0..self.rank()).collect(), keepdim: false }, &[self])
    }

    /// Sum over `dims` (integers and bool sum to i64, as PyTorch).
    pub fn sum(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, dims, keepdim)
    }
    /// Sum of all elements (0-d).
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Sum)
    }
    pub fn mean(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, dims, keepdim)
    }
    pub fn mean_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Mean)
    }
    /// Maximum over `dims` (NaN propagates).
    pub fn max(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, dims, keepdim)
    }
    pub fn max_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Max)
    }
    /// Minimum over `dims` (NaN propagates).
    pub fn min(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, dims, keepdim)
    }
    pub fn min_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Min)
    }
    pub fn prod(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Prod, dims, keepdim)
    }
    /// `log(sum(exp(x)))` over `dims`, computed stably.
    pub fn logsumexp(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::LogSumExp, dims, keepdim)
    }

    /// Variance over `dims` with `correction` (1 = unbiased), as `torch.var`.
    pub fn var(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Result<Tensor> {
        let dims = dims.resolve(self.shape(), "var")?;
        Tensor::apply1(Op::Var { dims: dims.to_vec(), correction, keepdim }, &[self])
    }

    /// Standard deviation: the square root of [`Tensor::var`].
    pub fn std(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Result<Tensor> {
        self.var(dims, correction, keepdim)?.sqrt()
    }

    /// Index (i64) of the first maximum along `dim`.
    pub fn argmax(&self, dim: impl Dim, keepdim: bool) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "argmax")?;
        Tensor::apply1(Op::ArgMax { dim, keepdim }, &[self])
    }

    /// Index (i64) of the first minimum along `dim`.
    pub fn argmin(&self, dim: impl Dim, keepdim: bool) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "argmin")?;
        Tensor::apply1(Op::ArgMin { dim, keepdim }, &[self])
    }

    /// Softmax along `dim` (max-subtracted, stable for large inputs).
    pub fn softmax(&self, dim: impl Dim) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "softmax")?;
        Tensor::apply1(Op::Softmax { dim }, &[self])
    }

    /// Log-softmax along `dim`, computed directly (not as `log(softmax)`).
    pub fn log_softmax(&self, dim: impl Dim) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "log_softmax")?;
        Tensor::apply1(Op::LogSoftmax { dim }, &[self])
    }
}
