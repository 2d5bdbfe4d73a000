use super::IntoPair;
use crate::module::{Forward, Module, Visitor};
use oar_tensor::{AvgPool2dParams, MaxPool2dParams, Result, Tensor};

/// 2-d max pooling (`nn.MaxPool2d(k)`: stride defaults to the kernel size).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d(pub MaxPool2dParams);

impl MaxPool2d {
    pub fn new(kernel_size: impl IntoPair) -> Self {
        let k = kernel_size.pair();
        MaxPool2d(MaxPool2dParams { kernel: k, stride: k, ..MaxPool2dParams::default() })
    }
    pub fn stride(mut self, s: impl IntoPair) -> Self {
        self.0.stride = s.pair();
        self
    }
    pub fn padding(mut self, p: impl IntoPair) -> Self {
        self.0.padding = p.pair();
        self
    }
    pub fn dilation(mut self, d: impl IntoPair) -> Self {
        self.0.dilation = d.pair();
        self
    }
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.0.ceil_mode = on;
        self
    }
}

/// 2-d average pooling (`nn.AvgPool2d(k)`).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d(pub AvgPool2dParams);

impl AvgPool2d {
    pub fn new(kernel_size: impl IntoPair) -> Self {
        let k = kernel_size.pair();
        AvgPool2d(AvgPool2dParams { kernel: k, stride: k, ..AvgPool2dParams::default() })
    }
    pub fn stride(mut self, s: impl IntoPair) -> Self {
        self.0.stride = s.pair();
        self
    }
    pub fn padding(mut self, p: impl IntoPair) -> Self {
        self.0.padding = p.pair();
        self
    }
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.0.ceil_mode = on;
        self
    }
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.0.count_include_pad = on;
        self
    }
}

/// Average pooling to a fixed output size (`nn.AdaptiveAvgPool2d`).
#[derive(Clone, Copy, Debug)]
pub struct AdaptiveAvgPool2d(pub [usize; 2]);

impl AdaptiveAvgPool2d {
    pub fn new(output_size: impl IntoPair) -> Self {
        AdaptiveAvgPool2d(output_size.pair())
    }
}

macro_rules! stateless {
    ($($t:ty),*) => {$(
        impl Module for $t {
            fn visit(&self, _: &mut Visitor<'_>) {}
        }
    )*};
}
pub(crate) use stateless;

stateless!(MaxPool2d, AvgPool2d, AdaptiveAvgPool2d);

impl Forward for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(&self.0)
    }
}

impl Forward for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(&self.0)
    }
}

impl Forward for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.0)
    }
}
