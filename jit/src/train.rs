//! A whole training step as a static graph: forward, loss, backward (the
//! autograd rules are ordinary ops, so the trace records them) and an SGD or
//! Adam update. The graph's inputs are the batch, the parameters, the
//! optimizer state, the module's buffers (batch norm's running statistics)
//! and the per-step numbers (learning rate, Adam's bias corrections); its
//! outputs the loss and the updated parameters, state and buffers, which the
//! next step feeds back in.

use crate::exec::Plan;
use crate::graph::Graph;
use crate::passes::{optimize, OptLevel};
use crate::trace::trace;
use oar_autograd::BackwardOptions;
use oar_nn::optim::{
    adam_bias_correction, adam_update, sgd_update, AdamConfig, AdamScalars, Hyper, IntoGroups, ParamGroup, SgdConfig,
};
use oar_nn::{Buffer, Forward, Module, Param};
use oar_tensor::{DType, Error, Result, Shape, Tensor};
use std::sync::Arc;

/// The loss of a traced step: model output and targets to a scalar.
pub type LossFn<'a> = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// The update rule of a traced step ([`TrainStep::grouped`]); each
/// configuration's `lr` and `weight_decay` are the defaults of groups that
/// set none.
#[derive(Clone, Copy, Debug)]
pub enum StepRule {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    AdamW(AdamConfig),
}

/// The update a step applies. Every hyperparameter but the groups' learning
/// rates is fixed when the step is traced.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Sgd(SgdConfig),
    /// Adam, or AdamW when `decoupled`.
    Adam {
        cfg: AdamConfig,
        decoupled: bool,
    },
}

/// A parameter group's settings, resolved.
#[derive(Clone, Copy, Debug)]
struct GroupSpec {
    lr: f64,
    weight_decay: f64,
}

impl Rule {
    fn new(rule: StepRule) -> Rule {
        match rule {
            StepRule::Sgd(c) => Rule::Sgd(c),
            StepRule::Adam(cfg) => Rule::Adam { cfg, decoupled: false },
            StepRule::AdamW(cfg) => Rule::Adam { cfg, decoupled: true },
        }
    }

    /// Optimizer state tensors per parameter (momentum; or first and second
    /// moments, and the running maximum with AMSGrad).
    fn state_kinds(&self) -> usize {
        match self {
            Rule::Sgd(c) => usize::from(c.momentum != 0.0),
            Rule::Adam { cfg, .. } => 2 + usize::from(cfg.amsgrad),
        }
    }

    /// The default learning rate and weight decay of a group.
    fn defaults(&self) -> GroupSpec {
        match self {
            Rule::Sgd(c) => GroupSpec { lr: c.lr, weight_decay: c.weight_decay },
            Rule::Adam { cfg, .. } => GroupSpec { lr: cfg.lr, weight_decay: cfg.weight_decay },
        }
    }

    /// Whether group `g` has an AdamW decay factor among the scalars.
    fn decays(&self, g: &GroupSpec) -> bool {
        matches!(self, Rule::Adam { decoupled: true, .. }) && g.weight_decay != 0.0
    }

    /// Values of the graph's trailing scalar inputs at step `t` (1-based)
    /// with the groups' current learning rates, computed on the host
    /// so that one graph serves every step and every rate: SGD's rate per
    /// group; for Adam the bias correction `sqrt(1 - b2^t)`, then per group
    /// `lr / (1 - b1^t)`, then AdamW's decay factor `1 - lr * weight_decay`
    /// for each group that decays ([`Rule::scalar_slots`] says where).
    fn scalars(&self, t: usize, groups: &[GroupSpec]) -> Vec<f64> {
        match self {
            Rule::Sgd(_) => groups.iter().map(|g| g.lr).collect(),
            Rule::Adam { cfg, .. } => {
                let correction = |lr| adam_bias_correction(cfg.betas, lr, t as u64);
                // sqrt(1 - b2^t) does not depend on the rate.
                let mut v = vec![correction(0.0).0];
                v.extend(groups.iter().map(|g| correction(g.lr).1));
                v.extend(groups.iter().filter(|g| self.decays(g)).map(|g| 1.0 - g.lr * g.weight_decay));
                v
            }
        }
    }

    /// Where group `g`'s numbers sit among the scalars: (its rate or step
    /// size, the shared bias correction, its decay factor).
    fn scalar_slots(&self, groups: &[GroupSpec], g: usize) -> (usize, Option<usize>, Option<usize>) {
        match self {
            Rule::Sgd(_) => (g, None, None),
            Rule::Adam { .. } => {
                let decay = self
                    .decays(&groups[g])
                    .then(|| 1 + groups.len() + groups[..g].iter().filter(|h| self.decays(h)).count());
                (1 + g, Some(0), decay)
            }
        }
    }
}

