//! Weight initializers with PyTorch's formulas (`torch.nn.init`).
//!
//! Random draws come from the global generator ([`oar_tensor::manual_seed`])
//! or, with the `_with` forms, from an explicit [`Generator`], so an
//! initialization is reproducible run to run.

use crate::param::Param;
use oar_tensor::{DType, Device, Error, ErrorKind, Generator, Result, Shape, Tensor};

/// Which fan a Kaiming initializer scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Preserves the variance of activations in the forward pass (default).
    FanIn,
    /// Preserves the variance of gradients in the backward pass.
    FanOut,
}

/// The non-linearity a gain is computed for ([`calculate_gain`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    Linear,
    Conv,
    Sigmoid,
    Tanh,
    Relu,
    /// Leaky ReLU with this negative slope.
    LeakyRelu(f64),
    Selu,
}

/// PyTorch's `calculate_gain`: the standard-deviation scale that keeps
/// activations' variance stable through the non-linearity.
pub fn calculate_gain(nonlinearity: Nonlinearity) -> f64 {
    match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Conv | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// `(fan_in, fan_out)` of a weight shape: `[out, in, k...]` as Linear and Conv
/// weights are laid out. Needs at least two dims.
pub fn fans(shape: &Shape) -> Result<(usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "init",
            shapes: vec![shape.clone()],
            msg: "fan in and fan out need a tensor with at least 2 dims".into(),
        }));
    }
    let receptive: usize = d[2..].iter().product();
    Ok((d[1] * receptive, d[0] * receptive))
}

/// An initialization scheme; [`Init::tensor`] draws a new tensor,
/// [`Init::init`] overwrites a parameter (PyTorch's `nn.init.*_`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    /// U(low, high).
    Uniform {
        low: f64,
        high: f64,
    },
    /// N(mean, std^2).
    Normal {
        mean: f64,
        std: f64,
    },
    /// U(-b, b) with b = gain * sqrt(3 / fan); `a` is the leaky-ReLU slope
    /// used for the gain when `nonlinearity` is `LeakyRelu`-like (PyTorch's
    /// `kaiming_uniform_(w, a, mode, nonlinearity)`).
    KaimingUniform {
        a: f64,
        mode: FanMode,
        nonlinearity: Nonlinearity,
    },
    /// N(0, std^2) with std = gain / sqrt(fan).
    KaimingNormal {
        a: f64,
        mode: FanMode,
        nonlinearity: Nonlinearity,
    },
    /// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
    XavierUniform {
        gain: f64,
    },
    /// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
    XavierNormal {
        gain: f64,
    },
}

impl Init {
    /// Kaiming uniform for ReLU layers (`kaiming_uniform_(w, nonlinearity="relu")`).
    pub fn kaiming_uniform_relu() -> Init {
        Init::KaimingUniform { a: 0.0, mode: FanMode::FanIn, nonlinearity: Nonlinearity::Relu }
    }

    /// What `nn.Linear` and `nn.Conv2d` use for their weights:
    /// `kaiming_uniform_(w, a=sqrt(5))`, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    pub fn pytorch_default() -> Init {
        Init::KaimingUniform {
            a: 5f64.sqrt(),
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::LeakyRelu(5f64.sqrt()),
        }
    }

    /// A tensor of `shape` drawn from the global generator.
    pub fn tensor(&self, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        self.draw(None, shape.into(), dtype, device)
    }

    /// A tensor of `shape` drawn from `generator`.
    pub fn tensor_with(
        &self,
        generator: &mut Generator,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        self.draw(Some(generator), shape.into(), dtype, device)
    }

    /// Overwrites `param` with a fresh draw of its shape, dtype and device.
    pub fn init(&self, param: &Param) -> Result<()> {
        let t = param.get();
        let fresh = self.tensor(t.shape().clone(), t.dtype(), t.device())?;
        param.set(&fresh)
    }

    fn draw(&self, gen: Option<&mut Generator>, shape: Shape, dtype: DType, device: &Device) -> Result<Tensor> {
        // Draws in f64 for f64 tensors, in f32 otherwise (then cast).
        let draw_dtype = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
        let uniform = |gen: Option<&mut Generator>, low: f64, high: f64| -> Result<Tensor> {
            if !low.is_finite() || !high.is_finite() || low > high {
                return Err(Error::invalid_arg(
                    "init",
                    format!("uniform bounds must be finite with low <= high, got [{low}, {high})"),
                ));
            }
            let u = match gen {
                Some(g) => Tensor::rand_with(g, shape.clone(), draw_dtype, device)?,
                None => Tensor::rand(shape.clone(), draw_dtype, device)?,
            };
            u.mul_scalar(high - low)?.add_scalar(low)?.to_dtype(dtype)
        };
        let normal = |gen: Option<&mut Generator>, mean: f64, std: f64| -> Result<Tensor> {
            if !std.is_finite() || std < 0.0 || !mean.is_finite() {
                return Err(Error::invalid_arg(
                    "init",
                    format!("normal needs a finite mean and std >= 0, got N({mean}, {std}^2)"),
                ));
            }
            let n = match gen {
                Some(g) => Tensor::randn_with(g, shape.clone(), draw_dtype, device)?,
                None => Tensor::randn(shape.clone(), draw_dtype, device)?,
            };
            n.mul_scalar(std)?.add_scalar(mean)?.to_dtype(dtype)
        };
        let kaiming_std = |a: f64, mode: FanMode, nl: Nonlinearity| -> Result<f64> {
            let (fan_in, fan_out) = fans(&shape)?;
            let fan = match mode {
                FanMode::FanIn => fan_in,
                FanMode::FanOut => fan_out,
            };
            // PyTorch passes `a` as the slope for leaky ReLU gains.
            let nl = match nl {
                Nonlinearity::LeakyRelu(_) => Nonlinearity::LeakyRelu(a),
                other => other,
            };
            Ok(if fan == 0 { 0.0 } else { calculate_gain(nl) / (fan as f64).sqrt() })
        };
        let xavier_std = |gain: f64| -> Result<f64> {
            let (fan_in, fan_out) = fans(&shape)?;
            Ok(if fan_in + fan_out == 0 { 0.0 } else { gain * (2.0 / (fan_in + fan_out) as f64).sqrt() })
        };
        match *self {
            Init::Zeros => Tensor::zeros(shape, dtype, device),
            Init::Ones => Tensor::ones(shape, dtype, device),
            Init::Constant(v) => Tensor::full(shape, v, dtype, device),
            Init::Uniform { low, high } => uniform(gen, low, high),
            Init::Normal { mean, std } => normal(gen, mean, std),
            Init::KaimingUniform { a, mode, nonlinearity } => {
                let bound = 3f64.sqrt() * kaiming_std(a, mode, nonlinearity)?;
                uniform(gen, -bound, bound)
            }
            Init::KaimingNormal { a, mode, nonlinearity } => normal(gen, 0.0, kaiming_std(a, mode, nonlinearity)?),
            Init::XavierUniform { gain } => {
                let bound = 3f64.sqrt() * xavier_std(gain)?;
                uniform(gen, -bound, bound)
            }
            Init::XavierNormal { gain } => normal(gen, 0.0, xavier_std(gain)?),
        }
    }
}
