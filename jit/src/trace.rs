//! Tracing: run eager code once with provenance recording on, then walk the
//! outputs' provenance back to the inputs to build a [`Graph`].

use crate::graph::{Graph, Input, Node, ValueId};
use oar_tensor::{Error, Result, Storage, Tensor, TensorId};
use std::collections::HashMap;

/// Runs `f` on fresh handles to `inputs` with a trace active and returns the
/// graph of what it computed. `named` names leaf tensors the code reads
/// (state-dict keys of parameters and buffers); any other leaf it reads
/// becomes a constant weight `const.N`. Inputs are named `input0`, `input1`, ...
///
/// A trace follows one path through host control flow, as `torch.jit.trace`.
/// Code that reads tensor data on the host (`item`, `to_vec`) fails with an
/// error naming the read, rather than baking the value into the graph.
pub fn trace<F>(inputs: &[Tensor], named: &[(String, Tensor)], f: F) -> Result<Graph>
where
    F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
{
    // Fresh leaf handles (requiring grad as the caller's do, so a traced
    // training step can differentiate with respect to inputs): they mark the
    // graph inputs even if the caller's tensors are results of recorded ops.
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.with_requires_grad(t.requires_grad())).collect::<Result<_>>()?;
    let outputs = {
        let _no_grad = oar_tensor::no_grad();
        let _trace = oar_tensor::start_trace();
        f(&leaves)?
    };
    if outputs.is_empty() {
        return Err(Error::invalid_arg("trace", "the traced function returned no tensors"));
    }
    let mut b = Builder {
        graph: Graph::default(),
        leaves: HashMap::new(),
        nodes: HashMap::new(),
        inputs: Vec::new(),
        names: named.to_vec(),
    };
    for (i, t) in leaves.iter().enumerate() {
        let value = b.graph.add_value(t.meta());
        b.graph.inputs.push(Input { name: format!("input{i}"), value });
        b.leaves.insert(t.id(), value);
        b.inputs.push((t.clone(), value));
    }
    for t in &outputs {
        let v = b.value_of(t)?;
        b.graph.outputs.push(v);
    }
    b.graph.compact();
    b.graph.verify()?;
    Ok(b.graph)
}

struct Builder {
    graph: Graph,
    leaves: HashMap<TensorId, ValueId>,
    /// Recorded node (by address) -> the values of its outputs.
    nodes: HashMap<usize, Vec<ValueId>>,
    inputs: Vec<(Tensor, ValueId)>,
    names: Vec<(String, Tensor)>,
}

/// The same data seen the same way: leaves are matched by buffer and layout,
/// not by handle, since parameter handles are re-wrapped (`state_dict`
/// detaches, `Param::replace` re-wraps) without copying.
fn same_view(a: &Tensor, b: &Tensor) -> bool {
    a.id() == b.id()
        || (Storage::ptr_eq(a.storage(), b.storage()) && a.layout() == b.layout() && a.dtype() == b.dtype())
}

impl Builder {
    /// The value of `t`, emitting the nodes that produce it (iteratively, so
    /// deep graphs do not exhaust the stack).
    fn value_of(&mut self, t: &Tensor) -> Result<ValueId> {
        // (tensor, inputs already pushed)
        let mut stack: Vec<(Tensor, bool)> = vec![(t.clone(), false)];
        while let Some((t, expanded)) = stack.pop() {
            if self.known(&t).is_some() {
                continue;
            }
            let Some(p) = t.provenance() else {
                self.leaf(&t);
                continue;
            };
            let inputs = p.node.inputs().ok_or_else(|| {
                Error::invalid_arg("trace", format!("the recorded inputs of `{}` were released", p.node.op.name()))
            })?;
            if !expanded {
                stack.push((t.clone(), true));
                for i in inputs.iter().rev() {
                    if self.known(i).is_none() {
                        stack.push((i.clone(), false));
                    }
                }
                continue;
            }
            let ins = inputs.iter().map(|i| self.known(i).expect("inputs are emitted first")).collect();
            let outs: Vec<ValueId> = p.node.outputs.iter().map(|m| self.graph.add_value(m.clone())).collect();
            self.graph.nodes.push(Node { op: p.node.op.clone(), inputs: ins, outputs: outs.clone() });
            self.nodes.insert(node_key(&t), outs);
        }
        Ok(self.known(t).expect("emitted above"))
    }

    fn known(&self, t: &Tensor) -> Option<ValueId> {
        match t.provenance() {
            Some(p) => self.nodes.get(&node_key(t)).map(|outs| outs[p.output]),
            None => self.leaves.get(&t.id()).copied(),
        }
    }

    fn leaf(&mut self, t: &Tensor) {
        if let Some(&(_, v)) = self.inputs.iter().find(|(i, _)| same_view(i, t)) {
            self.leaves.insert(t.id(), v);
            return;
        }
        if let Some(v) = self.graph.weights.iter().find(|w| same_view(&w.tensor, t)).map(|w| w.value) {
            self.leaves.insert(t.id(), v);
            return;
        }
        let name = match self.names.iter().find(|(_, n)| same_view(n, t)) {
            Some((n, _)) => n.clone(),
            None => self.graph.fresh_name("const"),
        };
        // A detached handle: the graph keeps the data, not an autograd leaf.
        let v = self.graph.add_weight(name, t.detach());
        self.leaves.insert(t.id(), v);
    }
}

fn node_key(t: &Tensor) -> usize {
    let p = t.provenance().expect("a recorded tensor");
    &*p.node as *const oar_tensor::Node as usize
}
