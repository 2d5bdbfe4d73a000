use crate::graph::{Def, Graph};
use oar_tensor::op::Op;
use oar_tensor::Result;

/// Fuses element-wise ops (unary, tensor-scalar, clamp) into the op that
/// produces their input, as [`Op::Fused`] epilogues: conv + bias + ReLU
/// becomes one node whose ReLU runs in place on the convolution's fresh
/// output, and a chain of activations becomes its first op plus one chunked
/// in-place pass. It applies when the producer is a single-output compute op
/// (not a view) with a float result read only by the element-wise op.
pub fn fuse_epilogues(g: &mut Graph) -> Result<usize> {
    let mut fused = 0;
    let mut i = 0;
    // Recomputed only after a rewrite (which shifts node indices).
    let (mut defs, mut uses) = (g.defs(), g.use_counts());
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        let elementwise = matches!(node.op, Op::Unary(_) | Op::BinaryScalar { .. } | Op::Clamp { .. });
        let x = node.inputs[0];
        let producer = match defs[x.index()] {
            Some(Def::Node(p, 0)) if elementwise => Some(p),
            _ => None,
        };
        let Some(p) = producer else {
            i += 1;
            continue;
        };
        let head = &g.nodes[p].op;
        let eligible = !head.is_view()
            && head.num_outputs() == 1
            && !matches!(head, Op::ToDevice(_))
            && g.meta(x).dtype.is_float()
            && g.meta(x) == g.meta(node.outputs[0])
            && uses[x.index()] == 1;
        if !eligible {
            i += 1;
            continue;
        }
        let op = g.nodes[i].op.clone();
        let out = g.nodes[i].outputs[0];
        g.nodes[p].op = match std::mem::replace(&mut g.nodes[p].op, Op::Contiguous) {
            Op::Fused { head, mut epilogue } => {
                epilogue.push(op);
                Op::Fused { head, epilogue }
            }
            head => Op::Fused { head: Box::new(head), epilogue: vec![op] },
        };
        g.replace_uses(out, x);
        g.nodes.remove(i);
        (defs, uses) = (g.defs(), g.use_counts());
        fused += 1;
    }
    g.compact();
    Ok(fused)
}