/// A traced training step: SGD (momentum, dampening, Nesterov, weight decay
/// and maximize as [`oar_nn::optim::Sgd`]) or Adam/AdamW (weight decay,
/// AMSGrad and maximize as [`oar_nn::optim::Adam`]), computed with the same
/// ops in the same order, so it reproduces eager training.
///
/// An optimizer's first step creates its state (SGD sets the momentum buffer
/// to the gradient, Adam starts its moments from zero) rather than updating
/// it, so with state there are two graphs: the first step's (no state in)
/// and the steady one's. The learning rate and Adam's bias corrections enter
/// the graph as scalar inputs computed per step, so [`TrainStep::set_lr`]
/// (an LR schedule) needs no retrace.
///
/// Buffers the forward pass updates (batch norm's running statistics and
/// batch count in training mode) are graph inputs and outputs too. A
/// cumulative-average batch norm (`momentum(None)`) reads its batch count
/// on the host, which a trace refuses.
pub struct TrainStep {
    rule: Rule,
    names: Vec<String>,
    buffer_names: Vec<String>,
    first: Arc<Plan>,
    steady: Option<Arc<Plan>>,
    params: Vec<Tensor>,
    /// `state_kinds` groups of one tensor per parameter, kind by kind.
    state: Option<Vec<Tensor>>,
    buffers: Vec<Tensor>,
    /// The groups' settings, with their current learning rates.
    groups: Vec<GroupSpec>,
    steps: usize,
}

