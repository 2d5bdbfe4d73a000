use crate::graph::Graph;
use oar_tensor::Result;

/// Removes nodes none of whose outputs reach a graph output, and weights
/// nothing reads. Graph inputs stay (they are the graph's signature).
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
    let removed = before - g.nodes.len() - g.weights.len();
    g.compact();
    Ok(removed)
}
