use super::{check_hyper, Core, Group, IntoGroups, Optimizer, OptimizerState};
use oar_tensor::Result;

/// Settings of [`RmsProp`] (PyTorch's `torch.optim.RMSprop` arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
}

impl RmsPropConfig {
    /// `alpha` 0.99, `eps` 1e-8, no momentum (PyTorch's defaults; its default lr is 0.01).
    pub fn new(lr: f64) -> Self {
        RmsPropConfig { lr, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
    pub fn alpha(mut self, a: f64) -> Self {
        self.alpha = a;
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
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    pub fn centered(mut self, on: bool) -> Self {
        self.centered = on;
        self
    }
}

/// RMSprop with PyTorch's update: a running mean of squared gradients
/// (optionally centered by the running mean of gradients), optional momentum.
#[derive(Clone, Debug)]
pub struct RmsProp {
    core: Core,
    cfg: RmsPropConfig,
}

impl RmsProp {
    pub fn new(params: impl IntoGroups, cfg: RmsPropConfig) -> Result<RmsProp> {
        for (n, v) in [("alpha", cfg.alpha), ("eps", cfg.eps), ("momentum", cfg.momentum)] {
            check_hyper("RMSprop", n, v)?;
        }
        Ok(RmsProp { core: Core::new("RMSprop", params.into_groups(), cfg.lr, cfg.weight_decay)?, cfg })
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        self.core.for_each(|p, grad, g: &Group, st| {
            let mut grad = grad.clone();
            if g.weight_decay != 0.0 {
                grad = grad.add(&p.mul_scalar(g.weight_decay)?)?;
            }
            st.step += 1;
            let g2 = grad.square()?.mul_scalar(1.0 - c.alpha)?;
            let sq = match st.buffers.get("square_avg") {
                Some(s) => s.mul_scalar(c.alpha)?.add(&g2)?,
                None => g2,
            };
            let avg = if c.centered {
                let ga = match st.buffers.get("grad_avg") {
                    Some(a) => a.add(&grad.sub(a)?.mul_scalar(1.0 - c.alpha)?)?,
                    None => grad.mul_scalar(1.0 - c.alpha)?,
                };
                let avg = sq.sub(&ga.square()?)?.sqrt()?.add_scalar(c.eps)?;
                st.buffers.insert("grad_avg", ga);
                avg
            } else {
                sq.sqrt()?.add_scalar(c.eps)?
            };
            st.buffers.insert("square_avg", sq);
            if c.momentum > 0.0 {
                let step = grad.div(&avg)?;
                let buf = match st.buffers.get("momentum_buffer") {
                    Some(b) => b.mul_scalar(c.momentum)?.add(&step)?,
                    None => step,
                };
                st.buffers.insert("momentum_buffer", buf.clone());
                p.sub(&buf.mul_scalar(g.lr)?)
            } else {
                p.sub(&grad.div(&avg)?.mul_scalar(g.lr)?)
            }
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
        let hyper =
            serde_json::json!({ "alpha": c.alpha, "eps": c.eps, "momentum": c.momentum, "centered": c.centered });
        self.core.state_dict(hyper.as_object().expect("an object"))
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        self.core.load_state_dict("RMSprop", state, &["square_avg", "grad_avg", "momentum_buffer"])
    }
}
