use super::is_weight;
use crate::graph::{Graph, ValueId, Weight};
use oar_tensor::op::Op;
use oar_tensor::{Result, Tensor};

/// Evaluates nodes whose inputs are all weights, once, at optimization time;
/// their outputs become weights (`fold.N`), stored contiguous. Views other
/// than reshapes are not folded (see below). Nodes whose output would be much larger than their inputs
/// (an expand of a scalar, say) are left to run, so weights do not grow.
pub fn fold_constants(g: &mut Graph) -> Result<usize> {
    let mut folded = 0;
    let mut removed: Vec<usize> = Vec::new();
    let defs = g.defs();
    let mut weight: Vec<bool> = (0..g.values.len()).map(|v| is_weight(&defs, ValueId(v as u32))).collect();
    for i in 0..g.nodes.len() {
        let node = &g.nodes[i];
        if node.inputs.is_empty() || !node.inputs.iter().all(|v| weight[v.index()]) {
            continue;
        }
        // A permute, expand or slice of a weight stays a view: free at run
        // time, and materializing a transposed weight can make matmul much
        // slower (gemm's m = 1 products read a [k, n] row-major rhs with
        // small n at a sixth of the speed of the transposed view).
        if matches!(node.op, Op::ToDevice(_) | Op::Permute { .. } | Op::Expand { .. } | Op::Slice { .. }) {
            continue;
        }
        let in_elems: usize = node.inputs.iter().map(|&v| g.meta(v).shape.numel()).sum();
        let out_elems: usize = node.outputs.iter().map(|&v| g.meta(v).shape.numel()).sum();
        if out_elems > in_elems.max(4096) {
            continue;
        }
        let inputs: Vec<Tensor> =
            node.inputs.iter().map(|&v| g.weight_of(v).expect("checked: a weight").clone()).collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let outs = {
            let _no_grad = oar_tensor::no_grad();
            Tensor::apply(node.op.clone(), &refs)?
        };
        let values = node.outputs.clone();
        for (v, t) in values.into_iter().zip(outs) {
            weight[v.index()] = true;
            let name = g.fresh_name("fold");
            g.weights.push(Weight { name, value: v, tensor: t.contiguous()? });
        }
        removed.push(i);
        folded += 1;
    }
    g.prune(&removed);
    Ok(folded)
}
