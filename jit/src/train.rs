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
use oar_nn::optim::{adam_bias_correction, adam_update, sgd_update, AdamConfig, AdamScalars, Hyper, SgdConfig};
use oar_nn::{Buffer, Forward, Module, Param};
use oar_tensor::{DType, Error, Result, Shape, Tensor};
use std::sync::Arc;

/// The loss of a traced step: model output and targets to a scalar.
pub type LossFn<'a> = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// The update a step applies: one parameter group; every hyperparameter but
/// the learning rate is fixed.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Sgd(SgdConfig),
    /// Adam, or AdamW when `decoupled`.
    Adam {
        cfg: AdamConfig,
        decoupled: bool,
    },
}

impl Rule {
    /// Optimizer state tensors per parameter (momentum; or first and second
    /// moments, and the running maximum with AMSGrad).
    fn state_kinds(&self) -> usize {
        match self {
            Rule::Sgd(c) => usize::from(c.momentum != 0.0),
            Rule::Adam { cfg, .. } => 2 + usize::from(cfg.amsgrad),
        }
    }

    /// The learning rate the rule was built with.
    fn lr(&self) -> f64 {
        match self {
            Rule::Sgd(c) => c.lr,
            Rule::Adam { cfg, .. } => cfg.lr,
        }
    }