impl TrainStep {
    /// Traces the SGD step of `module` on the batch `(x, y)` (its shapes and
    /// dtypes are the ones every later batch must have), in the module's
    /// current train/eval mode, over all its parameters as one group. The
    /// module is left as it was; call [`TrainStep::write_back`] to store
    /// trained values.
    pub fn sgd<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        cfg: SgdConfig,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::build("TrainStep::sgd", module, loss, Rule::Sgd(cfg), None, x, y)
    }

    /// [`TrainStep::sgd`] with Adam's update ([`oar_nn::optim::Adam`]).
    pub fn adam<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        cfg: AdamConfig,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::build("TrainStep::adam", module, loss, Rule::Adam { cfg, decoupled: false }, None, x, y)
    }

    /// [`TrainStep::sgd`] with AdamW's update ([`oar_nn::optim::AdamW`]).
    pub fn adamw<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        cfg: AdamConfig,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::build("TrainStep::adamw", module, loss, Rule::Adam { cfg, decoupled: true }, None, x, y)
    }

    /// A traced step over parameter groups, as the eager optimizers take
    /// them ([`ParamGroup`]: PyTorch's `param_groups`): each group's learning
    /// rate (a graph input, see [`TrainStep::set_group_lr`]) and weight decay,
    /// defaulting to `rule`'s. The groups' parameters must be `module`'s, each
    /// in one group at most; parameters in no group are not updated, as an
    /// eager optimizer leaves parameters it was not given.
    ///
    /// ```
    /// use oar_jit::{StepRule, TrainStep};
    /// use oar_nn::loss::cross_entropy;
    /// use oar_nn::models::Mlp;
    /// use oar_nn::optim::{AdamConfig, ParamGroup};
    /// use oar_nn::Module;
    /// use oar_tensor::{DType, Device, Tensor};
    ///
    /// # fn main() -> oar_tensor::Result<()> {
    /// let model = Mlp::new()?;
    /// let x = Tensor::randn([8, 784], DType::F32, &Device::cpu())?;
    /// let y = Tensor::from_vec((0..8).map(|i| i % 10).collect::<Vec<i64>>(), [8], &Device::cpu())?;
    /// let loss = |out: &Tensor, y: &Tensor| cross_entropy(out, y, &Default::default());
    /// // AdamW that decays the weight matrices but not the biases.
    /// let (biases, weights): (Vec<_>, Vec<_>) =
    ///     model.named_parameters().into_iter().partition(|(name, _)| name.ends_with("bias"));
    /// let groups = vec![
    ///     ParamGroup::new(weights.into_iter().map(|(_, p)| p).collect()),
    ///     ParamGroup::new(biases.into_iter().map(|(_, p)| p).collect()).weight_decay(0.0),
    /// ];
    /// let cfg = AdamConfig::new(1e-3).weight_decay(0.01);
    /// let mut step = TrainStep::grouped(&model, &loss, StepRule::AdamW(cfg), groups, &x, &y)?;
    /// step.step(&x, &y)?;
    /// assert_eq!(step.group_lrs(), [1e-3, 1e-3]);
    /// # Ok(()) }
    /// ```
    pub fn grouped<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        rule: StepRule,
        groups: impl IntoGroups,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::build("TrainStep::grouped", module, loss, Rule::new(rule), Some(groups.into_groups()), x, y)
    }

    fn build<M: Module + Forward + ?Sized>(
        op: &'static str,
        module: &M,
        loss: &LossFn<'_>,
        rule: Rule,
        groups: Option<Vec<ParamGroup>>,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        let named = module.named_parameters();
        let names = named.iter().map(|(n, _)| n.clone()).collect();
        let params: Vec<Param> = named.into_iter().map(|(_, p)| p).collect();
        let (specs, member) = resolve_groups(op, &rule, groups, &params)?;
        let values: Vec<Tensor> = params.iter().map(Param::get).collect();
        let dtype = scalar_dtype(&values);
        if let Some(other) = values.iter().find(|v| v.dtype() != dtype) {
            return Err(Error::invalid_arg(
                op,
                format!("the parameters mix dtypes ({dtype} and {}); a traced step takes one", other.dtype()),
            ));
        }
        let (buffer_names, bufs): (Vec<String>, Vec<Buffer>) = module.named_buffers().into_iter().unzip();
        let scalars = scalar_inputs(&rule, 1, &specs, dtype)?;
        let parts = Parts {
            module,
            loss,
            rule,
            params: &params,
            groups: &specs,
            member: &member,
            buffers: &bufs,
            x,
            y,
            scalars: &scalars,
        };
        let first = compile(&parts, None)?;
        let steady = if rule.state_kinds() > 0 {
            let zeros = values.iter().map(Tensor::zeros_like).collect::<Result<Vec<_>>>()?;
            let state: Vec<Tensor> = (0..rule.state_kinds()).flat_map(|_| zeros.iter().cloned()).collect();
            Some(compile(&parts, Some(&state))?)
        } else {
            None
        };
        let buffers = bufs.iter().map(Buffer::get).collect();
        Ok(TrainStep {
            rule,
            names,
            buffer_names,
            first,
            steady,
            params: values,
            state: None,
            buffers,
            groups: specs,
            steps: 0,
        })
    }

    /// The learning rate the next step applies (the first group's).
    pub fn lr(&self) -> f64 {
        self.groups.first().map_or(0.0, |g| g.lr)
    }

    /// Sets the learning rate of the following steps, in every group (a
    /// graph input, so nothing is retraced): drive it from an LR schedule,
    /// as `oar_nn::lr_scheduler` does for eager optimizers.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr("TrainStep::set_lr", lr)?;
        self.groups.iter_mut().for_each(|g| g.lr = lr);
        Ok(())
    }

    /// The groups' learning rates, in [`TrainStep::grouped`]'s order (one
    /// group for the other constructors).
    pub fn group_lrs(&self) -> Vec<f64> {
        self.groups.iter().map(|g| g.lr).collect()
    }

    /// Sets group `group`'s learning rate for the following steps.
    pub fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        check_lr("TrainStep::set_group_lr", lr)?;
        let n = self.groups.len();
        let slot = self.groups.get_mut(group).ok_or_else(|| {
            Error::invalid_arg("TrainStep::set_group_lr", format!("group {group} of a step with {n} groups"))
        })?;
        slot.lr = lr;
        Ok(())
    }

    /// Runs one step on a batch; returns the loss (before the update).
    pub fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let n = self.params.len();
        let mut inputs = vec![x.clone(), y.clone()];
        inputs.extend(self.params.iter().cloned());
        let plan = match (&self.state, &self.steady) {
            (Some(b), Some(steady)) => {
                inputs.extend(b.iter().cloned());
                steady
            }
            _ => &self.first,
        };
        inputs.extend(self.buffers.iter().cloned());
        let dtype = scalar_dtype(&self.params);
        inputs.extend(scalar_inputs(&self.rule, self.steps + 1, &self.groups, dtype)?);
        let mut out = plan.run(&inputs)?.into_iter();
        let loss = out.next().expect("the loss is output 0");
        self.params = out.by_ref().take(n).collect();
        if self.rule.state_kinds() > 0 {
            self.state = Some(out.by_ref().take(self.rule.state_kinds() * n).collect());
        }
        self.buffers = out.collect();
        self.steps += 1;
        Ok(loss)
    }

    /// Copies the current parameter and buffer values into the module.
    pub fn write_back<M: Module + ?Sized>(&self, module: &M) -> Result<()> {
        let named = module.named_parameters();
        let buffers = module.named_buffers();
        let same = |a: &[String], b: Vec<&String>| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y);
        if !same(&self.names, named.iter().map(|(n, _)| n).collect())
            || !same(&self.buffer_names, buffers.iter().map(|(n, _)| n).collect())
        {
            return Err(Error::invalid_arg("TrainStep::write_back", "not the module this step was traced from"));
        }
        for ((_, p), v) in named.iter().zip(&self.params) {
            p.set(v)?;
        }
        for ((_, b), v) in buffers.iter().zip(&self.buffers) {
            b.set(v)?;
        }
        Ok(())
    }

    /// The current parameter values, in `named_parameters` order.
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// The current buffer values, in `named_buffers` order.
    pub fn buffers(&self) -> &[Tensor] {
        &self.buffers
    }

    /// The steady-state step graph (the first step's when without state).
    pub fn graph(&self) -> &Graph {
        self.steady.as_ref().unwrap_or(&self.first).graph()
    }

    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// Dtype of the scalar inputs: the parameters' (checked to be one).
