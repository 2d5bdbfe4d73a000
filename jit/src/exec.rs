//! The executor: a graph lowered to a flat list of steps over value slots.
//! Weights, and views of them, sit in their slots for the executor's
//! lifetime, those a backend reads faster in a layout of its own (the direct
//! convolution's, a row-major copy of a transposed linear weight) packed into
//! it once, when the plan is built, rather than on every run; every other value
//! is dropped right after its last reader (liveness). Each run happens inside
//! one of the plan's [`BufferArena`]s, which keeps those freed buffers: the
//! next op of the run, or the same op of the next run, takes a buffer of its
//! exact size from there, so after the first run a plan allocates only the
//! buffers of the outputs it returns.

use crate::graph::{Def, Graph, Node};
use oar_tensor::op::{accumulator_inputs, inverse_permutation, Op, TensorMeta};
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
    /// Set when the step is element-wise and one of its inputs dies here:
    /// the step then overwrites that input's buffer.
    in_place: Option<InPlace>,
}

/// An element-wise step run over the buffer of its input `input`
/// ([`Tensor::apply_in_place`]): `ops` in order, the binary ones reading
/// the slots `operands`.
#[derive(Debug)]
struct InPlace {
    input: usize,
    ops: Vec<Op>,
    operands: SmallVec<[usize; 3]>,
}

/// A compiled graph: shared, immutable, `Send + Sync` (clone the `Arc` to
/// serve several threads).
#[derive(Debug)]
pub struct Plan {
    graph: Graph,
    steps: Vec<Step>,
    /// What the slots of constants hold in every run: weights, views of
    /// them, and weights packed for the step that reads them (in the slots
    /// after the graph's values).
    fixed: Vec<(usize, Tensor)>,
    /// How many of those are packed weights.
    packed: usize,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Slots of outputs that are weights or inputs, which are never freed.
    slots: usize,
    /// Idle arenas, one per run in flight at most (runs on several threads
    /// each take their own).
    arenas: Mutex<Vec<BufferArena>>,
}

impl Plan {
    /// Lowers a verified graph. Views of weights (a linear layer's `w.t()`)
    /// are taken here, once, rather than on every run; weights the backend
    /// reads faster in a layout of its own are packed into it
    /// ([`Tensor::prepack`]).
    pub fn new(mut graph: Graph) -> Result<Arc<Plan>> {
        graph.verify()?;
        let uses = graph.use_counts();
        let (mut constant, hoisted) = constants(&graph)?;
        // Last step reading each value; graph outputs and constants live on.
        let mut last: Vec<Option<usize>> = vec![None; graph.values.len()];
        for (s, node) in graph.nodes.iter().enumerate().filter(|(s, _)| !hoisted[*s]) {
            for v in &node.inputs {
                last[v.index()] = Some(s);
            }
        }
        let is_output = |v: usize| graph.outputs.iter().any(|o| o.index() == v);
        let mut steps = Vec::with_capacity(graph.nodes.len());
        let (mut packed, mut unpacked, defs) = (0, Vec::new(), graph.defs());
        for (s, node) in graph.nodes.iter().enumerate().filter(|(s, _)| !hoisted[*s]) {
            let mut free: SmallVec<[usize; 3]> = SmallVec::new();
            for v in &node.inputs {
                let v = v.index();
                if last[v] == Some(s) && !is_output(v) && constant[v].is_none() && !free.contains(&v) {
                    free.push(v);
                }
            }
            // Outputs nobody reads (the second output of max_pool2d, say).
            for o in &node.outputs {
                if uses[o.index()] == 0 {
                    free.push(o.index());
                }
            }
            let mut inputs: SmallVec<[usize; 3]> = node.inputs.iter().map(|v| v.index()).collect();
            let mut op = node.op.clone();
            if let Some((k, packed_op, tensor)) = prepack(&graph, &constant, node)? {
                if let Some(w) = shared_weight(&graph, &defs, &uses, &hoisted, node.inputs[k], &tensor, &packed_op)? {
                    unpacked.push(w);
                }
                inputs[k] = constant.len();
                constant.push(Some(tensor));
                packed += 1;
                op = packed_op;
            }
            let in_place = in_place(&graph, node, &free);
            let outputs = node.outputs.iter().map(|v| v.index()).collect();
            steps.push(Step { op, inputs, outputs, free, in_place });
        }
        // Weights whose packed copy holds their values in a plain layout
        // become views of it: the plan keeps one buffer, not two.
        for (w, view) in unpacked {
            graph.weights[w].tensor = view;
        }
        // The constants a run reads: a weight only its packed copy or a view
        // reads stays out of the slots.
        let read: std::collections::HashSet<usize> = steps
            .iter()
            .flat_map(|s| s.inputs.iter().copied())
            .chain(graph.outputs.iter().map(|v| v.index()))
            .collect();
        let fixed = constant
            .iter()
            .enumerate()
            .filter_map(|(v, t)| Some((v, t.clone()?)))
            .filter(|(v, _)| read.contains(v))
            .collect();
        let inputs = graph.inputs.iter().map(|i| i.value.index()).collect();
        let outputs = graph.outputs.iter().map(|v| v.index()).collect();
        let slots = constant.len();
        Ok(Arc::new(Plan { graph, steps, fixed, packed, inputs, outputs, slots, arenas: Mutex::default() }))
    }

    /// How many weights the plan keeps packed in its backend's layout.
    pub fn prepacked_weights(&self) -> usize {
        self.packed
    }

