//! The executor: a graph lowered to a flat list of steps over value slots.
//! Weights sit in their slots for the executor's lifetime; every other value
//! is dropped right after its last reader (liveness). Each run happens inside
//! one of the plan's [`BufferArena`]s, which keeps those freed buffers: the
//! next op of the run, or the same op of the next run, takes a buffer of its
//! exact size from there, so after the first run a plan allocates only the
//! buffers of the outputs it returns.

use crate::graph::{Def, Graph};
use oar_tensor::op::{Op, TensorMeta};
use oar_tensor::{ArenaStats, BufferArena, Error, ErrorKind, Result, Tensor};
use smallvec::SmallVec;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Step {
    op: Op,
    inputs: SmallVec<[usize; 3]>,
    outputs: SmallVec<[usize; 2]>,
    /// Slots whose last reader is this step.
    free: SmallVec<[usize; 3]>,
}

/// A compiled graph: shared, immutable, `Send + Sync` (clone the `Arc` to
/// serve several threads).
#[derive(Debug)]
pub struct Plan {
    graph: Graph,
    steps: Vec<Step>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Slots of outputs that are weights or inputs, which are never freed.
    slots: usize,
    /// Idle arenas, one per run in flight at most (runs on several threads
    /// each take their own).
    arenas: Mutex<Vec<BufferArena>>,
}

impl Plan {
    /// Lowers a verified graph.
    pub fn new(graph: Graph) -> Result<Arc<Plan>> {
        graph.verify()?;
        let uses = graph.use_counts();
        let defs = graph.defs();
        // Last step reading each value; graph outputs and weights live on.
        let mut last: Vec<Option<usize>> = vec![None; graph.values.len()];
        for (s, node) in graph.nodes.iter().enumerate() {
            for v in &node.inputs {
                last[v.index()] = Some(s);
            }
        }
        let keep = |v: usize| graph.outputs.iter().any(|o| o.index() == v) || matches!(defs[v], Some(Def::Weight(_)));
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (s, node) in graph.nodes.iter().enumerate() {
            let mut free: SmallVec<[usize; 3]> = SmallVec::new();
            for v in &node.inputs {
                let v = v.index();
                if last[v] == Some(s) && !keep(v) && !free.contains(&v) {
                    free.push(v);
                }
            }
            // Outputs nobody reads (the second output of max_pool2d, say).
            for o in &node.outputs {
                if uses[o.index()] == 0 {
                    free.push(o.index());
                }
            }
            steps.push(Step {
                op: node.op.clone(),
                inputs: node.inputs.iter().map(|v| v.index()).collect(),
                outputs: node.outputs.iter().map(|v| v.index()).collect(),
                free,
            });
        }
        let inputs = graph.inputs.iter().map(|i| i.value.index()).collect();
        let outputs = graph.outputs.iter().map(|v| v.index()).collect();
        let slots = graph.values.len();
        Ok(Arc::new(Plan { graph, steps, inputs, outputs, slots, arenas: Mutex::default() }))
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Metas the inputs must have, in order.
    pub fn input_metas(&self) -> Vec<&TensorMeta> {
        self.inputs.iter().map(|&i| &self.graph.values[i]).collect()
    }

    /// What the idle arenas hold and did, summed: `allocated` counts the
    /// buffers runs could not take from an arena.
    pub fn arena_stats(&self) -> ArenaStats {
        self.idle_arenas().iter().map(BufferArena::stats).sum()
    }

    /// Frees the buffers kept for later runs (the next run allocates again).
    pub fn release_buffers(&self) {
        self.idle_arenas().clear();
    }

    /// The pool of idle arenas; a run that panicked poisons nothing it holds.
    fn idle_arenas(&self) -> std::sync::MutexGuard<'_, Vec<BufferArena>> {
        self.arenas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the plan on `inputs` (shapes and dtypes as traced).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_recycling(inputs, Vec::new())
    }

    /// [`Plan::run`], first dropping `previous` (the outputs of the last run,
    /// say) inside the run's arena: buffers nobody else holds then serve
    /// this run's outputs, so a caller that hands its outputs back each time
    /// allocates nothing per run.
    pub fn run_recycling(&self, inputs: &[Tensor], previous: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut arena = self.idle_arenas().pop().unwrap_or_default();
        let result = arena.scope(|| {
            drop(previous);
            self.run_steps(inputs)
        });
        self.idle_arenas().push(arena);
        result
    }

    fn run_steps(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::invalid_arg(
                "Plan::run",
                format!("the graph takes {} inputs, got {}", self.inputs.len(), inputs.len()),
            ));
        }
        let mut slots: Vec<Option<Tensor>> = vec![None; self.slots];
        for w in &self.graph.weights {
            slots[w.value.index()] = Some(w.tensor.clone());
        }
        for (k, (&slot, t)) in self.inputs.iter().zip(inputs).enumerate() {
            let want = &self.graph.values[slot];
            if t.meta() != *want {
                return Err(Error::from(ErrorKind::ShapeMismatch {
                    op: "Plan::run",
                    shapes: vec![want.shape.clone(), t.shape().clone()],
                    msg: format!(
                        "input {k} (`{}`) must be {} {:?}, got {} {:?}",
                        self.graph.inputs[k].name,
                        want.dtype,
                        want.shape.dims(),
                        t.dtype(),
                        t.dims()
                    ),
                }));
            }
            slots[slot] = Some(t.detach());
        }
        let _no_grad = oar_tensor::no_grad();
        for step in &self.steps {
            let outs = {
                let mut refs: SmallVec<[&Tensor; 3]> = SmallVec::new();
                for &i in &step.inputs {
                    refs.push(slots[i].as_ref().expect("a verified plan defines values before use"));
                }
                Tensor::apply(step.op.clone(), &refs)?
            };
            for (&o, t) in step.outputs.iter().zip(outs) {
                slots[o] = Some(t);
            }
            for &f in &step.free {
                slots[f] = None;
            }
        }
        Ok(self.outputs.iter().map(|&o| slots[o].clone().expect("outputs are kept")).collect())
    }
}
