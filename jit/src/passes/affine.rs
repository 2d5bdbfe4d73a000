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

/// Folds a per-feature multiply or add that follows a linear layer into the
/// layer's weight and bias: `(x @ W^T + b) * s + t` becomes
/// `x @ (W * s)^T + (b * s + t)`, which is eval-mode `BatchNorm1d` after a
/// `Linear`, as [`fold_affine_into_conv`] is for convolutions.
///
/// The layer is a `matmul` of a 2-d input by a weight `[in, out]` or by the
/// transpose (`permute [1, 0]`) of a weight `[out, in]`, optionally followed
/// by the add of a weight bias. It applies when the product, the bias add
/// and the transpose have no other reader, and the other operand is a float
/// weight of shape `[out]` or `[1, out]` of the product's dtype. A
/// multiply folds into the weight (and the bias, if there is one); an add
/// folds into the bias when there is one (without one, the add is the bias).
pub fn fold_affine_into_linear(g: &mut Graph) -> Result<usize> {
    let mut folds = 0;
    while let Some(f) = find_linear(g) {
        let _no_grad = oar_tensor::no_grad();
        let per_feature = |t: &Tensor, shape: &[usize]| t.reshape(shape.to_vec());
        if let Some(s) = &f.scale {
            let w = g.weight_of(f.weight).expect("matched a weight").clone();
            // The output features are W's rows when transposed, else its columns.
            let shape = if f.transposed { [w.dims()[0], 1] } else { [1, w.dims()[1]] };
            let s = per_feature(s, &shape)?;
            let w = w.mul(&s)?.contiguous()?;
            let wv = g.add_weight(g.fresh_name("fold"), w);
            g.nodes[f.weight_reader].inputs[f.weight_slot] = wv;
        }
        if let Some((add, slot)) = f.bias {
            let bv = g.nodes[add].inputs[slot];
            let b = g.weight_of(bv).expect("matched a weight").clone();
            let shape = b.dims().to_vec();
            let b = match (&f.scale, &f.shift) {
                (Some(s), _) => b.mul(&per_feature(s, &shape)?)?,
                (None, Some(t)) => b.add(&per_feature(t, &shape)?)?,
                (None, None) => unreachable!("find_linear matches one of them"),
            };
            let bv = g.add_weight(g.fresh_name("fold"), b.contiguous()?);
            g.nodes[add].inputs[slot] = bv;
        }
        let (out, kept) = (g.nodes[f.node].outputs[0], f.kept);
        g.replace_uses(out, kept);
        g.prune(&[f.node]);
        folds += 1;
    }
    Ok(folds)
}

/// A multiply or add [`fold_affine_into_linear`] can fold.
struct LinearFold {
    /// The affine node, and the value its readers get instead.
    node: usize,
    kept: crate::graph::ValueId,
    scale: Option<Tensor>,
    shift: Option<Tensor>,
    /// The layer's weight, the node reading it (the matmul or the
    /// transpose) and where, and whether it is stored `[out, in]`.
    weight: crate::graph::ValueId,
    weight_reader: usize,
    weight_slot: usize,
    transposed: bool,
    /// The bias add and the bias's input slot in it.
    bias: Option<(usize, usize)>,
}

fn find_linear(g: &Graph) -> Option<LinearFold> {
    let defs = g.defs();
    let uses = g.use_counts();
    let producer = |v: crate::graph::ValueId| match defs[v.index()] {
        Some(Def::Node(n, 0)) if uses[v.index()] == 1 => Some(n),
        _ => None,
    };
    // The weight of a linear product `m`: (weight, reader, slot, transposed).
    let weight_of_product = |m: usize| {
        let node = &g.nodes[m];
        if !matches!(node.op, Op::Matmul) || g.meta(node.outputs[0]).shape.rank() != 2 {
            return None;
        }
        let rhs = node.inputs[1];
        if is_weight(&defs, rhs) {
            return Some((rhs, m, 1, false));
        }
        let t = producer(rhs)?;
        let tn = &g.nodes[t];
        let transpose = matches!(&tn.op, Op::Permute { perm } if perm == &[1, 0]);
        (transpose && is_weight(&defs, tn.inputs[0])).then_some((tn.inputs[0], t, 0, true))
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Add)) = node.op else { continue };
        for (a, b) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            let meta = g.meta(a);
            if g.meta(node.outputs[0]) != meta || !meta.dtype.is_float() || meta.shape.rank() != 2 {
                continue;
            }
            let out = meta.shape.dims()[1];
            let Some(t) = g.weight_of(b) else { continue };
            if !(t.dims() == [out] || t.dims() == [1, out]) || t.dtype() != meta.dtype {
                continue;
            }
            let Some(p) = producer(a) else { continue };
            // `a` is the product itself, or the product plus a weight bias.
            let (product, bias) = match &g.nodes[p].op {
                Op::Matmul => (p, None),
                Op::Binary(BinaryOp::Add) => {
                    let bias_add = &g.nodes[p];
                    let found = (0..2).find_map(|k| {
                        let (m, bv) = (bias_add.inputs[k], bias_add.inputs[1 - k]);
                        let bt = g.weight_of(bv)?;
                        let ok = (bt.dims() == [out] || bt.dims() == [1, out]) && bt.dtype() == meta.dtype;
                        ok.then_some((producer(m)?, 1 - k))
                    });
                    let Some((m, slot)) = found else { continue };
                    (m, Some((p, slot)))
                }
                _ => continue,
            };
            let Some((weight, weight_reader, weight_slot, transposed)) = weight_of_product(product) else { continue };
            let (scale, shift) = match op {
                BinaryOp::Mul => (Some(t.clone()), None),
                _ if bias.is_some() => (None, Some(t.clone())),
                _ => continue, // an add after a bias-free product is its bias
            };
            return Some(LinearFold {
                node: i,
                kept: a,
                scale,
                shift,
                weight,
                weight_reader,
                weight_slot,
                transposed,
                bias,
            });
        }
    }
    None
}
