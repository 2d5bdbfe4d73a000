use crate::graph::Graph;
use oar_tensor::op::Op;
use oar_tensor::Result;

/// Removes nodes none of whose outputs reach a graph output, and weights
/// nothing reads; a `max_pool2d` whose indices nobody reads becomes
/// `max_pool2d_values` (the indices cost more than the maxima). Graph inputs
/// stay (they are the graph's signature).
pub fn eliminate_dead_code(g: &mut Graph) -> Result<usize> {
    let mut live = vec![false; g.values.len()];
    for v in &g.outputs {
        live[v.index()] = true;
    }
    let mut keep = vec![false; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|o| live[o.index()]) {
            keep[i] = true;
            for v in &node.inputs {
                live[v.index()] = true;
            }
        }
    }
    let before = g.nodes.len() + g.weights.len();
    let mut k = keep.iter();
    g.nodes.retain(|_| *k.next().expect("one flag per node"));
    g.weights.retain(|w| live[w.value.index()]);
    let mut rewrites = before - g.nodes.len() - g.weights.len();
    for node in &mut g.nodes {
        if let (Op::MaxPool2d(p), [_, indices]) = (&node.op, node.outputs.as_slice()) {
            if !live[indices.index()] {
                node.op = Op::MaxPool2dValues(*p);
                node.outputs.truncate(1);
                rewrites += 1;
            }
        }
    }
    g.compact();
    Ok(rewrites)
}
