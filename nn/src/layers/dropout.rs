use crate::functional;
use crate::module::{Forward, Module, Visitor};
use oar_tensor::{Error, Result, Tensor};

/// Inverted dropout (`nn.Dropout(p)`): in train mode each element is zeroed
/// with probability `p` (from the global generator, so `manual_seed` makes it
/// reproducible) and the rest scaled by `1 / (1 - p)`; in eval mode the
/// identity. Modules start in train mode, as in PyTorch.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    p: f64,
    training: bool,
}

impl Dropout {
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid_arg("Dropout", format!("probability must be in [0, 1], got {p}")));
        }
        Ok(Dropout { p, training: true })
    }

    pub fn p(&self) -> f64 {
        self.p
    }

    pub fn is_training(&self) -> bool {
        self.training
    }
}

impl Module for Dropout {
    fn visit(&self, _: &mut Visitor<'_>) {}
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl Forward for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        functional::dropout(x, self.p, self.training)
    }
}
