//! `oar-jit`: from eager code to a deployable static graph.
//!
//! ```text
//! trace(fn, example inputs) -> Graph -> passes -> Plan (executor) -> save
//!                                                     load -> Predictor
//! ```
//!
//! - [`trace`] / [`to_static`] run eager code once with provenance recording
//!   on and build a [`Graph`] of the tensor crate's `Op`s, weights named by
//!   their state-dict keys.
//! - [`passes`] rewrite it (dead code, CSE, algebraic identities, constant
//!   folding, batch-norm folding into convolutions), verifying after each.
//! - [`Plan`] runs it as a flat list of steps, freeing each intermediate after
//!   its last reader.
//! - [`TrainStep`] traces forward, loss, backward and an SGD, Adam or AdamW update
//!   (over parameter groups, if given) into one graph and trains by running it.
//! - [`save`] / [`load`] write and validate a model directory (`model.json` +
//!   `weights.safetensors`); a [`Predictor`] serves it.

pub mod batch;
pub mod exec;
pub mod format;
pub mod graph;
pub mod passes;
pub mod predictor;
mod static_module;
pub mod trace;
pub mod train;

pub use exec::Plan;
pub use format::{load, save};
pub use graph::{Graph, GraphStats, Node, ValueId, Weight};
pub use passes::{optimize, OptLevel};
pub use predictor::{Config, InputHandle, OutputHandle, Predictor};
pub use static_module::{to_static, to_static_with, trace_module, Compiled, StaticModule};
pub use trace::trace;
pub use train::{StepRule, TrainStep};