    /// Values of the graph's trailing scalar inputs at step `t` (1-based)
    /// and learning rate `lr`, computed on the host so that one graph serves
    /// every step and every rate: SGD's `lr`; Adam's bias corrections
    /// `sqrt(1 - b2^t)` and `lr / (1 - b1^t)`, and AdamW's decay factor
    /// `1 - lr * weight_decay` when it decays.
    fn scalars(&self, t: usize, lr: f64) -> Vec<f64> {
        match self {
            Rule::Sgd(_) => vec![lr],
            Rule::Adam { cfg, decoupled } => {
                let (bias2_sqrt, step_size) = adam_bias_correction(cfg.betas, lr, t as u64);
                let mut v = vec![bias2_sqrt, step_size];
                if *decoupled && cfg.weight_decay != 0.0 {
                    v.push(1.0 - lr * cfg.weight_decay);
                }
                v
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
    lr: f64,
    steps: usize,
}

impl TrainStep {
    /// Traces the SGD step of `module` on the batch `(x, y)` (its shapes and
    /// dtypes are the ones every later batch must have), in the module's
    /// current train/eval mode. The module is left as it was; call
    /// [`TrainStep::write_back`] to store trained values.
    pub fn sgd<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        cfg: SgdConfig,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::new("TrainStep::sgd", module, loss, Rule::Sgd(cfg), x, y)
    }

    /// [`TrainStep::sgd`] with Adam's update ([`oar_nn::optim::Adam`]).
    pub fn adam<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        cfg: AdamConfig,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::new("TrainStep::adam", module, loss, Rule::Adam { cfg, decoupled: false }, x, y)
    }

    /// [`TrainStep::sgd`] with AdamW's update ([`oar_nn::optim::AdamW`]).
    pub fn adamw<M: Module + Forward + ?Sized>(
        module: &M,
        loss: &LossFn<'_>,
        cfg: AdamConfig,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        TrainStep::new("TrainStep::adamw", module, loss, Rule::Adam { cfg, decoupled: true }, x, y)
    }

    fn new<M: Module + Forward + ?Sized>(
        op: &'static str,
        module: &M,
        loss: &LossFn<'_>,
        rule: Rule,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<TrainStep> {
        let named = module.named_parameters();
        let names = named.iter().map(|(n, _)| n.clone()).collect();
        let params: Vec<Param> = named.into_iter().map(|(_, p)| p).collect();
        let values: Vec<Tensor> = params.iter().map(Param::get).collect();
        let dtype = scalar_dtype(&values);
        if let Some(other) = values.iter().find(|v| v.dtype() != dtype) {
            return Err(Error::invalid_arg(
                op,
                format!("the parameters mix dtypes ({dtype} and {}); a traced step takes one", other.dtype()),
            ));
        }
        let (buffer_names, bufs): (Vec<String>, Vec<Buffer>) = module.named_buffers().into_iter().unzip();
        let lr = rule.lr();
        let scalars = scalar_inputs(&rule, 1, lr, dtype)?;
        let parts = Parts { module, loss, rule, params: &params, buffers: &bufs, x, y, scalars: &scalars };
        let first = compile(&parts, None)?;
        let steady = if rule.state_kinds() > 0 {
            let zeros = values.iter().map(Tensor::zeros_like).collect::<Result<Vec<_>>>()?;
            let state: Vec<Tensor> = (0..rule.state_kinds()).flat_map(|_| zeros.iter().cloned()).collect();
            Some(compile(&parts, Some(&state))?)
        } else {
            None
        };
        let buffers = bufs.iter().map(Buffer::get).collect();
        Ok(TrainStep { rule, names, buffer_names, first, steady, params: values, state: None, buffers, lr, steps: 0 })
    }

    /// The learning rate the next step applies.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate of the following steps (a graph input, so
    /// nothing is retraced): drive it from an LR schedule, as
    /// `oar_nn::lr_scheduler` does for eager optimizers.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(Error::invalid_arg("TrainStep::set_lr", format!("the learning rate must be >= 0, got {lr}")));
        }
        self.lr = lr;
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
        inputs.extend(scalar_inputs(&self.rule, self.steps + 1, self.lr, scalar_dtype(&self.params))?);
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

/// The rule's scalar graph inputs for step `t` at `lr`, as 0-d tensors of `dtype`.
fn scalar_inputs(rule: &Rule, t: usize, lr: f64, dtype: DType) -> Result<Vec<Tensor>> {
    let cpu = oar_tensor::Device::cpu();
    rule.scalars(t, lr).into_iter().map(|v| Tensor::full(Shape::scalar(), v, dtype, &cpu)).collect()
}

/// What a traced step is made of.
struct Parts<'a, M: ?Sized> {
    module: &'a M,
    loss: &'a LossFn<'a>,
    rule: Rule,
    params: &'a [Param],
    buffers: &'a [Buffer],
    x: &'a Tensor,
    y: &'a Tensor,
    scalars: &'a [Tensor],
}

/// Traces one step; `state` is the optimizer state (steady step) or `None`.
/// Graph inputs: `x`, `y`, parameters, state, buffers, scalars; outputs: the
/// loss, parameters, state, buffers.
fn compile<M: Module + Forward + ?Sized>(parts: &Parts<'_, M>, state: Option<&[Tensor]>) -> Result<Arc<Plan>> {
    let Parts { module, loss, rule, params, buffers, x, y, scalars } = *parts;
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
            let Some(grad) = g else {
                // No gradient: the parameter and its state stay as they are.
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
            let (p_new, st): (Tensor, Vec<Tensor>) = match rule {
                Rule::Sgd(c) => {
                    let lr = Hyper::Tensor(&scalars_in[0]);
                    let (p_new, buf) = sgd_update(&c, lr, c.weight_decay, &p, &grad, old.as_ref().map(|o| o[0]))?;
                    (p_new, buf.into_iter().collect())
                }
                Rule::Adam { cfg, decoupled } => {
                    let prev = [0, 1, 2].map(|k| old.as_ref().and_then(|o| o.get(k).copied()));
                    let scalars = AdamScalars {
                        bias2_sqrt: Hyper::Tensor(&scalars_in[0]),
                        step_size: Hyper::Tensor(&scalars_in[1]),
                        // Present only when AdamW decays, the one case it is read.
                        decay: scalars_in.get(2).map_or(Hyper::Host(1.0), Hyper::Tensor),
                    };
                    let (next, new) = adam_update(&cfg, cfg.weight_decay, decoupled, &p, &grad, prev, scalars)?;
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
