//! The backward pass: walk recorded provenance from the roots in reverse
//! topological order, apply one VJP rule per node, accumulate into leaves.

use crate::rules::vjp;
use oar_tensor::{
    no_grad, set_grad_enabled, DType, Error, ErrorKind, Node, NodeInputs, NodeRef, Result, Tensor, TensorId,
};
use smallvec::{smallvec, SmallVec};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// How a backward pass treats the graph it walks.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackwardOptions {
    /// Keep the recorded graph (and the buffers it holds) so it can be walked
    /// again. Off by default: each node releases its inputs once processed.
    pub retain_graph: bool,
    /// Record the backward pass itself, so gradients can be differentiated
    /// again (implies `retain_graph`).
    pub create_graph: bool,
}

fn err(msg: impl Into<String>) -> Error {
    Error::from(ErrorKind::Autograd { msg: msg.into() })
}

type NodeKey = usize;

fn key(node: &NodeRef) -> NodeKey {
    &**node as *const Node as usize
}

/// Hashes the engine's keys (node addresses, tensor ids), which are unique
/// integers already: one widening multiply mixes them. SipHash's resistance
/// to chosen keys buys nothing here and cost ~15% of a small backward pass.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let p = u128::from(n ^ self.0) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// One node of the walked graph: its recorded inputs, its outputs as seen by
/// consumers (needed by rules such as `exp`, whose VJP uses the output), and
/// the incoming output gradients.
struct Pending {
    node: NodeRef,
    inputs: NodeInputs,
    outputs: SmallVec<[Option<Tensor>; 2]>,
    grads: SmallVec<[Option<Tensor>; 2]>,
}

/// The graph reachable from some roots: `order` indexes `nodes` in reverse
/// topological order; `index` finds a node's slot.
struct Graph {
    order: Vec<usize>,
    nodes: Vec<Option<Pending>>,
    index: KeyMap<NodeKey, usize>,
    retain: bool,
}

impl Graph {
    /// With `retain`, nodes keep their inputs for another pass; without, the
    /// walk moves them out (releasing each node as it is reached).
    fn build(roots: &[Tensor], retain: bool) -> Result<Graph> {
        // Room for a typical small graph up front: growing these shows up in
        // the backward pass of small models.
        const TYPICAL: usize = 32;
        let mut g = Graph {
            order: Vec::with_capacity(TYPICAL),
            nodes: Vec::with_capacity(TYPICAL),
            index: KeyMap::with_capacity_and_hasher(TYPICAL, Default::default()),
            retain,
        };
        // Iterative DFS: (slot, next input to visit).
        let mut stack: Vec<(usize, usize)> = Vec::with_capacity(TYPICAL);
        for r in roots {
            if let Some(slot) = g.visit(r)? {
                stack.push((slot, 0));
            }
            while let Some((slot, i)) = stack.pop() {
                let next = g.pending(slot).inputs.get(i).cloned();
                match next {
                    Some(input) => {
                        stack.push((slot, i + 1));
                        if let Some(s) = g.visit(&input)? {
                            stack.push((s, 0));
                        }
                    }
                    None => g.order.push(slot),
                }
            }
        }
        g.order.reverse();
        Ok(g)
    }

    /// Adds the node that produced `t` (if it needs a gradient); returns its
    /// slot when it is new, so the walk descends into it.
    fn visit(&mut self, t: &Tensor) -> Result<Option<usize>> {
        let Some(p) = t.provenance() else { return Ok(None) };
        if !t.requires_grad() {
            return Ok(None);
        }
        let k = key(&p.node);
        if let Some(&slot) = self.index.get(&k) {
            self.pending(slot).outputs[p.output].get_or_insert_with(|| t.clone());
            return Ok(None);
        }
        let inputs = if self.retain { p.node.inputs() } else { p.node.take_inputs() };
        let inputs = inputs.ok_or_else(|| {
            err(format!(
                "the graph through `{}` was already freed by an earlier backward pass; \
                 pass retain_graph: true to backpropagate through it twice",
                p.node.op.name()
            ))
        })?;
        let n = p.node.outputs.len();
        let mut outputs: SmallVec<[Option<Tensor>; 2]> = (0..n).map(|i| p.node.kept_output(i)).collect();
        outputs[p.output] = Some(t.clone());
        let slot = self.nodes.len();
        self.nodes.push(Some(Pending { node: p.node.clone(), inputs, outputs, grads: smallvec![None; n] }));
        self.index.insert(k, slot);
        Ok(Some(slot))
    }

    fn pending(&mut self, slot: usize) -> &mut Pending {
        self.nodes[slot].as_mut().expect("a node is taken only when processed, after its consumers")
    }

    /// The gradient slot of output `output` of `node`, which the walk visited.
    fn grad_slot(&mut self, node: &NodeRef, output: usize) -> &mut Option<Tensor> {
        let slot = self.index[&key(node)];
        &mut self.pending(slot).grads[output]
    }
}

/// Adds `g` to `slot` (gradient accumulation).
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(prev) => prev.add(&g)?,
        None => g,
    });
    Ok(())
}