fn scalar_dtype(params: &[Tensor]) -> DType {
    params.first().map_or(DType::F32, Tensor::dtype)
}

/// The rule's scalar graph inputs for step `t` at the groups' rates,
/// as 0-d tensors of `dtype`.
fn scalar_inputs(rule: &Rule, t: usize, groups: &[GroupSpec], dtype: DType) -> Result<Vec<Tensor>> {
    let cpu = oar_tensor::Device::cpu();
    rule.scalars(t, groups).into_iter().map(|v| Tensor::full(Shape::scalar(), v, dtype, &cpu)).collect()
}

fn check_lr(op: &'static str, lr: f64) -> Result<()> {
    if !lr.is_finite() || lr < 0.0 {
        return Err(Error::invalid_arg(op, format!("the learning rate must be >= 0, got {lr}")));
    }
    Ok(())
}

/// The groups' settings (`rule`'s defaults filled in; all parameters as one
/// group without `groups`) and each parameter's group, if any.
fn resolve_groups(
    op: &'static str,
    rule: &Rule,
    groups: Option<Vec<ParamGroup>>,
    params: &[Param],
) -> Result<(Vec<GroupSpec>, Vec<Option<usize>>)> {
    let defaults = rule.defaults();
    let Some(groups) = groups else {
        return Ok((vec![defaults], vec![Some(0); params.len()]));
    };
    if groups.is_empty() {
        return Err(Error::invalid_arg(op, "expected at least one parameter group"));
    }
    let mut member = vec![None; params.len()];
    let mut specs = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter().enumerate() {
        let spec = GroupSpec {
            lr: group.lr.unwrap_or(defaults.lr),
            weight_decay: group.weight_decay.unwrap_or(defaults.weight_decay),
        };
        check_lr(op, spec.lr)?;
        if !spec.weight_decay.is_finite() || spec.weight_decay < 0.0 {
            return Err(Error::invalid_arg(op, format!("group {g}: weight decay {} must be >= 0", spec.weight_decay)));
        }
        specs.push(spec);
        for (k, p) in group.params.iter().enumerate() {
            let Some(i) = params.iter().position(|q| q.ptr_eq(p)) else {
                return Err(Error::invalid_arg(op, format!("parameter {k} of group {g} is not one of the module's")));
            };
            if let Some(other) = member[i].replace(g) {
                return Err(Error::invalid_arg(
                    op,
                    format!("a parameter appears in groups {other} and {g}; each belongs to one group"),
                ));
            }
        }
    }
    Ok((specs, member))
}

/// What a traced step is made of.
struct Parts<'a, M: ?Sized> {
    module: &'a M,
    loss: &'a LossFn<'a>,
    rule: Rule,
    params: &'a [Param],
    groups: &'a [GroupSpec],
    /// Each parameter's group; `None`: not updated.
    member: &'a [Option<usize>],
    buffers: &'a [Buffer],
    x: &'a Tensor,
    y: &'a Tensor,
    scalars: &'a [Tensor],
}

