use super::{check_hyper, Core, Group, Hyper, IntoGroups, Optimizer, OptimizerState};
use oar_tensor::{Error, Result, Tensor};

/// Settings of [`Sgd`] (PyTorch's `torch.optim.SGD` arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

impl SgdConfig {
    /// Plain SGD at learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        SgdConfig { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, maximize: false }
    }
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    pub fn dampening(mut self, d: f64) -> Self {
        self.dampening = d;
        self
    }
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
    pub fn maximize(mut self, on: bool) -> Self {
        self.maximize = on;
        self
    }
}

/// Stochastic gradient descent with optional momentum (PyTorch's rule):
///
/// ```text
/// g = grad + weight_decay * p
/// buf = g                                   (first step)
/// buf = momentum * buf + (1 - dampening) * g (later steps)
/// g = g + momentum * buf  (nesterov)  or  g = buf
/// p = p - lr * g
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    core: Core,
    cfg: SgdConfig,
}

impl Sgd {
    pub fn new(params: impl IntoGroups, cfg: SgdConfig) -> Result<Sgd> {
        check_hyper("SGD", "momentum", cfg.momentum)?;
        check_hyper("SGD", "dampening", cfg.dampening)?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(Error::invalid_arg("SGD", "nesterov momentum requires a momentum > 0 and zero dampening"));
        }
        Ok(Sgd { core: Core::new("SGD", params.into_groups(), cfg.lr, cfg.weight_decay)?, cfg })
    }

    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        self.core.for_each(|p, grad, g: &Group, st| {
            let buf = st.buffers.get("momentum_buffer");
            let (next, buf) = sgd_update(&c, Hyper::Host(g.lr), g.weight_decay, p, grad, buf)?;
            if let Some(buf) = buf {
                st.buffers.insert("momentum_buffer", buf);
            }
            st.step += 1;
            Ok(next)
        })
    }

    fn groups(&self) -> &[Group] {
        &self.core.groups
    }

    fn groups_mut(&mut self) -> &mut [Group] {
        &mut self.core.groups
    }

    fn state_dict(&self) -> OptimizerState {
        let c = self.cfg;
        let hyper = serde_json::json!({
            "momentum": c.momentum, "dampening": c.dampening, "nesterov": c.nesterov, "maximize": c.maximize,
        });
        self.core.state_dict(hyper.as_object().expect("an object"))
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        self.core.load_state_dict("SGD", state, &["momentum_buffer"])
    }
}

/// One parameter's SGD update, op for op as PyTorch computes it: `buf` is
/// the momentum buffer (none on the first step). Returns the new value and
/// the new buffer (with momentum). [`Sgd`] and the traced training step of
/// `oar-jit` both call this, which is why traced training reproduces eager
/// training.
pub fn sgd_update(
    c: &SgdConfig,
    lr: Hyper<'_>,
    weight_decay: f64,
    p: &Tensor,
    grad: &Tensor,
    buf: Option<&Tensor>,
) -> Result<(Tensor, Option<Tensor>)> {
    let mut d = if c.maximize { grad.neg()? } else { grad.clone() };
    if weight_decay != 0.0 {
        d = d.add(&p.mul_scalar(weight_decay)?)?;
    }
    let mut new_buf = None;
    if c.momentum != 0.0 {
        let b = match buf {
            None => d.clone(),
            Some(b) => b.mul_scalar(c.momentum)?.add(&d.mul_scalar(1.0 - c.dampening)?)?,
        };
        d = if c.nesterov { d.add(&b.mul_scalar(c.momentum)?)? } else { b.clone() };
        new_buf = Some(b);
    }
    p.sub(&lr.scale(&d)?).map(|next| (next, new_buf))
}
