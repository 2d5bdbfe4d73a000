use crate::graph::Graph;
use oar_tensor::Result;
use std::collections::HashMap;

/// Merges nodes that apply the same op (same attributes) to the same inputs,
/// and weights that share one buffer and layout.
pub fn eliminate_common_subexpressions(g: &mut Graph) -> Result<usize> {
    let mut merged = 0;
    // Weights: the same tensor captured twice (a parameter read under two
    // names, or a constant used in two places).
    let mut first_weight = HashMap::new();
    let mut dup_weights = Vec::new();
    for w in &g.weights {
        let key = (w.tensor.id(), w.tensor.meta());
        match first_weight.get(&key) {
            Some(&v) => dup_weights.push((w.value, v)),
            None => {
                first_weight.insert(key, w.value);
            }
        }
    }
    for (dup, keep) in dup_weights {
        g.replace_uses(dup, keep);
        merged += 1;
    }
    // The op's Debug form carries every attribute; f64 attributes print in a
    // round-trip form, so equal strings mean equal attributes.
    let mut seen: HashMap<(String, Vec<u32>), usize> = HashMap::new();
    let mut removed: Vec<usize> = Vec::new();
    for i in 0..g.nodes.len() {
        let key = (format!("{:?}", g.nodes[i].op), g.nodes[i].inputs.iter().map(|v| v.0).collect());
        match seen.get(&key) {
            Some(&j) => {
                for k in 0..g.nodes[i].outputs.len() {
                    let (old, new) = (g.nodes[i].outputs[k], g.nodes[j].outputs[k]);
                    g.replace_uses(old, new);
                }
                removed.push(i);
                merged += 1;
            }
            None => {
                seen.insert(key, i);
            }
        }
    }
    g.prune(&removed);
    Ok(merged)
}