/// Traces one step; `state` is the optimizer state (steady step) or `None`.
/// Graph inputs: `x`, `y`, parameters, state, buffers, scalars; outputs: the
/// loss, parameters, state, buffers.
fn compile<M: Module + Forward + ?Sized>(parts: &Parts<'_, M>, state: Option<&[Tensor]>) -> Result<Arc<Plan>> {
    let Parts { module, loss, rule, params, groups, member, buffers, x, y, scalars } = *parts;
    let originals: Vec<Tensor> = params.iter().map(Param::get).collect();
    let buffer_values: Vec<Tensor> = buffers.iter().map(Buffer::get).collect();
    let mut inputs = vec![x.clone(), y.clone()];
    inputs.extend(originals.iter().map(|p| p.with_requires_grad(true)).collect::<Result<Vec<_>>>()?);
    if let Some(b) = state {
        inputs.extend(b.iter().cloned());
    }
    inputs.extend(buffer_values.iter().cloned());
    inputs.extend(scalars.iter().cloned());
    let (n, kinds) = (params.len(), rule.state_kinds());
    let buffers_at = 2 + n + state.map_or(0, <[Tensor]>::len);
    let result = trace(&inputs, &[], |ins| {
        // The module reads the trace's parameter and buffer leaves (same
        // storage as the values the module holds).
        for (p, v) in params.iter().zip(&ins[2..2 + n]) {
            p.replace(v)?;
        }
        for (b, v) in buffers.iter().zip(&ins[buffers_at..]) {
            b.replace(v);
        }
        let leaves: Vec<Tensor> = params.iter().map(Param::get).collect();
        let l = {
            let _grad = oar_tensor::set_grad_enabled(true);
            loss(&module.forward(&ins[0])?, &ins[1])?
        };
        // What the forward pass left in the buffers: a traced value (a
        // detached handle keeps its provenance during a trace), or the input.
        let new_buffers: Vec<Tensor> = buffers.iter().map(Buffer::get).collect();
        let refs: Vec<&Tensor> = leaves.iter().collect();
        let grads =
            oar_autograd::grad(&[&l], &refs, None, BackwardOptions { retain_graph: true, create_graph: false })?;
        let state_in = state.map(|_| &ins[2 + n..2 + n + kinds * n]);
        let scalars_in = &ins[ins.len() - scalars.len()..];
        let mut new_params = Vec::with_capacity(n);
        let mut new_state: Vec<Vec<Tensor>> = vec![Vec::with_capacity(n); kinds];
        for (i, (p, g)) in leaves.iter().zip(grads).enumerate() {
            let old: Option<Vec<&Tensor>> = state_in.map(|s| (0..kinds).map(|k| &s[k * n + i]).collect());
            let (Some(grad), Some(group)) = (g, member[i]) else {
                // No gradient, or in no group: the parameter and its state
                // stay as they are.
                new_params.push(p.detach());
                for (k, st) in new_state.iter_mut().enumerate() {
                    st.push(match &old {
                        Some(o) => o[k].clone(),
                        None => p.zeros_like()?,
                    });
                }
                continue;
            };
            let p = p.detach();
            let wd = groups[group].weight_decay;
            let (rate, bias2, decay) = rule.scalar_slots(groups, group);
            let (p_new, st): (Tensor, Vec<Tensor>) = match rule {
                Rule::Sgd(c) => {
                    let lr = Hyper::Tensor(&scalars_in[rate]);
                    let (p_new, buf) = sgd_update(&c, lr, wd, &p, &grad, old.as_ref().map(|o| o[0]))?;
                    (p_new, buf.into_iter().collect())
                }
                Rule::Adam { cfg, decoupled } => {
                    let prev = [0, 1, 2].map(|k| old.as_ref().and_then(|o| o.get(k).copied()));
                    let scalars = AdamScalars {
                        bias2_sqrt: Hyper::Tensor(&scalars_in[bias2.unwrap_or(0)]),
                        step_size: Hyper::Tensor(&scalars_in[rate]),
                        // Present only when AdamW decays, the one case it is read.
                        decay: decay.map_or(Hyper::Host(1.0), |d| Hyper::Tensor(&scalars_in[d])),
                    };
                    let (next, new) = adam_update(&cfg, wd, decoupled, &p, &grad, prev, scalars)?;
                    (next, [new.m, new.v].into_iter().chain(new.vmax).collect())
                }
            };
            new_params.push(p_new);
            for (k, t) in st.into_iter().enumerate() {
                new_state[k].push(t);
            }
        }
        let mut outs = vec![l];
        outs.extend(new_params);
        outs.extend(new_state.into_iter().flatten());
        outs.extend(new_buffers);
        Ok(outs)
    });
    for (p, v) in params.iter().zip(&originals) {
        p.replace(v)?;
    }
    for (b, v) in buffers.iter().zip(&buffer_values) {
        b.replace(v);
    }
    let mut graph = result?;
    optimize(&mut graph, OptLevel::O1)?;
    Plan::new(graph)
}
