//! Checking analytic gradients against central finite differences.

use crate::{grad, BackwardOptions};
use oar_tensor::{no_grad, DType, Error, ErrorKind, Generator, Result, Tensor};

/// Tolerances of [`gradcheck`] (defaults suit f64 inputs).
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Seed of the random output projection.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-3, seed: 0 }
    }
}

/// Checks the gradients of `f` at `inputs` against central finite differences.
///
/// The output is projected on a random tensor `v` (`L = sum(f(x) * v)`), so
/// one backward pass checks the whole vector-Jacobian product. Floating-point
/// inputs are checked (their layouts, e.g. transposed or broadcast views, are
/// kept for the analytic pass); other inputs (indices, masks) are passed
/// through. Returns an error naming the first mismatching element.
///
/// ```
/// use oar_autograd::{gradcheck, GradcheckOptions};
/// use oar_tensor::{DType, Device, Tensor};
/// # fn main() -> oar_tensor::Result<()> {
/// let x = Tensor::randn([3, 4], DType::F64, &Device::cpu())?;
/// gradcheck(|t| t[0].tanh()?.sum(1, false), &[x], GradcheckOptions::default())?;
/// # Ok(()) }
/// ```
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor], opts: GradcheckOptions) -> Result<()> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|x| if x.dtype().is_float() { x.with_requires_grad(true) } else { Ok(x.clone()) })
        .collect::<Result<_>>()?;
    let y = f(&leaves)?;
    let mut gen = Generator::new(opts.seed);
    let v = Tensor::randn_with(&mut gen, y.shape().clone(), y.dtype(), y.device())?;
    let loss = y.mul(&v)?.sum_all()?;
    let checked: Vec<&Tensor> = leaves.iter().filter(|t| t.requires_grad()).collect();
    let analytic = grad(&[&loss], &checked, None, BackwardOptions::default())?;

    let _g = no_grad();
    let eval = |xs: &[Tensor]| -> Result<f64> { f(xs)?.mul(&v)?.sum_all()?.item() };
    let mut k = 0;
    for (i, x) in inputs.iter().enumerate() {
        if !x.dtype().is_float() {
            continue;
        }
        let a = match &analytic[k] {
            Some(g) => g.to_dtype(DType::F64)?.to_vec::<f64>()?,
            None => vec![0.0; x.numel()],
        };
        k += 1;
        let base = x.to_dtype(DType::F64)?.to_vec::<f64>()?;
        for (j, &aj) in a.iter().enumerate() {
            let at = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs = inputs.to_vec();
                xs[i] = Tensor::from_vec(v, x.shape().clone(), x.device())?.to_dtype(x.dtype())?;
                eval(&xs)
            };
            let numeric = (at(opts.eps)? - at(-opts.eps)?) / (2.0 * opts.eps);
            // Written so that a NaN on either side fails.
            let within = (aj - numeric).abs() <= opts.atol + opts.rtol * numeric.abs();
            if !within {
                return Err(Error::from(ErrorKind::Autograd {
                    msg: format!(
                        "gradcheck: input {i} ({:?}) element {j}: analytic {aj} vs numeric {numeric}",
                        x.dims()
                    ),
                }));
            }
        }
    }
    Ok(())
}
