use super::{check_hyper, Core, Group, IntoGroups, Optimizer, OptimizerState};
use oar_tensor::{Error, Result};

/// Settings of [`Adam`] and [`AdamW`] (PyTorch's arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
}

impl AdamConfig {
    /// `betas` (0.9, 0.999), `eps` 1e-8, no weight decay (Adam's defaults).
    pub fn new(lr: f64) -> Self {
        AdamConfig { lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false, maximize: false }
    }
    pub fn betas(mut self, b1: f64, b2: f64) -> Self {
        self.betas = (b1, b2);
        self
    }
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    pub fn amsgrad(mut self, on: bool) -> Self {
        self.amsgrad = on;
        self
    }
    pub fn maximize(mut self, on: bool) -> Self {
        self.maximize = on;
        self
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return Err(Error::invalid_arg(op, format!("betas must be in [0, 1), got ({b1}, {b2})")));
        }
        check_hyper(op, "eps", self.eps)
    }
}

/// The update Adam and AdamW share; `decoupled` is AdamW's weight decay.
fn adam_step(core: &mut Core, c: AdamConfig, decoupled: bool) -> Result<()> {
    let (b1, b2) = c.betas;
    core.for_each(|p, grad, g: &Group, st| {
        let mut grad = if c.maximize { grad.neg()? } else { grad.clone() };
        let mut p = p.clone();
        if g.weight_decay != 0.0 {
            if decoupled {
                p = p.mul_scalar(1.0 - g.lr * g.weight_decay)?;
            } else {
                grad = grad.add(&p.mul_scalar(g.weight_decay)?)?;
            }
        }
        st.step += 1;
        let t = st.step as f64;
        let m = match st.buffers.get("exp_avg") {
            // m.lerp(g, 1 - b1) = m + (1 - b1) (g - m), as PyTorch computes it.
            Some(m) => m.add(&grad.sub(m)?.mul_scalar(1.0 - b1)?)?,
            None => grad.mul_scalar(1.0 - b1)?,
        };
        let g2 = grad.square()?.mul_scalar(1.0 - b2)?;
        let v = match st.buffers.get("exp_avg_sq") {
            Some(v) => v.mul_scalar(b2)?.add(&g2)?,
            None => g2,
        };
        let bias1 = 1.0 - b1.powf(t);
        let bias2_sqrt = (1.0 - b2.powf(t)).sqrt();
        let second = if c.amsgrad {
            let vmax = match st.buffers.get("max_exp_avg_sq") {
                Some(prev) => prev.maximum(&v)?,
                None => v.clone(),
            };
            st.buffers.insert("max_exp_avg_sq", vmax.clone());
            vmax
        } else {
            v.clone()
        };
        let denom = second.sqrt()?.div_scalar(bias2_sqrt)?.add_scalar(c.eps)?;
        let next = p.sub(&m.div(&denom)?.mul_scalar(g.lr / bias1)?)?;
        st.buffers.insert("exp_avg", m);
        st.buffers.insert("exp_avg_sq", v);
        Ok(next)
    })
}

fn hyper(c: &AdamConfig) -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "betas": [c.betas.0, c.betas.1], "eps": c.eps, "amsgrad": c.amsgrad, "maximize": c.maximize,
    });
    v.as_object().expect("an object").clone()
}

const BUFFERS: [&str; 3] = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

/// Adam (Kingma & Ba) with PyTorch's update: L2 weight decay added to the
/// gradient, bias-corrected first and second moments, optional AMSGrad.
#[derive(Clone, Debug)]
pub struct Adam {
    core: Core,
    cfg: AdamConfig,
}

impl Adam {
    pub fn new(params: impl IntoGroups, cfg: AdamConfig) -> Result<Adam> {
        cfg.check("Adam")?;
        Ok(Adam { core: Core::new("Adam", params.into_groups(), cfg.lr, cfg.weight_decay)?, cfg })
    }
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay,
/// `p = p * (1 - lr * weight_decay)` before the Adam step. PyTorch's default
/// weight decay for it is 0.01: pass `AdamConfig::new(lr).weight_decay(0.01)`.
#[derive(Clone, Debug)]
pub struct AdamW {
    core: Core,
    cfg: AdamConfig,
}

impl AdamW {
    pub fn new(params: impl IntoGroups, cfg: AdamConfig) -> Result<AdamW> {
        cfg.check("AdamW")?;
        Ok(AdamW { core: Core::new("AdamW", params.into_groups(), cfg.lr, cfg.weight_decay)?, cfg })
    }
}

macro_rules! adam_impl {
    ($t:ty, $name:literal, $decoupled:expr) => {
        impl Optimizer for $t {
            fn step(&mut self) -> Result<()> {
                adam_step(&mut self.core, self.cfg, $decoupled)
            }
            fn groups(&self) -> &[Group] {
                &self.core.groups
            }
            fn groups_mut(&mut self) -> &mut [Group] {
                &mut self.core.groups
            }
            fn state_dict(&self) -> OptimizerState {
                self.core.state_dict(&hyper(&self.cfg))
            }
            fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
                self.core.load_state_dict($name, state, &BUFFERS)
            }
        }
    };
}

adam_impl!(Adam, "Adam", false);
adam_impl!(AdamW, "AdamW", true);
