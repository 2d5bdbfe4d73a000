//! A dynamic batch dimension. Two traces of the same code at batch sizes
//! `B` and `B + 1`, optimized alike, differ exactly where the batch size
//! enters: value shapes and the shape attributes of reshapes and expands.
//! [`BatchSpec`] records those positions; [`specialize`] writes any other
//! batch size into them, and the verifier re-checks every node.

use crate::graph::{Graph, ValueId};
use oar_tensor::op::Op;
use oar_tensor::{Error, Result, Shape};

/// Where the batch size appears in a graph traced at batch `traced`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSpec {
    pub traced: usize,
    /// `(value, axis)`: that dim of that value is the batch size.
    pub values: Vec<(ValueId, usize)>,
    /// `(node, index)`: that entry of the node's reshape/expand shape is the batch size.
    pub attrs: Vec<(usize, usize)>,
}

fn not_dynamic(msg: impl Into<String>) -> Error {
    Error::invalid_arg("dynamic batch", msg)
}

/// The shape attribute of an op whose attribute may carry the batch size.
fn shape_attr(op: &Op) -> Option<&Vec<usize>> {
    match op {
        Op::Reshape { shape } | Op::Expand { shape } => Some(shape),
        _ => None,
    }
}

/// Compares graphs traced (and optimized) at batch `traced` and `traced + 1`.
pub fn batch_spec(a: &Graph, b: &Graph, traced: usize) -> Result<BatchSpec> {
    let (bb, b1) = (traced, traced + 1);
    let same_shape = a.values.len() == b.values.len()
        && a.nodes.len() == b.nodes.len()
        && a.weights.len() == b.weights.len()
        && a.inputs.iter().map(|i| i.value).eq(b.inputs.iter().map(|i| i.value))
        && a.outputs == b.outputs;
    if !same_shape {
        return Err(not_dynamic("the traces at two batch sizes have different structures"));
    }
    for (wa, wb) in a.weights.iter().zip(&b.weights) {
        if wa.name != wb.name || wa.value != wb.value || wa.tensor.meta() != wb.tensor.meta() {
            return Err(not_dynamic(format!("weight `{}` depends on the batch size", wa.name)));
        }
    }
    let mut spec = BatchSpec { traced, values: Vec::new(), attrs: Vec::new() };
    for (i, (ma, mb)) in a.values.iter().zip(&b.values).enumerate() {
        if ma.dtype != mb.dtype || ma.shape.rank() != mb.shape.rank() {
            return Err(not_dynamic(format!("value %{i} changes dtype or rank with the batch size")));
        }
        for (axis, (&da, &db)) in ma.shape.dims().iter().zip(mb.shape.dims()).enumerate() {
            if (da, db) == (bb, b1) {
                spec.values.push((ValueId(i as u32), axis));
            } else if da != db {
                return Err(not_dynamic(format!("value %{i} has dim {da} vs {db}: not the batch size")));
            }
        }
    }
    for (n, (na, nb)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        if na.inputs != nb.inputs || na.outputs != nb.outputs {
            return Err(not_dynamic(format!("node {n} is wired differently at another batch size")));
        }
        if na.op == nb.op {
            continue;
        }
        match (shape_attr(&na.op), shape_attr(&nb.op)) {
            (Some(sa), Some(sb)) if sa.len() == sb.len() && na.op.name() == nb.op.name() => {
                for (k, (&x, &y)) in sa.iter().zip(sb).enumerate() {
                    if (x, y) == (bb, b1) {
                        spec.attrs.push((n, k));
                    } else if x != y {
                        return Err(not_dynamic(format!("node {n} ({}) scales with the batch size", na.op.name())));
                    }
                }
            }
            _ => return Err(not_dynamic(format!("node {n} ({}) depends on the batch size", na.op.name()))),
        }
    }
    if !a.inputs.iter().any(|i| spec.values.contains(&(i.value, 0))) {
        return Err(not_dynamic("no input has the batch size as its first dim"));
    }
    Ok(spec)
}

/// `g` (traced at `spec.traced`) for batch size `n`, verified.
pub fn specialize(g: &Graph, spec: &BatchSpec, n: usize) -> Result<Graph> {
    if n == 0 {
        return Err(not_dynamic("the batch size must be at least 1"));
    }
    let mut out = g.clone();
    for &(v, axis) in &spec.values {
        let meta = out.values.get_mut(v.index()).ok_or_else(|| not_dynamic(format!("no value {v}")))?;
        let mut dims = meta.shape.dims().to_vec();
        let d = dims.get_mut(axis).ok_or_else(|| not_dynamic(format!("value {v} has no axis {axis}")))?;
        *d = n;
        meta.shape = Shape::new(&dims);
    }
    for &(node, k) in &spec.attrs {
        let op = &mut out.nodes.get_mut(node).ok_or_else(|| not_dynamic(format!("no node {node}")))?.op;
        let (Op::Reshape { shape } | Op::Expand { shape }) = op else {
            return Err(not_dynamic(format!("node {node} has no shape attribute")));
        };
        *shape.get_mut(k).ok_or_else(|| not_dynamic(format!("node {node} has no shape entry {k}")))? = n;
    }
    out.verify()?;
    Ok(out)
}
