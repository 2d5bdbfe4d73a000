//! `to_static`: a module's eager `forward`, traced and optimized into a
//! plan per input shape and dtype.

use crate::batch::batch_spec;
use crate::exec::Plan;
use crate::graph::{Graph, GraphStats};
use crate::passes::{optimize, OptLevel, PassRecord};
use crate::trace::trace;
use oar_nn::{Entry, Forward, Module, Visitor};
use oar_tensor::op::TensorMeta;
use oar_tensor::{Result, Tensor, TensorId};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One traced and optimized specialization.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub plan: Arc<Plan>,
    /// The graph as traced, before passes.
    pub traced: GraphStats,
    pub passes: Vec<PassRecord>,
    /// Ids of the module's state tensors when traced: a step of an optimizer
    /// replaces them, which makes this specialization stale.
    state: Vec<TensorId>,
}

/// A module run through static graphs. Each new input shape/dtype traces
/// the module's `forward` once and caches the optimized plan; a change of
/// the module's parameters or buffers (an optimizer step, a checkpoint load)
/// retraces, so the static module never runs stale weights.
///
/// The module's mode is traced as it is: call `eval()` first for inference
/// (batch norm then uses running statistics and folds into the convolution;
/// dropout is the identity).
pub struct StaticModule<'m, M: ?Sized> {
    module: &'m M,
    level: OptLevel,
    cache: Mutex<HashMap<TensorMeta, Compiled>>,
}

/// Traces `module` on `example` and returns the static module (the first
/// specialization is compiled now, so tracing errors surface here).
///
/// ```
/// use oar_jit::to_static;
/// use oar_nn::{models::SimpleCnn, Forward, Module};
/// use oar_tensor::{DType, Device, Tensor};
/// # fn main() -> oar_tensor::Result<()> {
/// let mut model = SimpleCnn::new()?;
/// model.eval();
/// let x = Tensor::randn([1, 3, 32, 32], DType::F32, &Device::cpu())?;
/// let fast = to_static(&model, &x)?;
/// let (eager, graph) = (model.forward(&x)?, fast.forward(&x)?);
/// assert_eq!(graph.dims(), &[1, 10]);
/// assert!(eager.sub(&graph)?.abs()?.max_all()?.item()? < 1e-5);
/// # Ok(()) }
/// ```
pub fn to_static<'m, M: Module + Forward + ?Sized>(module: &'m M, example: &Tensor) -> Result<StaticModule<'m, M>> {
    to_static_with(module, example, OptLevel::default())
}

/// [`to_static`] at a chosen optimization level.
pub fn to_static_with<'m, M: Module + Forward + ?Sized>(
    module: &'m M,
    example: &Tensor,
    level: OptLevel,
) -> Result<StaticModule<'m, M>> {
    let s = StaticModule { module, level, cache: Mutex::new(HashMap::new()) };
    s.compiled(example)?;
    Ok(s)
}

/// Traces `module.forward` on `example` into a graph (no passes run).
pub fn trace_module<M: Module + Forward + ?Sized>(module: &M, example: &Tensor) -> Result<Graph> {
    trace(std::slice::from_ref(example), &live_state(module), |x| Ok(vec![module.forward(&x[0])?]))
}

/// The tensors `forward` reads, by state-dict key: the handles themselves
/// (`state_dict` detaches parameters, which would give them new ids).
fn live_state<M: Module + ?Sized>(module: &M) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    module.visit(&mut Visitor::new(&mut |name, e| {
        let t = match e {
            Entry::Param(p) => p.get(),
            Entry::Buffer(b) => b.get(),
        };
        out.push((name.to_string(), t));
    }));
    out
}

/// What [`Compiled::state`] compares: checked on every call, so no names.
fn state_ids<M: Module + ?Sized>(module: &M) -> Vec<TensorId> {
    let mut out = Vec::new();
    module.visit(&mut Visitor::new(&mut |_, e| {
        out.push(match e {
            Entry::Param(p) => p.get().id(),
            Entry::Buffer(b) => b.get().id(),
        })
    }));
    out
}

impl<M: Module + Forward + ?Sized> StaticModule<'_, M> {
    /// Runs the plan for `x`'s shape and dtype (tracing it on a miss).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let plan = self.compiled(x)?.plan;
        Ok(plan.run(std::slice::from_ref(x))?.remove(0))
    }

    /// The specialization for `x`'s shape and dtype, compiled if missing or stale.
    pub fn compiled(&self, x: &Tensor) -> Result<Compiled> {
        let key = x.meta();
        let state = state_ids(self.module);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key).filter(|c| c.state == state) {
            return Ok(c.clone());
        }
        let mut graph = trace_module(self.module, x)?;
        let traced = graph.stats();
        let passes = optimize(&mut graph, self.level)?;
        let compiled = Compiled { plan: Plan::new(graph)?, traced, passes, state };
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Saves the optimized graph for `example`'s shape and dtype to `dir`
    /// (see [`crate::save`]), for a [`crate::Predictor`] to load.
    ///
    /// The module is also traced at one more row than `example` has. When
    /// the two graphs differ only where the batch size appears (see
    /// [`crate::batch`]), the saved graph serves any batch size; otherwise
    /// it serves `example`'s shape only. [`StaticModule::save_static`]
    /// skips the second trace.
    pub fn save(&self, example: &Tensor, dir: impl AsRef<Path>) -> Result<()> {
        let mut graph = self.compiled(example)?.plan.graph().clone();
        if example.rank() > 0 && example.dims()[0] > 0 {
            let one_more = Tensor::cat(&[example, &example.narrow(0, 0, 1)?], 0)?;
            let other = self.compiled(&one_more)?;
            graph.batch = batch_spec(&graph, other.plan.graph(), example.dims()[0]).ok();
        }
        crate::format::save(&graph, dir)
    }

    /// [`StaticModule::save`] for `example`'s shape only.
    pub fn save_static(&self, example: &Tensor, dir: impl AsRef<Path>) -> Result<()> {
        crate::format::save(self.compiled(example)?.plan.graph(), dir)
    }
}
