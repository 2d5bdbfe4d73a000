use crate::functional;
use crate::init::Init;
use crate::module::{Forward, Module, Visitor};
use crate::param::Param;
use oar_tensor::{DType, Device, Error, ErrorKind, Result, Tensor};

/// `y = x W^T + b` (`nn.Linear`): weight `[out, in]`, bias `[out]`, both
/// initialized U(-1/sqrt(in), 1/sqrt(in)) as PyTorch does.
#[derive(Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    /// A layer with bias, f32 on the CPU (move it with [`Module::to_device`]).
    pub fn new(in_features: usize, out_features: usize) -> Result<Linear> {
        Linear::build(in_features, out_features, true)
    }

    /// A layer without bias (`bias=False`).
    pub fn no_bias(in_features: usize, out_features: usize) -> Result<Linear> {
        Linear::build(in_features, out_features, false)
    }

    fn build(in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::invalid_arg(
                "Linear",
                format!("in_features and out_features must be positive, got {in_features} and {out_features}"),
            ));
        }
        let dev = Device::cpu();
        let weight = Init::pytorch_default().tensor([out_features, in_features], DType::F32, &dev)?;
        let bound = 1.0 / (in_features as f64).sqrt();
        let bias = if bias {
            Some(Param::new(Init::Uniform { low: -bound, high: bound }.tensor([out_features], DType::F32, &dev)?)?)
        } else {
            None
        };
        Ok(Linear { weight: Param::new(weight)?, bias })
    }

    /// A layer with the given weight `[out, in]` and bias `[out]`.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        if weight.rank() != 2 || bias.as_ref().is_some_and(|b| b.dims() != [weight.dims()[0]]) {
            let mut shapes = vec![weight.shape().clone()];
            shapes.extend(bias.iter().map(|b| b.shape().clone()));
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "Linear",
                shapes,
                msg: "expected weight [out, in] and bias [out]".into(),
            }));
        }
        Ok(Linear { weight: Param::new(weight)?, bias: bias.map(Param::new).transpose()? })
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.child("weight", &self.weight);
        v.child("bias", &self.bias);
    }
}

impl Forward for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        functional::linear(x, &self.weight.get(), self.bias.as_ref().map(Param::get).as_ref())
    }
}
