use super::is_weight;
use crate::graph::{Def, Graph};
use oar_tensor::op::{BinaryOp, Op};
use oar_tensor::{Result, Tensor};

/// Folds a per-output-channel multiply or add that follows a convolution
/// into the convolution's weight and bias: `conv(x, W, b) * s + t` becomes
/// `conv(x, W * s, b * s + t)`. Eval-mode batch norm lowers to exactly that
/// multiply and add once [`super::fold_constants`] has turned its running
/// statistics into per-channel weights, so this is batch-norm folding.
///
/// It applies when the convolution's weight (and bias, if any) are weights,
/// its output has no other reader, and the other operand is a float weight
/// of shape `[1, C, 1, 1]` or `[C, 1, 1]` (`C` output channels).
pub fn fold_affine_into_conv(g: &mut Graph) -> Result<usize> {
    let mut folds = 0;
    loop {
        let Some((i, conv, scale, shift)) = find(g) else { break };
        let c = g.meta(g.nodes[conv].outputs[0]).shape.dims()[1];
        let w = g.weight_of(g.nodes[conv].inputs[1]).expect("matched a weight").clone();
        let bias = g.nodes[conv].inputs.get(2).map(|&b| g.weight_of(b).expect("matched a weight").clone());
        let _no_grad = oar_tensor::no_grad();
        let (w, bias) = match (scale, shift) {
            (Some(s), _) => {
                let s = s.reshape(vec![c])?;
                let w = w.mul(&s.reshape(vec![c, 1, 1, 1])?)?.contiguous()?;
                (w, bias.map(|b| b.mul(&s)).transpose()?)
            }
            (None, Some(t)) => {
                let t = t.reshape(vec![c])?;
                let b = match bias {
                    Some(b) => b.add(&t)?,
                    None => t.to_dtype(w.dtype())?,
                };
                (w, Some(b.contiguous()?))
            }
            (None, None) => unreachable!("find matches one of them"),
        };
        let wv = g.add_weight(g.fresh_name("fold"), w);
        g.nodes[conv].inputs[1] = wv;
        if let Some(b) = bias {
            let bv = g.add_weight(g.fresh_name("fold"), b);
            if g.nodes[conv].inputs.len() == 3 {
                g.nodes[conv].inputs[2] = bv;
            } else {
                g.nodes[conv].inputs.push(bv);
            }
        }
        let (out, conv_out) = (g.nodes[i].outputs[0], g.nodes[conv].outputs[0]);
        g.replace_uses(out, conv_out);
        // The affine node is dead now; drop it so the next search skips it.
        g.prune(&[i]);
        folds += 1;
    }
    Ok(folds)
}

/// The first `mul`/`add` node foldable into its conv: (node, conv node,
/// scale, shift).
fn find(g: &Graph) -> Option<(usize, usize, Option<Tensor>, Option<Tensor>)> {
    let defs = g.defs();
    let uses = g.use_counts();
    for (i, node) in g.nodes.iter().enumerate() {
        let Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Add)) = node.op else { continue };
        let out = node.outputs[0];
        for (a, b) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            let Some(Def::Node(conv, 0)) = defs[a.index()] else { continue };
            let cn = &g.nodes[conv];
            if !matches!(cn.op, Op::Conv2d(_)) || uses[a.index()] != 1 || g.meta(out) != g.meta(a) {
                continue;
            }
            if !cn.inputs[1..].iter().all(|&v| is_weight(&defs, v)) {
                continue;
            }
            let c = g.meta(a).shape.dims()[1];
            let Some(t) = g.weight_of(b) else { continue };
            let per_channel = t.dims() == [1, c, 1, 1] || t.dims() == [c, 1, 1];
            if !per_channel || t.dtype() != g.meta(a).dtype {
                continue;
            }
            let t = t.clone();
            return Some(match op {
                BinaryOp::Mul => (i, conv, Some(t), None),
                _ => (i, conv, None, Some(t)),
            });
        }
    }
    None
}
