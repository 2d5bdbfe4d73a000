use crate::graph::{Def, Graph, ValueId};
use oar_tensor::op::{BinaryOp, Op};
use oar_tensor::{DType, Result, Tensor};

/// Algebraic identities: `x * 1`, `x / 1`, `x + 0`, `x - 0`, `x ^ 1` (scalar
/// or all-ones/all-zeros weights that do not broadcast `x` up), casts to the
/// same dtype, expands/reshapes to the same shape, full slices, and chains of
/// reshapes or permutes collapsed into one. Rewired nodes are left for dead
/// code elimination.
pub fn simplify(g: &mut Graph) -> Result<usize> {
    let mut rewrites = 0;
    let defs = g.defs();
    for i in 0..g.nodes.len() {
        let node = &g.nodes[i];
        let out = node.outputs[0];
        let x = node.inputs[0];
        let same_meta = |v: ValueId| g.meta(v) == g.meta(out);
        let identity_of: Option<ValueId> = match &node.op {
            Op::BinaryScalar { op, scalar } => {
                let s = *scalar;
                let id = match op {
                    BinaryOp::Add | BinaryOp::Sub => s == 0.0,
                    BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow => s == 1.0,
                    _ => false,
                };
                (id && same_meta(x)).then_some(x)
            }
            Op::Binary(op) => {
                let (a, b) = (node.inputs[0], node.inputs[1]);
                let filled = |v: ValueId, value: f64| g.weight_of(v).is_some_and(|t| all_equal(t, value));
                match op {
                    BinaryOp::Add if same_meta(a) && filled(b, 0.0) => Some(a),
                    BinaryOp::Add if same_meta(b) && filled(a, 0.0) => Some(b),
                    BinaryOp::Sub if same_meta(a) && filled(b, 0.0) => Some(a),
                    BinaryOp::Mul if same_meta(a) && filled(b, 1.0) => Some(a),
                    BinaryOp::Mul if same_meta(b) && filled(a, 1.0) => Some(b),
                    BinaryOp::Div if same_meta(a) && filled(b, 1.0) => Some(a),
                    _ => None,
                }
            }
            Op::Cast(_) | Op::Expand { .. } | Op::Reshape { .. } | Op::Contiguous if same_meta(x) => {
                // A contiguous copy only matters for layout, which the graph's
                // consumers never depend on (every kernel takes strides).
                Some(x)
            }
            Op::Slice { dim, start, end, step } => {
                let size = g.meta(x).shape.dims()[*dim];
                (*start == 0 && *end == size && *step == 1).then_some(x)
            }
            Op::Permute { perm } if perm.iter().enumerate().all(|(d, &p)| d == p) => Some(x),
            _ => None,
        };
        if let Some(src) = identity_of {
            g.replace_uses(out, src);
            rewrites += 1;
            continue;
        }
        // Collapse a view of a view into one view of the original.
        let producer = match defs[x.index()] {
            Some(Def::Node(p, 0)) => Some(p),
            _ => None,
        };
        let Some(p) = producer else { continue };
        let (inner, grand) = (g.nodes[p].op.clone(), g.nodes[p].inputs.first().copied());
        match (&g.nodes[i].op, &inner, grand) {
            (Op::Reshape { .. }, Op::Reshape { .. }, Some(src)) => {
                g.nodes[i].inputs[0] = src;
                rewrites += 1;
            }
            (Op::Permute { perm: outer }, Op::Permute { perm: first }, Some(src)) => {
                let perm: Vec<usize> = outer.iter().map(|&d| first[d]).collect();
                g.nodes[i].inputs[0] = src;
                g.nodes[i].op = Op::Permute { perm };
                rewrites += 1;
            }
            _ => {}
        }
    }
    Ok(rewrites)
}

/// Whether every element of a (small) float weight equals `value`.
fn all_equal(t: &Tensor, value: f64) -> bool {
    if !t.dtype().is_float() || t.numel() > 1 << 20 {
        return false;
    }
    match t.to_dtype(DType::F64).and_then(|t| t.to_vec::<f64>()) {
        Ok(v) => v.iter().all(|&x| x == value),
        Err(_) => false,
    }
}
