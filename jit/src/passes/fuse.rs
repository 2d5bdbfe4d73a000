use crate::graph::{Def, Graph, ValueId};
use oar_tensor::op::{accumulator_inputs, Op};
use oar_tensor::Result;

/// Fuses element-wise ops (unary, tensor-scalar, clamp, binary) into the op
/// that produces their input, as [`Op::Fused`] epilogues: a linear layer's
/// matmul + bias + ReLU becomes one node that adds the bias and applies the
/// ReLU in place on the product's fresh output, a residual add after a
/// convolution runs while each image's output is in cache, and a chain of
/// element-wise ops becomes its first op plus one chunked in-place pass. It
/// applies when the producer is a single-output compute op (not a view) with
/// a float result read only by the element-wise op, of the op's output
/// shape. A binary op takes the producer's output on its left, or on either
/// side for `add` and `mul` (the same bits either way); its other operand
/// becomes an input of the fused node.
pub fn fuse_epilogues(g: &mut Graph) -> Result<usize> {
    let mut fused = 0;
    let mut i = 0;
    // Recomputed only after a rewrite (which shifts node indices).
    let (mut defs, mut uses) = (g.defs(), g.use_counts());
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        // The producer's output among the node's inputs, and the other operand.
        let binary = matches!(node.op, Op::Binary(_));
        let eligible = |x: ValueId| -> Option<usize> {
            let Some(Def::Node(p, 0)) = defs[x.index()] else { return None };
            let head = &g.nodes[p].op;
            let ok = !head.is_view()
                && head.num_outputs() == 1
                && !matches!(head, Op::ToDevice(_))
                && g.meta(x).dtype.is_float()
                && g.meta(x) == g.meta(node.outputs[0])
                && uses[x.index()] == 1;
            ok.then_some(p)
        };
        let found = accumulator_inputs(&node.op).iter().find_map(|&k| {
            let x = node.inputs[k];
            Some((x, eligible(x)?, binary.then(|| node.inputs[1 - k])))
        });
        let Some((x, p, operand)) = found else {
            i += 1;
            continue;
        };
        let op = node.op.clone();
        let out = node.outputs[0];
        g.nodes[p].op = match std::mem::replace(&mut g.nodes[p].op, Op::Contiguous) {
            Op::Fused { head, mut epilogue } => {
                epilogue.push(op);
                Op::Fused { head, epilogue }
            }
            head => Op::Fused { head: Box::new(head), epilogue: vec![op] },
        };
        g.replace_uses(out, x);
        match operand {
            // The operand may be computed after the producer: the fused node
            // takes the element-wise node's place, where both are defined.
            Some(y) => {
                let mut fused_node = g.nodes.remove(p);
                fused_node.inputs.push(y);
                g.nodes[i - 1] = fused_node;
            }
            None => {
                g.nodes.remove(i);
            }
        }
        (defs, uses) = (g.defs(), g.use_counts());
        fused += 1;
    }
    g.compact();
    Ok(fused)
}
