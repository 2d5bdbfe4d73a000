//! A whole training step as a static graph: forward, loss, backward (the
//! autograd rules are ordinary ops, so the trace records them) and an SGD or
//! Adam update. The graph's inputs are the batch, the parameters and the
//! optimizer state; its outputs the loss and their updated values, which the
//! next step feeds back in.

use crate::exec::Plan;
use crate::graph::Graph;
use crate::passes::{optimize, OptLevel};
use crate::trace::trace;
use oar_autograd::BackwardOptions;
use oar_nn::optim::{adam_bias_correction, adam_update, AdamConfig, BiasCorrection, SgdConfig};
use oar_nn::{Forward, Module, Param};
use oar_tensor::{DType, Error, Result, Shape, Tensor};
use std::sync::Arc;

/// The loss of a traced step: model output and targets to a scalar.
pub type LossFn<'a> = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// The update a step applies: one parameter group, fixed hyperparameters.
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

    /// Values of the graph's trailing scalar inputs at step `t` (1-based):
    /// what Adam's bias correction computes on the host, so that one graph
    /// serves every step.
    fn scalars(&self, t: usize) -> Vec<f64> {
        match self {
            Rule::Sgd(_) => Vec::new(),
            Rule::Adam { cfg, .. } => {
                let (bias2_sqrt, step_size) = adam_bias_correction(cfg.betas, cfg.lr, t as u64);
                vec![bias2_sqrt, step_size]
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
/// and the steady one's. Adam's bias corrections depend on the step count;
/// they enter the graph as two scalar inputs computed per step.
pub struct TrainStep {
    rule: Rule,
    names: Vec<String>,
    first: Arc<Plan>,
    steady: Option<Arc<Plan>>,
    params: Vec<Tensor>,
    /// `state_kinds` groups of one tensor per parameter, kind by kind.
    state: Option<Vec<Tensor>>,
    steps: usize,
}

impl TrainStep {
    /// Traces the SGD step of `module` on the batch `(x, y)` (its shapes and
    /// dtypes are the ones every later batch must have). The module is left
    /// as it was; call [`TrainStep::write_back`] to store trained values.
    ///
    /// Modules whose forward updates buffers (batch norm in training mode)
    /// are refused: those updates are not yet graph outputs.
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
        if let Some((name, _)) = module.named_buffers().first() {
            return Err(Error::invalid_arg(
                op,
                format!("the module has buffers (`{name}`); traced steps do not update buffers yet"),
            ));
        }
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
        let scalars = scalar_inputs(&rule, 1, dtype)?;
        let first = compile(module, loss, rule, &params, x, y, None, &scalars)?;
        let steady = if rule.state_kinds() > 0 {
            let zeros = values.iter().map(Tensor::zeros_like).collect::<Result<Vec<_>>>()?;
            let state: Vec<Tensor> = (0..rule.state_kinds()).flat_map(|_| zeros.iter().cloned()).collect();
            Some(compile(module, loss, rule, &params, x, y, Some(&state), &scalars)?)
        } else {
            None
        };
        Ok(TrainStep { rule, names, first, steady, params: values, state: None, steps: 0 })
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
        inputs.extend(scalar_inputs(&self.rule, self.steps + 1, scalar_dtype(&self.params))?);
        let mut out = plan.run(&inputs)?.into_iter();
        let loss = out.next().expect("the loss is output 0");
        self.params = out.by_ref().take(n).collect();
        if self.rule.state_kinds() > 0 {
            self.state = Some(out.collect());
        }
        self.steps += 1;
        Ok(loss)
    }

    /// Copies the current parameter values into the module's parameters.
    pub fn write_back<M: Module + ?Sized>(&self, module: &M) -> Result<()> {
        let named = module.named_parameters();
        if named.len() != self.params.len() || named.iter().zip(&self.names).any(|((a, _), b)| a != b) {
            return Err(Error::invalid_arg("TrainStep::write_back", "not the module this step was traced from"));
        }
        for ((_, p), v) in named.iter().zip(&self.params) {
            p.set(v)?;
        }
        Ok(())
    }

    /// The current parameter values, in `named_parameters` order.
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
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

/// The rule's scalar graph inputs for step `t`, as 0-d tensors of `dtype`.
fn scalar_inputs(rule: &Rule, t: usize, dtype: DType) -> Result<Vec<Tensor>> {
    let cpu = oar_tensor::Device::cpu();
    rule.scalars(t).into_iter().map(|v| Tensor::full(Shape::scalar(), v, dtype, &cpu)).collect()
}

/// Traces one step; `state` is the optimizer state (steady step) or `None`.
#[allow(clippy::too_many_arguments)] // the step's parts, all needed
fn compile<M: Module + Forward + ?Sized>(
    module: &M,
    loss: &LossFn<'_>,
    rule: Rule,
    params: &[Param],
    x: &Tensor,
    y: &Tensor,
    state: Option<&[Tensor]>,
    scalars: &[Tensor],
) -> Result<Arc<Plan>> {
    let originals: Vec<Tensor> = params.iter().map(Param::get).collect();
    let mut inputs = vec![x.clone(), y.clone()];
    inputs.extend(originals.iter().map(|p| p.with_requires_grad(true)).collect::<Result<Vec<_>>>()?);
    if let Some(b) = state {
        inputs.extend(b.iter().cloned());
    }
    inputs.extend(scalars.iter().cloned());
    let (n, kinds) = (params.len(), rule.state_kinds());
    let result = trace(&inputs, &[], |ins| {
        // The module reads the trace's parameter leaves (same buffers).
        for (p, v) in params.iter().zip(&ins[2..2 + n]) {
            p.replace(v)?;
        }
        let leaves: Vec<Tensor> = params.iter().map(Param::get).collect();
        let l = {
            let _grad = oar_tensor::set_grad_enabled(true);
            loss(&module.forward(&ins[0])?, &ins[1])?
        };
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
                    let (p_new, buf) = sgd_update(&c, &p, &grad, old.as_ref().map(|o| o[0]))?;
                    (p_new, buf.into_iter().collect())
                }
                Rule::Adam { cfg, decoupled } => {
                    let prev = [0, 1, 2].map(|k| old.as_ref().and_then(|o| o.get(k).copied()));
                    let correction = BiasCorrection::Tensors { bias2_sqrt: &scalars_in[0], step_size: &scalars_in[1] };
                    let (next, new) =
                        adam_update(&cfg, cfg.lr, cfg.weight_decay, decoupled, &p, &grad, prev, correction)?;
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
        Ok(outs)
    });
    for (p, v) in params.iter().zip(&originals) {
        p.replace(v)?;
    }
    let mut graph = result?;
    optimize(&mut graph, OptLevel::O1)?;
    Plan::new(graph)
}

/// `oar_nn::optim::Sgd::step` for one parameter, op for op.
fn sgd_update(c: &SgdConfig, p: &Tensor, grad: &Tensor, buf: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    let mut d = if c.maximize { grad.neg()? } else { grad.clone() };
    if c.weight_decay != 0.0 {
        d = d.add(&p.mul_scalar(c.weight_decay)?)?;
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
    Ok((p.sub(&d.mul_scalar(c.lr)?)?, new_buf))
}
