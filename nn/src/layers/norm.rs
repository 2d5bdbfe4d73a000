//! Normalization layers: batch norm (with running statistics), layer norm, group norm.

use crate::functional;
use crate::module::{Forward, Module, Visitor};
use crate::param::{Buffer, Param};
use oar_tensor::{DType, Device, Error, ErrorKind, Result, Tensor};

/// Batch normalization over the channels (dim 1) of its input; what
/// [`BatchNorm1d`] and [`BatchNorm2d`] share.
#[derive(Debug)]
struct BatchNorm {
    weight: Option<Param>,
    bias: Option<Param>,
    running_mean: Option<Buffer>,
    running_var: Option<Buffer>,
    num_batches_tracked: Option<Buffer>,
    /// `None`: a cumulative average (`momentum=None` in PyTorch).
    momentum: Option<f64>,
    eps: f64,
    training: bool,
}

impl BatchNorm {
    fn new(op: &'static str, num_features: usize, affine: bool, track_running_stats: bool) -> Result<Self> {
        if num_features == 0 {
            return Err(Error::invalid_arg(op, "num_features must be positive"));
        }
        let dev = Device::cpu();
        let vec = |v: f64| Tensor::full([num_features], v, DType::F32, &dev);
        let (weight, bias) =
            if affine { (Some(Param::new(vec(1.0)?)?), Some(Param::new(vec(0.0)?)?)) } else { (None, None) };
        let (rm, rv, nbt) = if track_running_stats {
            (
                Some(Buffer::new(vec(0.0)?)),
                Some(Buffer::new(vec(1.0)?)),
                Some(Buffer::new(Tensor::zeros((), DType::I64, &dev)?)),
            )
        } else {
            (None, None, None)
        };
        Ok(BatchNorm {
            weight,
            bias,
            running_mean: rm,
            running_var: rv,
            num_batches_tracked: nbt,
            momentum: Some(0.1),
            eps: 1e-5,
            training: true,
        })
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.child("weight", &self.weight);
        v.child("bias", &self.bias);
        v.child("running_mean", &self.running_mean);
        v.child("running_var", &self.running_var);
        v.child("num_batches_tracked", &self.num_batches_tracked);
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut momentum = self.momentum.unwrap_or(0.0);
        if self.training {
            if let Some(n) = &self.num_batches_tracked {
                let next = n.get().add_scalar(1.0)?;
                if self.momentum.is_none() {
                    momentum = 1.0 / next.item()?;
                }
                n.set(&next)?;
            }
        }
        let rm = self.running_mean.as_ref().map(Buffer::get);
        let rv = self.running_var.as_ref().map(Buffer::get);
        let (w, b) = (self.weight.as_ref().map(Param::get), self.bias.as_ref().map(Param::get));
        let (y, updated) = functional::batch_norm(
            x,
            rm.as_ref(),
            rv.as_ref(),
            w.as_ref(),
            b.as_ref(),
            self.training,
            momentum,
            self.eps,
        )?;
        if let (Some((m, v)), Some(rm), Some(rv)) = (updated, &self.running_mean, &self.running_var) {
            rm.set(&m)?;
            rv.set(&v)?;
        }
        Ok(y)
    }
}

macro_rules! batch_norm_layer {
    ($name:ident, $op:literal, $ranks:expr, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Weight ones, bias zeros, running mean zeros, running variance ones,
        /// `eps` 1e-5, `momentum` 0.1, as PyTorch. Train mode normalizes with the
        /// batch statistics and updates the running ones; eval mode uses the
        /// running ones.
        #[derive(Debug)]
        pub struct $name(BatchNorm);

        impl $name {
            pub fn new(num_features: usize) -> Result<Self> {
                Ok($name(BatchNorm::new($op, num_features, true, true)?))
            }

            /// `affine`: learn weight and bias; `track_running_stats`: keep
            /// running statistics (without them, eval mode also uses batch statistics).
            pub fn with_options(num_features: usize, affine: bool, track_running_stats: bool) -> Result<Self> {
                Ok($name(BatchNorm::new($op, num_features, affine, track_running_stats)?))
            }

            /// The running-average factor (`None`: a cumulative average).
            pub fn momentum(mut self, momentum: Option<f64>) -> Self {
                self.0.momentum = momentum;
                self
            }

            pub fn eps(mut self, eps: f64) -> Self {
                self.0.eps = eps;
                self
            }

            pub fn weight(&self) -> Option<&Param> {
                self.0.weight.as_ref()
            }
            pub fn bias(&self) -> Option<&Param> {
                self.0.bias.as_ref()
            }
            pub fn running_mean(&self) -> Option<&Buffer> {
                self.0.running_mean.as_ref()
            }
            pub fn running_var(&self) -> Option<&Buffer> {
                self.0.running_var.as_ref()
            }
            pub fn eps_value(&self) -> f64 {
                self.0.eps
            }
            pub fn is_training(&self) -> bool {
                self.0.training
            }
        }

        impl Module for $name {
            fn visit(&self, v: &mut Visitor<'_>) {
                self.0.visit(v)
            }
            fn set_training(&mut self, training: bool) {
                self.0.training = training;
            }
        }

        impl Forward for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                if !$ranks.contains(&x.rank()) {
                    return Err(Error::from(ErrorKind::ShapeMismatch {
                        op: $op,
                        shapes: vec![x.shape().clone()],
                        msg: format!("expected an input of rank {:?}", $ranks),
                    }));
                }
                self.0.forward(x)
            }
        }
    };
}

