//! # oar-autograd
//!
//! Reverse-mode automatic differentiation for Oar tensors. Ops record their
//! provenance (op + inputs) when grad mode is on and an input requires grad;
//! [`Backward::backward`] walks it in reverse topological order, applying one
//! vector-Jacobian rule per [`oar_tensor::Op`], and accumulates gradients into
//! the leaves' [`Tensor::grad`].
//!
//! ```
//! use oar_autograd::Backward;
//! use oar_tensor::{Device, Tensor};
//! # fn main() -> oar_tensor::Result<()> {
//! let dev = Device::cpu();
//! let w = Tensor::from_vec(vec![1.0f32, -2.0, 3.0], [3], &dev)?.with_requires_grad(true)?;
//! let x = Tensor::from_vec(vec![0.5f32, 1.0, 2.0], [3], &dev)?;
//! let loss = w.mul(&x)?.square()?.sum_all()?; // sum((w x)^2)
//! loss.backward()?;
//! // d/dw = 2 (w x) x
//! assert_eq!(w.grad().unwrap().to_vec::<f32>()?, vec![0.5, -4.0, 24.0]);
//! # Ok(()) }
//! ```
//!
//! The rules are ordinary tensor ops, so with `create_graph` the backward
//! pass is itself recorded and can be differentiated again, and a jit trace
//! can capture a whole training step.

mod engine;
mod gradcheck;
mod rules;

pub use engine::BackwardOptions;
pub use gradcheck::{gradcheck, GradcheckOptions};
pub use oar_tensor::{no_grad, set_grad_enabled};

use oar_tensor::{Result, Tensor};

/// Backward passes from a tensor (implemented for [`Tensor`]).
pub trait Backward {
    /// Backpropagates from a one-element tensor (a loss), seeding it with 1,
    /// and accumulates gradients into the leaves that require grad.
    fn backward(&self) -> Result<()>;

    /// Backpropagates from any tensor with the given output gradient (same
    /// shape and dtype).
    fn backward_with(&self, grad: &Tensor) -> Result<()>;

    /// [`Backward::backward`] / [`Backward::backward_with`] with options.
    fn backward_opts(&self, grad: Option<&Tensor>, opts: BackwardOptions) -> Result<()>;
}

impl Backward for Tensor {
    fn backward(&self) -> Result<()> {
        self.backward_opts(None, BackwardOptions::default())
    }

    fn backward_with(&self, grad: &Tensor) -> Result<()> {
        self.backward_opts(Some(grad), BackwardOptions::default())
    }

    fn backward_opts(&self, grad: Option<&Tensor>, opts: BackwardOptions) -> Result<()> {
        let roots = [self.clone()];
        let seeds = engine::seeds(&roots, grad.map(std::slice::from_ref))?;
        engine::run(&roots, seeds, opts, None).map(|_| ())
    }
}

/// Gradients of `outputs` with respect to `inputs`, returned instead of
/// accumulated into `.grad` (PyTorch's `torch.autograd.grad`). `grad_outputs`
/// seeds each output (ones for one-element outputs when `None`). An input the
/// outputs do not depend on gets `None`. With `create_graph`, the returned
/// gradients are themselves differentiable (e.g. for gradient penalties).
pub fn grad(
    outputs: &[&Tensor],
    inputs: &[&Tensor],
    grad_outputs: Option<&[&Tensor]>,
    opts: BackwardOptions,
) -> Result<Vec<Option<Tensor>>> {
    let roots: Vec<Tensor> = outputs.iter().map(|t| (*t).clone()).collect();
    let given: Option<Vec<Tensor>> = grad_outputs.map(|g| g.iter().map(|t| (*t).clone()).collect());
    if let Some(g) = &given {
        if g.len() != roots.len() {
            return Err(oar_tensor::Error::from(oar_tensor::ErrorKind::Autograd {
                msg: format!("grad: {} outputs but {} output gradients", roots.len(), g.len()),
            }));
        }
    }
    let seeds = engine::seeds(&roots, given.as_deref())?;
    let inputs: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
    engine::run(&roots, seeds, opts, Some(&inputs))
}
