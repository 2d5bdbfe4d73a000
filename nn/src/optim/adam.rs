use super::{check_hyper, Core, Group, Hyper, IntoGroups, Optimizer, OptimizerState};
use oar_tensor::{Error, Result, Tensor};

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

/// Adam's bias corrections at step `t` (1-based) for learning rate `lr`:
/// `(sqrt(1 - b2^t), lr / (1 - b1^t))`, the divisor of the second moment's
/// root and the step size.
pub fn adam_bias_correction(betas: (f64, f64), lr: f64, t: u64) -> (f64, f64) {
    let t = t as f64;
    ((1.0 - betas.1.powf(t)).sqrt(), lr / (1.0 - betas.0.powf(t)))
}

/// The per-step numbers [`adam_update`] applies: the bias corrections
/// (`sqrt(1 - b2^t)` and `lr / (1 - b1^t)`) and AdamW's decay factor
/// `1 - lr * weight_decay`. Eager steps pass host numbers; a traced step
/// passes 0-d tensors, its inputs, so one graph serves every step and every
/// learning rate a schedule sets.
#[derive(Clone, Copy, Debug)]
pub struct AdamScalars<'a> {
    pub bias2_sqrt: Hyper<'a>,
    pub step_size: Hyper<'a>,
    /// Read only by a decoupled (AdamW) update with weight decay.
    pub decay: Hyper<'a>,
}

impl AdamScalars<'static> {
    /// The host numbers for step `t` (1-based) at learning rate `lr`.
    pub fn host(betas: (f64, f64), lr: f64, weight_decay: f64, t: u64) -> Self {
        let (bias2_sqrt, step_size) = adam_bias_correction(betas, lr, t);
        AdamScalars {
            bias2_sqrt: Hyper::Host(bias2_sqrt),
            step_size: Hyper::Host(step_size),
            decay: Hyper::Host(1.0 - lr * weight_decay),
        }
    }
}

/// One parameter's Adam state after an update.
#[derive(Clone, Debug)]
pub struct AdamMoments {
    /// `exp_avg`.
    pub m: Tensor,
    /// `exp_avg_sq`.
    pub v: Tensor,
    /// `max_exp_avg_sq` (AMSGrad only).
    pub vmax: Option<Tensor>,
}

/// The update Adam and AdamW share, for one parameter, op for op as
/// PyTorch computes it: `decoupled` is AdamW's weight decay; `old` holds
/// `exp_avg`, `exp_avg_sq` and `max_exp_avg_sq` where they exist (none on
/// the first step). Returns the new value and moments. The traced training
/// step of `oar-jit` calls this too, which is why it reproduces eager Adam.
#[allow(clippy::too_many_arguments)] // the update's inputs, all needed
pub fn adam_update(
    c: &AdamConfig,
    weight_decay: f64,
    decoupled: bool,
    p: &Tensor,
    grad: &Tensor,
    old: [Option<&Tensor>; 3],
    scalars: AdamScalars<'_>,
) -> Result<(Tensor, AdamMoments)> {
    let (b1, b2) = c.betas;
    let mut grad = if c.maximize { grad.neg()? } else { grad.clone() };
    let mut p = p.clone();
    if weight_decay != 0.0 {
        if decoupled {
            p = scalars.decay.scale(&p)?;
        } else {
            grad = grad.add(&p.mul_scalar(weight_decay)?)?;
        }
    }
    let [m_old, v_old, vmax_old] = old;
    let m = match m_old {
        // m.lerp(g, 1 - b1) = m + (1 - b1) (g - m), as PyTorch computes it.
        Some(m) => m.add(&grad.sub(m)?.mul_scalar(1.0 - b1)?)?,
        None => grad.mul_scalar(1.0 - b1)?,
    };
    let g2 = grad.square()?.mul_scalar(1.0 - b2)?;
    let v = match v_old {
        Some(v) => v.mul_scalar(b2)?.add(&g2)?,
        None => g2,
    };
    let vmax = if c.amsgrad {
        Some(match vmax_old {
            Some(prev) => prev.maximum(&v)?,
            None => v.clone(),
        })
    } else {
        None
    };
    let root = vmax.as_ref().unwrap_or(&v).sqrt()?;
    let denom = scalars.bias2_sqrt.divide(&root)?.add_scalar(c.eps)?;
    let step = scalars.step_size.scale(&m.div(&denom)?)?;
    Ok((p.sub(&step)?, AdamMoments { m, v, vmax }))
}

/// The eager step of Adam and AdamW over every parameter.
fn adam_step(core: &mut Core, c: AdamConfig, decoupled: bool) -> Result<()> {
    core.for_each(|p, grad, g: &Group, st| {
        st.step += 1;
        let old = BUFFERS.map(|name| st.buffers.get(name));
        let scalars = AdamScalars::host(c.betas, g.lr, g.weight_decay, st.step);
        let (next, new) = adam_update(&c, g.weight_decay, decoupled, p, grad, old, scalars)?;
        st.buffers.insert("exp_avg", new.m);
        st.buffers.insert("exp_avg_sq", new.v);
        if let Some(vmax) = new.vmax {
            st.buffers.insert("max_exp_avg_sq", vmax);
        }
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