    /// How many steps run in place, over the buffer of an input that dies
    /// there (element-wise steps that fusion left alone: a value's last
    /// reader when it has others, say).
    pub fn in_place_steps(&self) -> usize {
        self.steps.iter().filter(|s| s.in_place.is_some()).count()
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
        for (slot, t) in &self.fixed {
            slots[*slot] = Some(t.clone());
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
            let outs = if let Some(ip) = &step.in_place {
                let target = slots[step.inputs[ip.input]].take().expect("a verified plan defines values before use");
                vec![target.apply_in_place(&ip.ops, &gather(&slots, &ip.operands))?]
            } else {
                Tensor::apply(step.op.clone(), &gather(&slots, &step.inputs))?
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

/// The tensors in `slots` at `indices`, which a verified plan has defined.
fn gather<'a>(slots: &'a [Option<Tensor>], indices: &[usize]) -> SmallVec<[&'a Tensor; 3]> {
    // Plain pushes, as Tensor::apply's own bookkeeping: cheaper than `collect` for a few.
    let mut refs = SmallVec::new();
    for &i in indices {
        refs.push(slots[i].as_ref().expect("a verified plan defines values before use"));
    }
    refs
}

/// The values known before any run (weights, and views of them, taken now)
/// and which nodes computed such views, which no run repeats.
fn constants(graph: &Graph) -> Result<(Vec<Option<Tensor>>, Vec<bool>)> {
    let mut constant: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    for w in &graph.weights {
        constant[w.value.index()] = Some(w.tensor.clone());
    }
    let mut hoisted = vec![false; graph.nodes.len()];
    let _no_grad = oar_tensor::no_grad();
    for (s, node) in graph.nodes.iter().enumerate() {
        if !node.op.is_view() {
            continue;
        }
        let Some(inputs) = node.inputs.iter().map(|v| constant[v.index()].clone()).collect::<Option<Vec<_>>>() else {
            continue;
        };
        let refs: SmallVec<[&Tensor; 3]> = inputs.iter().collect();
        for (o, t) in node.outputs.iter().zip(Tensor::apply(node.op.clone(), &refs)?) {
            constant[o.index()] = Some(t);
        }
        hoisted[s] = true;
    }
    Ok((constant, hoisted))
}

/// The first constant input of `node` its backend packs for its op
/// ([`Tensor::prepack`]): the input's position, the op to run instead and the
/// packed tensor.
fn prepack(graph: &Graph, constant: &[Option<Tensor>], node: &Node) -> Result<Option<(usize, Op, Tensor)>> {
    for (k, v) in node.inputs.iter().enumerate() {
        let Some(t) = &constant[v.index()] else { continue };
        let metas: Vec<TensorMeta> = node.inputs.iter().map(|v| graph.values[v.index()].clone()).collect();
        if let Some((op, tensor)) = t.prepack(&node.op, k, &metas)? {
            return Ok(Some((k, op, tensor)));
        }
    }
    Ok(None)
}

/// How `node` runs in place, if it is element-wise (alone, or heading a
/// fused op) and one of its inputs dies at it (`free`), with the output's
/// shape and dtype, read once by it and not a graph input (the caller's
/// buffer). A binary op overwrites its left operand, or either for `add`
/// and `mul` (the same bits either way).
fn in_place(graph: &Graph, node: &Node, free: &[usize]) -> Option<InPlace> {
    let (head, epilogue): (&Op, &[Op]) = match &node.op {
        Op::Fused { head, epilogue } => (head, epilogue),
        op => (op, &[]),
    };
    let out = &graph.values[node.outputs[0].index()];
    let input = accumulator_inputs(head).iter().copied().find(|&k| {
        let v = node.inputs[k];
        free.contains(&v.index())
            && node.inputs.iter().filter(|&&w| w == v).count() == 1
            && graph.values[v.index()] == *out
            && out.dtype.is_float()
            && !graph.inputs.iter().any(|i| i.value == v)
    })?;
    let mut ops = vec![head.clone()];
    ops.extend(epilogue.iter().cloned());
    let operands = node.inputs.iter().enumerate().filter(|&(k, _)| k != input).map(|(_, v)| v.index()).collect();
    Some(InPlace { input, ops, operands })
}

/// The weight whose transpose `v` is, as a view of `packed` (the copy
/// [`Tensor::prepack`] made of `v` for `packed_op`), when the backend packed
/// it in a plain layout ([`Tensor::unpacked`]) and nothing else reads the
/// weight or `v`: the graph can then hold that view instead of its own
/// buffer. The weight's index in `graph.weights` and the view.
fn shared_weight(
    graph: &Graph,
    defs: &[Option<Def>],
    uses: &[usize],
    hoisted: &[bool],
    v: crate::graph::ValueId,
    packed: &Tensor,
    packed_op: &Op,
) -> Result<Option<(usize, Tensor)>> {
    let Some(Def::Node(n, 0)) = defs[v.index()] else { return Ok(None) };
    let node = &graph.nodes[n];
    let (Op::Permute { perm }, true) = (&node.op, hoisted[n]) else { return Ok(None) };
    let w = node.inputs[0];
    let Some(Def::Weight(wi)) = defs[w.index()] else { return Ok(None) };
    if uses[w.index()] != 1 || uses[v.index()] != 1 {
        return Ok(None);
    }
    let Some(values) = packed.unpacked(packed_op) else { return Ok(None) };
    let view = {
        let _no_grad = oar_tensor::no_grad();
        values.permute(inverse_permutation(perm))?
    };
    Ok((view.meta() == graph.values[w.index()]).then_some((wi, view)))
}