batch_norm_layer!(
    BatchNorm1d,
    "BatchNorm1d",
    [2usize, 3],
    "Batch normalization of `[N, C]` or `[N, C, L]` input (`nn.BatchNorm1d`)."
);
batch_norm_layer!(
    BatchNorm2d,
    "BatchNorm2d",
    [4usize],
    "Batch normalization of `[N, C, H, W]` input (`nn.BatchNorm2d`)."
);

/// Layer normalization over the trailing `normalized_shape` dims
/// (`nn.LayerNorm`): weight ones and bias zeros of that shape, `eps` 1e-5.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Option<Param>,
    pub bias: Option<Param>,
    pub normalized_shape: Vec<usize>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(normalized_shape: impl Into<Vec<usize>>) -> Result<Self> {
        LayerNorm::with_options(normalized_shape, true)
    }

    pub fn with_options(normalized_shape: impl Into<Vec<usize>>, elementwise_affine: bool) -> Result<Self> {
        let shape: Vec<usize> = normalized_shape.into();
        if shape.is_empty() || shape.contains(&0) {
            return Err(Error::invalid_arg(
                "LayerNorm",
                format!("normalized_shape must be non-empty and positive, got {shape:?}"),
            ));
        }
        let dev = Device::cpu();
        let (weight, bias) = if elementwise_affine {
            (
                Some(Param::new(Tensor::ones(shape.as_slice(), DType::F32, &dev)?)?),
                Some(Param::new(Tensor::zeros(shape.as_slice(), DType::F32, &dev)?)?),
            )
        } else {
            (None, None)
        };
        Ok(LayerNorm { weight, bias, normalized_shape: shape, eps: 1e-5 })
    }
}

impl Module for LayerNorm {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.child("weight", &self.weight);
        v.child("bias", &self.bias);
    }
}

impl Forward for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.weight.as_ref().map(Param::get), self.bias.as_ref().map(Param::get));
        functional::layer_norm(x, &self.normalized_shape, w.as_ref(), b.as_ref(), self.eps)
    }
}

/// Group normalization (`nn.GroupNorm(num_groups, num_channels)`): weight
/// ones and bias zeros per channel, `eps` 1e-5.
#[derive(Debug)]
pub struct GroupNorm {
    pub weight: Option<Param>,
    pub bias: Option<Param>,
    pub num_groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(num_groups: usize, num_channels: usize) -> Result<Self> {
        GroupNorm::with_options(num_groups, num_channels, true)
    }

    pub fn with_options(num_groups: usize, num_channels: usize, affine: bool) -> Result<Self> {
        if num_groups == 0 || num_channels == 0 || !num_channels.is_multiple_of(num_groups) {
            return Err(Error::invalid_arg(
                "GroupNorm",
                format!("num_channels ({num_channels}) must be a positive multiple of num_groups ({num_groups})"),
            ));
        }
        let dev = Device::cpu();
        let (weight, bias) = if affine {
            (
                Some(Param::new(Tensor::ones([num_channels], DType::F32, &dev)?)?),
                Some(Param::new(Tensor::zeros([num_channels], DType::F32, &dev)?)?),
            )
        } else {
            (None, None)
        };
        Ok(GroupNorm { weight, bias, num_groups, eps: 1e-5 })
    }
}

impl Module for GroupNorm {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.child("weight", &self.weight);
        v.child("bias", &self.bias);
    }
}

impl Forward for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.weight.as_ref().map(Param::get), self.bias.as_ref().map(Param::get));
        functional::group_norm(x, self.num_groups, w.as_ref(), b.as_ref(), self.eps)
    }
}
