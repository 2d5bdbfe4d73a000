//! Optimizers (SGD, Adam, AdamW, RMSprop) with PyTorch's update rules,
//! parameter groups, gradient clipping and state dicts; LR schedules in
//! [`crate::lr_scheduler`].
//!
//! Updates are ordinary tensor ops run under `no_grad`: each step gives every
//! parameter a new value ([`Param::set`]). A jit trace of a training step
//! records them like any other op, so the traced graph's outputs include the
//! updated parameters and optimizer state.

mod adam;
mod clip;
mod rmsprop;
mod sgd;

pub use adam::{adam_bias_correction, adam_update, Adam, AdamConfig, AdamMoments, AdamScalars, AdamW};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{sgd_update, Sgd, SgdConfig};

use crate::param::Param;
use crate::state::StateDict;
use oar_tensor::{Error, ErrorKind, Result, Tensor};
use std::collections::BTreeMap;

/// A number an update rule applies: a host value (eager optimizers) or a
/// 0-d tensor of the parameter's dtype (an input of a traced training step,
/// so that one graph serves every value, as an LR schedule changes it). A
/// scalar op rounds its scalar to the tensor's dtype, so both give the same
/// bits.
#[derive(Clone, Copy, Debug)]
pub enum Hyper<'a> {
    Host(f64),
    Tensor(&'a Tensor),
}

impl Hyper<'_> {
    /// `t * self`.
    pub fn scale(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Hyper::Host(v) => t.mul_scalar(v),
            Hyper::Tensor(s) => t.mul(s),
        }
    }

    /// `t / self`.
    pub fn divide(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Hyper::Host(v) => t.div_scalar(v),
            Hyper::Tensor(s) => t.div(s),
        }
    }
}

/// Parameters with their own learning rate and/or weight decay (PyTorch's
/// `param_groups` entries); unset values take the optimizer's.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub params: Vec<Param>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
}

impl ParamGroup {
    pub fn new(params: Vec<Param>) -> Self {
        ParamGroup { params, lr: None, weight_decay: None }
    }
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = Some(wd);
        self
    }
}

/// What optimizers accept: one list of parameters, or groups.
pub trait IntoGroups {
    fn into_groups(self) -> Vec<ParamGroup>;
}

impl IntoGroups for Vec<Param> {
    fn into_groups(self) -> Vec<ParamGroup> {
        vec![ParamGroup::new(self)]
    }
}

impl IntoGroups for Vec<ParamGroup> {
    fn into_groups(self) -> Vec<ParamGroup> {
        self
    }
}

/// A parameter group with its settings resolved.
#[derive(Clone, Debug)]
pub struct Group {
    pub params: Vec<Param>,
    pub lr: f64,
    pub weight_decay: f64,
}

/// An optimizer's state (PyTorch's `optimizer.state_dict()`): per-parameter
/// tensors under `state.{index}.{name}` (`state.0.exp_avg`), parameters
/// numbered across groups in order, and each group's settings.
#[derive(Clone, Debug, Default)]
pub struct OptimizerState {
    pub tensors: StateDict,
    /// One JSON object per group: `lr`, `weight_decay`, the optimizer's
    /// hyperparameters and `params` (the indices).
    pub param_groups: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The interface the training loop and LR schedules use.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;

    fn groups(&self) -> &[Group];

    fn groups_mut(&mut self) -> &mut [Group];

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for g in self.groups() {
            for p in &g.params {
                p.zero_grad();
            }
        }
    }

    /// The first group's learning rate.
    fn lr(&self) -> f64 {
        self.groups().first().map_or(0.0, |g| g.lr)
    }

    /// Sets every group's learning rate.
    fn set_lr(&mut self, lr: f64) {
        for g in self.groups_mut() {
            g.lr = lr;
        }
    }

    fn state_dict(&self) -> OptimizerState;

    /// Restores state saved by [`Optimizer::state_dict`] from an optimizer of
    /// the same kind over parameters of the same shapes.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;
}

/// What every optimizer keeps: resolved groups and per-parameter state.
#[derive(Clone, Debug)]
pub(crate) struct Core {
    pub groups: Vec<Group>,
    /// Per parameter (numbered across groups): its step count and buffers.
    pub state: Vec<ParamState>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ParamState {
    pub step: u64,
    pub buffers: BTreeMap<&'static str, Tensor>,
}

impl Core {
    pub fn new(op: &'static str, groups: Vec<ParamGroup>, lr: f64, weight_decay: f64) -> Result<Core> {
        let mut resolved = Vec::with_capacity(groups.len());
        let mut seen: Vec<Param> = Vec::new();
        for g in groups {
            let lr = g.lr.unwrap_or(lr);
            let weight_decay = g.weight_decay.unwrap_or(weight_decay);
            check_hyper(op, "lr", lr)?;
            check_hyper(op, "weight_decay", weight_decay)?;
            for p in &g.params {
                if seen.iter().any(|q| q.ptr_eq(p)) {
                    return Err(Error::invalid_arg(op, "a parameter appears in more than one group (or twice in one)"));
                }
                if !p.dtype().is_float() {
                    return Err(Error::from(ErrorKind::UnsupportedDType {
                        op,
                        dtype: p.dtype(),
                        msg: "parameters must be floating point",
                    }));
                }
                seen.push(p.clone());
            }
            resolved.push(Group { params: g.params, lr, weight_decay });
        }
        let n = seen.len();
        Ok(Core { groups: resolved, state: vec![ParamState::default(); n] })
    }