/// What to compute: gradients flowing from `roots` (seeded with `seeds`).
/// With `capture`, the gradients of those tensors are returned instead of
/// being accumulated into leaves.
pub(crate) fn run(
    roots: &[Tensor],
    seeds: Vec<Tensor>,
    opts: BackwardOptions,
    capture: Option<&[Tensor]>,
) -> Result<Vec<Option<Tensor>>> {
    let retain = opts.retain_graph || opts.create_graph;
    let _mode = set_grad_enabled(opts.create_graph);
    let mut graph = Graph::build(roots, retain)?;
    let mut leaf_grads: KeyMap<TensorId, (Tensor, Option<Tensor>)> = KeyMap::default();
    let captured: KeyMap<TensorId, usize> =
        capture.unwrap_or(&[]).iter().enumerate().map(|(i, t)| (t.id(), i)).collect();
    let mut captured_grads: Vec<Option<Tensor>> = vec![None; capture.map_or(0, |c| c.len())];

    // Seeds: into the producing node's output slot, or straight to a leaf.
    for (root, seed) in roots.iter().zip(seeds) {
        match root.provenance() {
            Some(p) => accumulate(graph.grad_slot(&p.node, p.output), seed)?,
            None => accumulate(&mut leaf_grads.entry(root.id()).or_insert((root.clone(), None)).1, seed)?,
        }
    }

    for slot in std::mem::take(&mut graph.order) {
        let Some(pending) = graph.nodes[slot].take() else { continue };
        // Non-leaf gradients requested by retain_grad or by `grad()`.
        for (out, g) in pending.outputs.iter().zip(&pending.grads) {
            if let (Some(out), Some(g)) = (out, g) {
                if let Some(&i) = captured.get(&out.id()) {
                    accumulate(&mut captured_grads[i], g.clone())?;
                } else if out.retains_grad() && capture.is_none() {
                    let mut slot = out.grad();
                    accumulate(&mut slot, detach_unless(g, opts.create_graph))?;
                    out.set_grad(slot);
                }
            }
        }
        if pending.grads.iter().all(Option::is_none) {
            continue;
        }
        let input_grads = vjp(&pending.node.op, &pending.inputs, &pending.outputs, &pending.grads)?;
        debug_assert_eq!(input_grads.len(), pending.inputs.len());
        for (input, g) in pending.inputs.iter().zip(input_grads) {
            let Some(g) = g else { continue };
            if !input.requires_grad() {
                continue;
            }
            check_grad(&pending.node, input, &g)?;
            match input.provenance() {
                Some(p) => accumulate(graph.grad_slot(&p.node, p.output), g)?,
                None => accumulate(&mut leaf_grads.entry(input.id()).or_insert((input.clone(), None)).1, g)?,
            }
        }
        // The walk already took the inputs; what is left are kept outputs.
        if !retain && pending.node.outputs.len() > 1 {
            pending.node.release();
        }
    }

    for (id, (leaf, g)) in leaf_grads {
        let Some(g) = g else { continue };
        if let Some(&i) = captured.get(&id) {
            accumulate(&mut captured_grads[i], g)?;
        } else if capture.is_none() {
            let mut slot = leaf.grad();
            accumulate(&mut slot, detach_unless(&g, opts.create_graph))?;
            leaf.set_grad(slot);
        }
    }
    Ok(captured_grads)
}

fn detach_unless(g: &Tensor, keep_graph: bool) -> Tensor {
    if keep_graph {
        g.clone()
    } else {
        g.detach()
    }
}

/// A rule's gradient must have its input's shape and dtype; anything else is
/// a bug in the rule, reported rather than propagated.
fn check_grad(node: &Node, input: &Tensor, g: &Tensor) -> Result<()> {
    if g.shape() != input.shape() || g.dtype() != input.dtype() {
        return Err(err(format!(
            "internal error: the VJP of `{}` gave a {:?} {} gradient for a {:?} {} input",
            node.op.name(),
            g.dims(),
            g.dtype(),
            input.dims(),
            input.dtype()
        )));
    }
    Ok(())
}

/// Seeds for `roots`: the given gradients (checked), or ones for scalars.
pub(crate) fn seeds(roots: &[Tensor], grads: Option<&[Tensor]>) -> Result<Vec<Tensor>> {
    let _g = no_grad();
    roots
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !r.requires_grad() {
                return Err(err(format!(
                    "tensor {i} ({:?} {}) does not require grad and has no recorded graph; \
                     mark its inputs with with_requires_grad(true)",
                    r.dims(),
                    r.dtype()
                )));
            }
            match grads {
                Some(gs) => {
                    let g = &gs[i];
                    if g.shape() != r.shape() || g.dtype() != r.dtype() {
                        return Err(err(format!(
                            "gradient {i} is {:?} {} but the tensor is {:?} {}",
                            g.dims(),
                            g.dtype(),
                            r.dims(),
                            r.dtype()
                        )));
                    }
                    if g.device() != r.device() {
                        return Err(err(format!(
                            "gradient {i} is on {} but the tensor is on {}",
                            g.device(),
                            r.device()
                        )));
                    }
                    Ok(g.clone())
                }
                None => {
                    if r.numel() != 1 {
                        return Err(err(format!(
                            "backward() needs a scalar (one element) but the tensor has shape {:?}; \
                             use backward_with(grad) to pass the output gradient",
                            r.dims()
                        )));
                    }
                    debug_assert!(r.dtype() != DType::Bool);
                    Tensor::ones(r.shape().clone(), r.dtype(), r.device())
                }
            }
        })
        .collect()
}
