use super::IntoPair;
use crate::init::Init;
use crate::module::{Forward, Module, Visitor};
use crate::param::Param;
use oar_tensor::{Conv2dParams, DType, Device, Error, Result, Tensor};

/// Geometry and shape options of [`Conv2d`] (PyTorch's keyword arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, bias: true }
    }
}

impl Conv2dOptions {
    pub fn stride(mut self, s: impl IntoPair) -> Self {
        self.stride = s.pair();
        self
    }
    pub fn padding(mut self, p: impl IntoPair) -> Self {
        self.padding = p.pair();
        self
    }
    pub fn dilation(mut self, d: impl IntoPair) -> Self {
        self.dilation = d.pair();
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// 2-d convolution over NCHW input (`nn.Conv2d`): weight
/// `[out, in / groups, kh, kw]` and bias `[out]`, initialized as PyTorch
/// (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups * kh * kw).
///
/// ```
/// use oar_nn::{Conv2d, Conv2dOptions, Forward};
/// use oar_tensor::{DType, Device, Result, Tensor};
/// # fn main() -> Result<()> {
/// let conv = Conv2d::with_options(1, 6, 5, Conv2dOptions::default().padding(2))?;
/// let y = conv.forward(&Tensor::zeros([8, 1, 28, 28], DType::F32, &Device::cpu())?)?;
/// assert_eq!(y.dims(), &[8, 6, 28, 28]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Param,
    pub bias: Option<Param>,
    pub params: Conv2dParams,
}

impl Conv2d {
    /// Stride 1, no padding, one group, with bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl IntoPair) -> Result<Conv2d> {
        Conv2d::with_options(in_channels, out_channels, kernel_size, Conv2dOptions::default())
    }

    pub fn with_options(
        in_channels: usize,
        out_channels: usize,
        kernel_size: impl IntoPair,
        options: Conv2dOptions,
    ) -> Result<Conv2d> {
        let [kh, kw] = kernel_size.pair();
        let g = options.groups;
        let bad = |msg: String| Err(Error::invalid_arg("Conv2d", msg));
        if in_channels == 0 || out_channels == 0 || kh == 0 || kw == 0 {
            return bad(format!(
                "channels and kernel size must be positive, got {in_channels} -> {out_channels}, kernel {kh}x{kw}"
            ));
        }
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return bad(format!(
                "groups ({g}) must divide in_channels ({in_channels}) and out_channels ({out_channels})"
            ));
        }
        if options.stride.contains(&0) || options.dilation.contains(&0) {
            return bad(format!("stride {:?} and dilation {:?} must be positive", options.stride, options.dilation));
        }
        let dev = Device::cpu();
        let weight = Init::pytorch_default().tensor([out_channels, in_channels / g, kh, kw], DType::F32, &dev)?;
        let bound = 1.0 / ((in_channels / g * kh * kw) as f64).sqrt();
        let bias = if options.bias {
            Some(Param::new(Init::Uniform { low: -bound, high: bound }.tensor([out_channels], DType::F32, &dev)?)?)
        } else {
            None
        };
        let params =
            Conv2dParams { stride: options.stride, padding: options.padding, dilation: options.dilation, groups: g };
        Ok(Conv2d { weight: Param::new(weight)?, bias, params })
    }

    /// Changes the padding (the weights do not depend on it).
    pub fn padding(mut self, p: impl IntoPair) -> Self {
        self.params.padding = p.pair();
        self
    }

    /// Changes the stride (the weights do not depend on it).
    pub fn stride(mut self, s: impl IntoPair) -> Self {
        self.params.stride = s.pair();
        self
    }
}

impl Module for Conv2d {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.child("weight", &self.weight);
        v.child("bias", &self.bias);
    }
}

impl Forward for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::get);
        x.conv2d(&self.weight.get(), bias.as_ref(), &self.params)
    }
}