    /// Calls `f(param, grad, group, state)` for every parameter with a
    /// gradient, under `no_grad`, and stores the value it returns.
    pub fn for_each(
        &mut self,
        mut f: impl FnMut(&Tensor, &Tensor, &Group, &mut ParamState) -> Result<Tensor>,
    ) -> Result<()> {
        let _guard = oar_tensor::no_grad();
        let mut i = 0;
        for g in &self.groups {
            for p in &g.params {
                let state = &mut self.state[i];
                i += 1;
                if !p.requires_grad() {
                    continue;
                }
                let Some(grad) = p.grad() else { continue };
                let value = p.get();
                let next = f(&value, &grad, g, state)?;
                p.set(&next)?;
            }
        }
        Ok(())
    }

    /// The state dict, with `hyper` (the optimizer's settings) in every group.
    pub fn state_dict(&self, hyper: &serde_json::Map<String, serde_json::Value>) -> OptimizerState {
        let mut tensors = StateDict::new();
        for (i, s) in self.state.iter().enumerate() {
            if s.step > 0 || !s.buffers.is_empty() {
                let step = Tensor::scalar(s.step as i64, &oar_tensor::Device::cpu()).expect("a scalar");
                tensors.insert(format!("state.{i}.step"), step);
            }
            for (name, t) in &s.buffers {
                tensors.insert(format!("state.{i}.{name}"), t.clone());
            }
        }
        let mut first = 0;
        let param_groups = self
            .groups
            .iter()
            .map(|g| {
                let mut m = hyper.clone();
                m.insert("lr".into(), g.lr.into());
                m.insert("weight_decay".into(), g.weight_decay.into());
                m.insert("params".into(), (first..first + g.params.len()).collect::<Vec<_>>().into());
                first += g.params.len();
                m
            })
            .collect();
        OptimizerState { tensors, param_groups }
    }

    /// Restores from `state`; `buffers` lists the names this optimizer keeps.
    /// Everything is checked before anything changes.
    pub fn load_state_dict(
        &mut self,
        op: &'static str,
        state: &OptimizerState,
        buffers: &[&'static str],
    ) -> Result<()> {
        let bad = |msg: String| Err(Error::from(ErrorKind::StateDict { msg: format!("{op}: {msg}") }));
        if state.param_groups.len() != self.groups.len() {
            return bad(format!(
                "{} parameter groups saved, {} in this optimizer",
                state.param_groups.len(),
                self.groups.len()
            ));
        }
        let mut lrs = Vec::new();
        for (i, (saved, g)) in state.param_groups.iter().zip(&self.groups).enumerate() {
            let n = saved.get("params").and_then(|p| p.as_array()).map(|a| a.len());
            if n != Some(g.params.len()) {
                return bad(format!("group {i}: {n:?} parameters saved, {} in this optimizer", g.params.len()));
            }
            let num = |k: &str| saved.get(k).and_then(|v| v.as_f64());
            match (num("lr"), num("weight_decay")) {
                (Some(lr), Some(wd)) => lrs.push((lr, wd)),
                _ => return bad(format!("group {i}: lr or weight_decay missing")),
            }
        }
        let params: Vec<Param> = self.groups.iter().flat_map(|g| g.params.iter().cloned()).collect();
        let mut next = vec![ParamState::default(); params.len()];
        for (key, t) in state.tensors.iter() {
            let parsed = key.strip_prefix("state.").and_then(|r| r.split_once('.'));
            let Some((idx, name)) = parsed else { return bad(format!("unexpected key {key}")) };
            let Some(i) = idx.parse::<usize>().ok().filter(|&i| i < params.len()) else {
                return bad(format!("{key}: no parameter {idx} (the optimizer has {})", params.len()));
            };
            if name == "step" {
                let step = t.to_dtype(oar_tensor::DType::I64)?.to_scalar::<i64>()?;
                next[i].step = u64::try_from(step)
                    .map_err(|_| Error::from(ErrorKind::StateDict { msg: format!("{op}: {key} is negative") }))?;
                continue;
            }
            let Some(&name) = buffers.iter().find(|&&b| b == name) else {
                return bad(format!("unexpected key {key} (this optimizer keeps {buffers:?})"));
            };
            let p = &params[i];
            if t.dims() != p.dims().as_slice() || t.dtype() != p.dtype() {
                return bad(format!(
                    "{key}: {} {} saved, the parameter is {:?} {}",
                    t.shape(),
                    t.dtype(),
                    p.dims(),
                    p.dtype()
                ));
            }
            next[i].buffers.insert(name, t.to_device(&p.device())?);
        }
        for (g, (lr, wd)) in self.groups.iter_mut().zip(lrs) {
            g.lr = lr;
            g.weight_decay = wd;
        }
        self.state = next;
        Ok(())
    }
}

pub(crate) fn check_hyper(op: &'static str, name: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::invalid_arg(op, format!("{name} must be finite and >= 0, got {v}")));
    }
    Ok(())
}
