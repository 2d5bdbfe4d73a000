//! The backward pass: walk recorded provenance from the roots in reverse
//! topological order, apply one VJP rule per node, accumulate into leaves.

use crate::rules::vjp;
use oar_tensor::{no_grad, set_grad_enabled, DType, Error, Node, Result, Tensor, TensorId};
use std::collections::HashMap;
use std::sync::Arc;

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
    Error::Autograd { msg: msg.into() }
}

type NodeKey = usize;

fn key(node: &Arc<Node>) -> NodeKey {
    Arc::as_ptr(node) as usize
}

/// One node of the walked graph: its recorded inputs, its outputs as seen by
/// consumers (needed by rules such as `exp`, whose VJP uses the output), and
/// the incoming output gradients.
struct Pending {
    node: Arc<Node>,
    inputs: Vec<Tensor>,
    outputs: Vec<Option<Tensor>>,
    grads: Vec<Option<Tensor>>,
}

/// The graph reachable from some roots, nodes in reverse topological order.
struct Graph {
    order: Vec<NodeKey>,
    nodes: HashMap<NodeKey, Pending>,
}

impl Graph {
    fn build(roots: &[Tensor]) -> Result<Graph> {
        let mut nodes: HashMap<NodeKey, Pending> = HashMap::new();
        let mut post: Vec<NodeKey> = Vec::new();
        // Iterative DFS: (node, next input to visit).
        let mut stack: Vec<(Arc<Node>, usize)> = Vec::new();
        let visit = |t: &Tensor, nodes: &mut HashMap<NodeKey, Pending>, stack: &mut Vec<(Arc<Node>, usize)>| {
            let Some(p) = t.provenance() else { return Ok(()) };
            if !t.requires_grad() {
                return Ok(());
            }
            let k = key(&p.node);
            if let Some(pending) = nodes.get_mut(&k) {
                pending.outputs[p.output].get_or_insert_with(|| t.clone());
                return Ok(());
            }
            let inputs = p.node.inputs().ok_or_else(|| {
                err(format!(
                    "the graph through `{}` was already freed by an earlier backward pass; \
                     pass retain_graph: true to backpropagate through it twice",
                    p.node.op.name()
                ))
            })?;
            let n = p.node.outputs.len();
            let mut outputs: Vec<Option<Tensor>> = (0..n).map(|i| p.node.kept_output(i)).collect();
            outputs[p.output] = Some(t.clone());
            nodes.insert(k, Pending { node: p.node.clone(), inputs, outputs, grads: vec![None; n] });
            stack.push((p.node.clone(), 0));
            Ok::<(), Error>(())
        };
        for r in roots {
            visit(r, &mut nodes, &mut stack)?;
            while let Some((node, i)) = stack.pop() {
                let k = key(&node);
                let next = nodes[&k].inputs.get(i).cloned();
                match next {
                    Some(input) => {
                        stack.push((node, i + 1));
                        visit(&input, &mut nodes, &mut stack)?;
                    }
                    None => post.push(k),
                }
            }
        }
        post.reverse();
        Ok(Graph { order: post, nodes })
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
    let mut graph = Graph::build(roots)?;
    let mut leaf_grads: HashMap<TensorId, (Tensor, Option<Tensor>)> = HashMap::new();
    let captured: HashMap<TensorId, usize> =
        capture.unwrap_or(&[]).iter().enumerate().map(|(i, t)| (t.id(), i)).collect();
    let mut captured_grads: Vec<Option<Tensor>> = vec![None; capture.map_or(0, |c| c.len())];

    // Seeds: into the producing node's output slot, or straight to a leaf.
    for (root, seed) in roots.iter().zip(seeds) {
        match root.provenance() {
            Some(p) => {
                let pending = graph.nodes.get_mut(&key(&p.node)).expect("roots are in the graph");
                accumulate(&mut pending.grads[p.output], seed)?;
            }
            None => accumulate(&mut leaf_grads.entry(root.id()).or_insert((root.clone(), None)).1, seed)?,
        }
    }

    for k in std::mem::take(&mut graph.order) {
        let Some(pending) = graph.nodes.remove(&k) else { continue };
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
                Some(p) => {
                    let target = graph.nodes.get_mut(&key(&p.node)).expect("inputs were visited");
                    accumulate(&mut target.grads[p.output], g)?;
                }
                None => accumulate(&mut leaf_grads.entry(input.id()).or_insert((input.clone(), None)).1, g)?,
            }
        }
        if !retain {
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
