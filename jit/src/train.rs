//! A whole training step as a static graph: forward, loss, backward (the
//! autograd rules are ordinary ops, so the trace records them) and an SGD
//! update. The graph's inputs are the batch, the parameters and the momentum
//! buffers; its outputs the loss and their updated values, which the next
//! step feeds back in.

use crate::exec::Plan;
use crate::graph::Graph;
use crate::passes::{optimize, OptLevel};
use crate::trace::trace;
use oar_autograd::BackwardOptions;
use oar_nn::optim::SgdConfig;
use oar_nn::{Forward, Module, Param};
use oar_tensor::{Error, Result, Tensor};
use std::sync::Arc;

/// The loss of a traced step: model output and targets to a scalar.
pub type LossFn<'a> = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// A traced SGD training step (momentum, dampening, Nesterov, weight decay
/// and maximize as [`oar_nn::optim::Sgd`], computed with the same ops in the
/// same order, so it reproduces eager training).
///
/// SGD's first step sets each momentum buffer to the gradient rather than
/// updating it, so with momentum there are two graphs: the first step's
/// (no buffers in) and the steady one's.
pub struct TrainStep {
    cfg: SgdConfig,
    names: Vec<String>,
    first: Arc<Plan>,
    steady: Option<Arc<Plan>>,
    params: Vec<Tensor>,
    buffers: Option<Vec<Tensor>>,
    steps: usize,
}

impl TrainStep {
    /// Traces the step of `module` on the batch `(x, y)` (its shapes and
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
        if let Some((name, _)) = module.named_buffers().first() {
            return Err(Error::invalid_arg(
                "TrainStep::sgd",
                format!("the module has buffers (`{name}`); traced steps do not update buffers yet"),
            ));
        }
        let named = module.named_parameters();
        let names = named.iter().map(|(n, _)| n.clone()).collect();
        let params: Vec<Param> = named.into_iter().map(|(_, p)| p).collect();
        let values: Vec<Tensor> = params.iter().map(Param::get).collect();
        let first = compile(module, loss, cfg, &params, x, y, None)?;
        let steady = if cfg.momentum != 0.0 {
            let zeros = values.iter().map(Tensor::zeros_like).collect::<Result<Vec<_>>>()?;
            Some(compile(module, loss, cfg, &params, x, y, Some(&zeros))?)
        } else {
            None
        };
        Ok(TrainStep { cfg, names, first, steady, params: values, buffers: None, steps: 0 })
    }

    /// Runs one step on a batch; returns the loss (before the update).
    pub fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let n = self.params.len();
        let mut inputs = vec![x.clone(), y.clone()];
        inputs.extend(self.params.iter().cloned());
        let plan = match (&self.buffers, &self.steady) {
            (Some(b), Some(steady)) => {
                inputs.extend(b.iter().cloned());
                steady
            }
            _ => &self.first,
        };
        let mut out = plan.run(&inputs)?.into_iter();
        let loss = out.next().expect("the loss is output 0");
        self.params = out.by_ref().take(n).collect();
        if self.cfg.momentum != 0.0 {
            self.buffers = Some(out.collect());
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

    /// The steady-state step graph (the first step's when without momentum).
    pub fn graph(&self) -> &Graph {
        self.steady.as_ref().unwrap_or(&self.first).graph()
    }

    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// Traces one step; `buffers` are momentum buffers (steady step) or `None`.
fn compile<M: Module + Forward + ?Sized>(
    module: &M,
    loss: &LossFn<'_>,
    cfg: SgdConfig,
    params: &[Param],
    x: &Tensor,
    y: &Tensor,
    buffers: Option<&[Tensor]>,
) -> Result<Arc<Plan>> {
    let originals: Vec<Tensor> = params.iter().map(Param::get).collect();
    let mut inputs = vec![x.clone(), y.clone()];
    inputs.extend(originals.iter().map(|p| p.with_requires_grad(true)).collect::<Result<Vec<_>>>()?);
    if let Some(b) = buffers {
        inputs.extend(b.iter().cloned());
    }
    let n = params.len();
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
        let bufs_in = buffers.map(|_| &ins[2 + n..]);
        let mut new_params = Vec::with_capacity(n);
        let mut new_bufs = Vec::with_capacity(n);
        for (i, (p, g)) in leaves.iter().zip(grads).enumerate() {
            let Some(grad) = g else {
                new_params.push(p.detach());
                new_bufs.push(match bufs_in {
                    Some(b) => b[i].clone(),
                    None => p.zeros_like()?,
                });
                continue;
            };
            let (p_new, buf) = sgd_update(&cfg, &p.detach(), &grad, bufs_in.map(|b| &b[i]))?;
            new_params.push(p_new);
            new_bufs.push(buf.unwrap_or(grad));
        }
        let mut outs = vec![l];
        outs.extend(new_params);
        if cfg.momentum != 0.0 {
            outs.extend(new_bufs);
        }
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
