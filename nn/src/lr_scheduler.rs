//! Learning-rate schedules (PyTorch's `torch.optim.lr_scheduler`).
//!
//! A [`Schedule`] is a closed-form function of the epoch (or step) count
//! and a group's base learning rate; an [`LrScheduler`] applies one to an
//! optimizer. Constructing it sets epoch 0's rate; each [`LrScheduler::step`]
//! advances one epoch, as `scheduler.step()` does. Closed forms make resuming
//! exact: [`LrScheduler::set_epoch`] restores any point.

use crate::optim::Optimizer;
use oar_tensor::{Error, Result};
use std::f64::consts::PI;

/// A learning rate as a function of the epoch and the group's base rate.
pub trait Schedule: Send + Sync {
    fn lr(&self, epoch: usize, base_lr: f64) -> f64;
}

/// Multiplies by `gamma` every `step_size` epochs.
#[derive(Clone, Copy, Debug)]
pub struct StepLR {
    pub step_size: usize,
    pub gamma: f64,
}

impl Schedule for StepLR {
    fn lr(&self, epoch: usize, base: f64) -> f64 {
        base * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// Multiplies by `gamma` at each milestone epoch.
#[derive(Clone, Debug)]
pub struct MultiStepLR {
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Schedule for MultiStepLR {
    fn lr(&self, epoch: usize, base: f64) -> f64 {
        base * self.gamma.powi(self.milestones.iter().filter(|&&m| m <= epoch).count() as i32)
    }
}

/// Multiplies by `gamma` every epoch.
#[derive(Clone, Copy, Debug)]
pub struct ExponentialLR {
    pub gamma: f64,
}

impl Schedule for ExponentialLR {
    fn lr(&self, epoch: usize, base: f64) -> f64 {
        base * self.gamma.powi(epoch as i32)
    }
}

/// Cosine from the base rate down to `eta_min` over `t_max` epochs (then
/// back up, periodically, as PyTorch's closed form).
#[derive(Clone, Copy, Debug)]
pub struct CosineAnnealingLR {
    pub t_max: usize,
    pub eta_min: f64,
}

impl Schedule for CosineAnnealingLR {
    fn lr(&self, epoch: usize, base: f64) -> f64 {
        let t = self.t_max.max(1) as f64;
        self.eta_min + (base - self.eta_min) * (1.0 + (PI * epoch as f64 / t).cos()) / 2.0
    }
}

/// Linear change of the rate's factor from `start_factor` to `end_factor`
/// over `total_iters` epochs, then constant (a linear warmup with the defaults
/// of `LinearLR::warmup`).
#[derive(Clone, Copy, Debug)]
pub struct LinearLR {
    pub start_factor: f64,
    pub end_factor: f64,
    pub total_iters: usize,
}

impl LinearLR {
    /// Ramps from `start_factor` of the base rate to the full rate over `total_iters` epochs.
    pub fn warmup(start_factor: f64, total_iters: usize) -> Self {
        LinearLR { start_factor, end_factor: 1.0, total_iters }
    }
}

impl Schedule for LinearLR {
    fn lr(&self, epoch: usize, base: f64) -> f64 {
        let frac =
            if self.total_iters == 0 { 1.0 } else { epoch.min(self.total_iters) as f64 / self.total_iters as f64 };
        base * (self.start_factor + (self.end_factor - self.start_factor) * frac)
    }
}

/// The 1cycle policy (Smith & Topin; PyTorch's `OneCycleLR` with cosine
/// annealing, two phases): from `max_lr / div_factor` up to `max_lr` over the
/// first `pct_start` of `total_steps`, then down to
/// `max_lr / (div_factor * final_div_factor)`. Stepped once per batch. The
/// group's base rate is ignored. (PyTorch also cycles momentum by default;
/// this does not.)
#[derive(Clone, Copy, Debug)]
pub struct OneCycleLR {
    pub max_lr: f64,
    pub total_steps: usize,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
}

impl OneCycleLR {
    /// PyTorch's defaults: `pct_start` 0.3, `div_factor` 25, `final_div_factor` 1e4.
    pub fn new(max_lr: f64, total_steps: usize) -> Self {
        OneCycleLR { max_lr, total_steps, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 }
    }
}

fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

impl Schedule for OneCycleLR {
    fn lr(&self, step: usize, _base: f64) -> f64 {
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let up_end = self.pct_start * self.total_steps as f64 - 1.0;
        let down_end = self.total_steps as f64 - 1.0;
        let s = step as f64;
        if s <= up_end {
            let pct = if up_end > 0.0 { s / up_end } else { 1.0 };
            cos_anneal(initial, self.max_lr, pct)
        } else {
            let span = down_end - up_end;
            let pct = if span > 0.0 { ((s - up_end) / span).min(1.0) } else { 1.0 };
            cos_anneal(self.max_lr, min, pct)
        }
    }
}

/// Runs `schedules[i]` from `milestones[i - 1]` (counting its epochs from 0
/// there), as PyTorch's `SequentialLR`: e.g. a warmup then a cosine decay.
pub struct SequentialLR {
    schedules: Vec<Box<dyn Schedule>>,
    milestones: Vec<usize>,
}

impl SequentialLR {
    pub fn new(schedules: Vec<Box<dyn Schedule>>, milestones: Vec<usize>) -> Result<Self> {
        let sorted = milestones.windows(2).all(|w| w[0] < w[1]);
        if schedules.is_empty() || milestones.len() + 1 != schedules.len() || !sorted {
            return Err(Error::invalid_arg(
                "SequentialLR",
                format!(
                    "expected n schedules and n - 1 increasing milestones, got {} and {milestones:?}",
                    schedules.len()
                ),
            ));
        }
        Ok(SequentialLR { schedules, milestones })
    }
}

impl Schedule for SequentialLR {
    fn lr(&self, epoch: usize, base: f64) -> f64 {
        let i = self.milestones.iter().filter(|&&m| m <= epoch).count();
        let start = if i == 0 { 0 } else { self.milestones[i - 1] };
        self.schedules[i].lr(epoch - start, base)
    }
}

/// Applies a [`Schedule`] to an optimizer's groups.
///
/// ```
/// use oar_nn::lr_scheduler::{LrScheduler, StepLR};
/// use oar_nn::optim::{Optimizer, Sgd, SgdConfig};
/// use oar_nn::{Linear, Module};
/// # fn main() -> oar_tensor::Result<()> {
/// let model = Linear::new(2, 1)?;
/// let mut opt = Sgd::new(model.parameters(), SgdConfig::new(0.1))?;
/// let mut sched = LrScheduler::new(StepLR { step_size: 2, gamma: 0.5 }, &mut opt);
/// for _ in 0..4 {
///     // ... one epoch of opt.step() calls ...
///     sched.step(&mut opt);
/// }
/// assert!((opt.lr() - 0.025).abs() < 1e-12);
/// # Ok(()) }
/// ```
pub struct LrScheduler {
    schedule: Box<dyn Schedule>,
    base_lrs: Vec<f64>,
    epoch: usize,
}

impl LrScheduler {
    /// Takes the optimizer's current rates as the base rates and sets epoch 0's.
    pub fn new(schedule: impl Schedule + 'static, opt: &mut dyn Optimizer) -> Self {
        let base_lrs = opt.groups().iter().map(|g| g.lr).collect();
        let s = LrScheduler { schedule: Box::new(schedule), base_lrs, epoch: 0 };
        s.apply(opt);
        s
    }

    /// Advances one epoch and sets the new rates.
    pub fn step(&mut self, opt: &mut dyn Optimizer) {
        self.epoch += 1;
        self.apply(opt);
    }

    /// Jumps to `epoch` (resuming a run) and sets its rates.
    pub fn set_epoch(&mut self, epoch: usize, opt: &mut dyn Optimizer) {
        self.epoch = epoch;
        self.apply(opt);
    }

    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The rates of the current epoch, per group.
    pub fn last_lr(&self) -> Vec<f64> {
        self.base_lrs.iter().map(|&b| self.schedule.lr(self.epoch, b)).collect()
    }

    fn apply(&self, opt: &mut dyn Optimizer) {
        let lrs = self.last_lr();
        for (g, lr) in opt.groups_mut().iter_mut().zip(lrs) {
            g.lr = lr;
        }
    }
}
