//! Each pass on small graphs made for it: what it must remove or rewrite,
//! the verifier after it, and outputs equal to the unoptimized graph's.

mod common;

use common::{randn, rel_diff};
use oar_jit::passes::{
    eliminate_common_subexpressions, eliminate_dead_code, fold_affine_into_linear, fold_constants, fuse_epilogues,
    simplify, Pass,
};
use oar_jit::{trace, Graph, Plan};
use oar_tensor::{Result, Tensor};

type Body = fn(&[Tensor], &Tensor) -> Result<Vec<Tensor>>;

/// Traces `f(inputs, w)` with `w` a named weight.
fn graph(x: &Tensor, w: &Tensor, f: Body) -> Graph {
    trace(std::slice::from_ref(x), &[("w".to_string(), w.clone())], |xs| f(xs, w)).unwrap()
}

/// Runs the passes, verifying after each, and checks outputs are unchanged.
fn run(mut g: Graph, x: &Tensor, passes: &[Pass]) -> Graph {
    let before = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(x)).unwrap();
    for pass in passes {
        pass(&mut g).unwrap();
        g.verify().unwrap();
    }
    let after = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(x)).unwrap();
    for (a, b) in before.iter().zip(&after) {
        assert!(rel_diff(a, b) <= 1e-6, "outputs changed:\n{g}");
    }
    g
}

fn op_names(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

#[test]
fn dead_code_is_removed() {
    let (x, w) = (randn(&[4, 4]), randn(&[4, 4]));
    let g = graph(&x, &w, |x, w| {
        let _unused = x[0].matmul(w)?.exp()?;
        Ok(vec![x[0].relu()?])
    });
    // A trace only records what reaches the outputs; dead code appears after
    // other rewrites, so make some: rewire the relu's input past an exp.
    let mut g2 = graph(&x, &w, |x, _| Ok(vec![x[0].exp()?.relu()?]));
    let exp_out = g2.nodes[0].outputs[0];
    let input = g2.inputs[0].value;
    g2.nodes[1].inputs[0] = input;
    assert_eq!(g2.use_counts()[exp_out.index()], 0);
    let g2 = run(g2, &x, &[eliminate_dead_code]);
    assert_eq!(op_names(&g2), ["relu"]);
    assert_eq!(op_names(&g), ["relu"], "the trace itself skips unused work");
    assert!(g.weights.is_empty());
}

#[test]
fn common_subexpressions_merge() {
    let (x, w) = (randn(&[8]), randn(&[8]));
    let g = graph(&x, &w, |x, w| {
        let a = x[0].mul(w)?.exp()?;
        let b = x[0].mul(w)?.exp()?;
        Ok(vec![a.add(&b)?])
    });
    assert_eq!(g.nodes.len(), 5);
    let g = run(g, &x, &[eliminate_common_subexpressions]);
    assert_eq!(op_names(&g), ["mul", "exp", "add"]);
}

#[test]
fn constants_fold() {
    let (x, w) = (randn(&[6]), randn(&[6]));
    let g = graph(&x, &w, |x, w| {
        let scale = w.abs()?.add_scalar(1.0)?.sqrt()?; // weights only
        Ok(vec![x[0].mul(&scale)?])
    });
    assert_eq!(g.nodes.len(), 4);
    let g = run(g, &x, &[fold_constants]);
    assert_eq!(op_names(&g), ["mul"]);
    assert_eq!(g.weights.len(), 1);
    assert!(g.weights[0].name.starts_with("fold."));
}

#[test]
fn transposed_weights_stay_views_and_reshapes_fold() {
    let (x, w) = (randn(&[2, 5]), randn(&[3, 5]));
    let g = graph(&x, &w, |x, w| Ok(vec![x[0].matmul(&w.t()?)?.add(&w.sum(1, false)?.reshape([1, 3])?)?]));
    let g = run(g, &x, &[fold_constants]);
    assert_eq!(op_names(&g), ["permute", "matmul", "add"], "\n{g}");
    assert_eq!(g.weights.len(), 2);
    assert_eq!(g.weights[1].tensor.dims(), &[1, 3]);
}

#[test]
fn algebraic_identities_simplify() {
    let (x, w) =
        (randn(&[2, 3, 4]), Tensor::ones([2, 3, 4], oar_tensor::DType::F32, &oar_tensor::Device::cpu()).unwrap());
    let g = graph(&x, &w, |x, w| {
        let y = x[0].mul_scalar(1.0)?.add_scalar(0.0)?.div_scalar(1.0)?; // identities
        let y = y.mul(w)?; // all-ones weight of the same shape
        let y = y.reshape([6, 4])?.reshape([24])?.reshape([2, 12])?; // reshape chain
        let z = x[0].permute([2, 0, 1])?.permute([1, 2, 0])?; // a transpose pair
        Ok(vec![y.tanh()?, z.exp()?])
    });
    let g = run(g, &x, &[simplify, simplify, eliminate_dead_code]);
    assert_eq!(op_names(&g), ["reshape", "tanh", "exp"], "\n{g}");
}

#[test]
fn reshape_and_permute_chains_collapse_to_one_view() {
    let (x, w) = (randn(&[2, 3, 4]), randn(&[1]));
    let g = graph(&x, &w, |x, _| {
        let a = x[0].permute([1, 0, 2])?.permute([2, 0, 1])?;
        Ok(vec![a.sigmoid()?])
    });
    let g = run(g, &x, &[simplify, eliminate_dead_code]);
    assert_eq!(op_names(&g), ["permute", "sigmoid"]);
}

#[test]
fn element_wise_ops_fuse_into_their_producer() {
    let (x, w) = (randn(&[2, 3, 8, 8]), randn(&[4, 3, 3, 3]));
    let g = graph(&x, &w, |x, w| {
        let y = x[0].conv2d(w, None, &Default::default())?.relu()?; // conv + activation
        let z = y.mul_scalar(2.0)?.tanh()?.clamp(Some(-0.5), Some(0.5))?; // a chain into the same node
        let side = x[0].exp()?; // read twice: its producer stays unfused
        Ok(vec![z, side.sigmoid()?.add(&side)?])
    });
    let g = run(g, &x, &[fuse_epilogues]);
    // The add takes the sigmoid's output: one node reading `side` twice.
    assert_eq!(op_names(&g), ["fused", "exp", "fused"], "\n{g}");
    assert_eq!(g.nodes[2].inputs, [g.nodes[1].outputs[0]; 2]);
    match &g.nodes[0].op {
        oar_tensor::op::Op::Fused { head, epilogue } => {
            assert_eq!(head.name(), "conv2d");
            assert_eq!(epilogue.iter().map(|o| o.name()).collect::<Vec<_>>(), ["relu", "mul_scalar", "tanh", "clamp"]);
        }
        other => panic!("expected a fused node, got {other:?}"),
    }
}

/// Traces `f` over `x` with named weights, fuses, and checks the fused plan
/// gives the unfused graph's outputs bit for bit.
fn fused_graph(x: &Tensor, weights: &[Tensor], f: impl Fn(&Tensor, &[Tensor]) -> Result<Tensor>) -> Graph {
    let named: Vec<(String, Tensor)> = weights.iter().enumerate().map(|(i, w)| (format!("w{i}"), w.clone())).collect();
    let mut g = trace(std::slice::from_ref(x), &named, |xs| Ok(vec![f(&xs[0], weights)?])).unwrap();
    let before = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(x)).unwrap();
    fuse_epilogues(&mut g).unwrap();
    g.verify().unwrap();
    let after = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(x)).unwrap();
    assert_eq!(before[0].to_vec::<f32>().unwrap(), after[0].to_vec::<f32>().unwrap(), "\n{g}");
    g
}

/// The head and epilogue of a fused node.
fn fused_parts(g: &Graph, node: usize) -> (&'static str, Vec<&'static str>) {
    match &g.nodes[node].op {
        oar_tensor::op::Op::Fused { head, epilogue } => (head.name(), epilogue.iter().map(|o| o.name()).collect()),
        other => panic!("node {node}: expected a fused node, got {other:?}\n{g}"),
    }
}

#[test]
fn binary_ops_fuse_with_their_other_operand_as_an_input() {
    // A linear layer: matmul + bias row + ReLU, one node with three inputs.
    let x = randn(&[5, 16]);
    let g = fused_graph(&x, &[randn(&[8, 16]), randn(&[8])], |x, w| x.matmul(&w[0].t()?)?.add(&w[1])?.relu());
    assert_eq!(op_names(&g), ["permute", "fused"], "\n{g}");
    assert_eq!(fused_parts(&g, 1), ("matmul", vec!["add", "relu"]));
    assert_eq!(g.nodes[1].inputs.len(), 3);
    // A residual block's tail: conv, add the block's input, scale per
    // channel ([c, 1, 1], read broadcast), ReLU; batch 3 so the direct
    // kernels' per-image epilogue reads operands at each image's offset.
    let x = randn(&[3, 4, 9, 9]);
    let p = oar_tensor::Conv2dParams { padding: [1, 1], ..Default::default() };
    let g = fused_graph(&x, &[randn(&[4, 4, 3, 3]), randn(&[4, 1, 1])], |x, w| {
        x.conv2d(&w[0], None, &p)?.add(x)?.mul(&w[1])?.relu()
    });
    assert_eq!(op_names(&g), ["fused"], "\n{g}");
    assert_eq!(fused_parts(&g, 0), ("conv2d", vec!["add", "mul", "relu"]));
    // The product on the right: fused for add and mul, not for sub.
    let x = randn(&[4, 6]);
    let g = fused_graph(&x, &[randn(&[6, 6])], |x, w| x.mul(&x.matmul(&w[0])?));
    assert_eq!(op_names(&g), ["fused"], "\n{g}");
    assert_eq!(fused_parts(&g, 0), ("matmul", vec!["mul"]));
    let g = fused_graph(&x, &[randn(&[6, 6])], |x, w| x.sub(&x.matmul(&w[0])?));
    assert_eq!(op_names(&g), ["matmul", "sub"], "\n{g}");
}

#[test]
fn a_binary_fusion_waits_for_an_operand_computed_after_the_producer() {
    let x = randn(&[3, 7]);
    // The exp comes first, the sin after it; the fused node goes where the
    // add was, after both, and the verifier checks the order.
    let g = fused_graph(&x, &[], |x, _| {
        let a = x.exp()?;
        let b = x.sin()?.mul_scalar(3.0)?;
        a.add(&b)?.sigmoid()
    });
    assert_eq!(op_names(&g), ["fused", "fused"], "\n{g}");
    assert_eq!(fused_parts(&g, 0), ("sin", vec!["mul_scalar"]));
    assert_eq!(fused_parts(&g, 1), ("exp", vec!["add", "sigmoid"]));
    assert_eq!(g.nodes[1].inputs[1], g.nodes[0].outputs[0]);
}

#[test]
fn per_feature_affine_ops_fold_into_the_linear_layer_before_them() {
    let x = randn(&[4, 6]);
    let (w, b, s, t) = (randn(&[5, 6]), randn(&[5]), randn(&[1, 5]), randn(&[5]));
    let named: Vec<(String, Tensor)> =
        [("w", &w), ("b", &b), ("s", &s), ("t", &t)].iter().map(|(n, v)| (n.to_string(), (*v).clone())).collect();
    let fold = |f: &dyn Fn(&Tensor) -> Result<Vec<Tensor>>| {
        let mut g = trace(std::slice::from_ref(&x), &named, |xs| f(&xs[0])).unwrap();
        let before = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(&x)).unwrap();
        let folds = fold_affine_into_linear(&mut g).unwrap();
        g.verify().unwrap();
        let after = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(&x)).unwrap();
        for (a, b) in before.iter().zip(&after) {
            assert!(rel_diff(a, b) <= 1e-5, "outputs changed:\n{g}");
        }
        (folds, op_names(&g))
    };
    // Scale and shift after a biased layer: both fold, one product and add left.
    let (n, names) = fold(&|x| Ok(vec![x.matmul(&w.t()?)?.add(&b)?.mul(&s)?.add(&t)?]));
    assert_eq!((n, names), (2, vec!["permute", "matmul", "add"]));
    // A weight stored [in, out], no bias: the scale folds, the shift stays as the bias.
    let wt = w.t().unwrap().contiguous().unwrap();
    let (n, names) = fold(&|x| Ok(vec![s.mul(&x.matmul(&wt)?)?.add(&t)?]));
    assert_eq!((n, names), (1, vec!["matmul", "add"]));
    // The product has another reader: nothing folds.
    let (n, _) = fold(&|x| {
        let y = x.matmul(&w.t()?)?;
        Ok(vec![y.mul(&s)?, y])
    });
    assert_eq!(n, 0);
    // Not per feature (a full [4, 5] operand): nothing folds.
    let full = randn(&[4, 5]);
    let (n, _) = fold(&|x| Ok(vec![x.matmul(&w.t()?)?.mul(&full)?]));
    assert_eq!(n, 0);
}

#[test]
fn max_pool_without_readers_of_its_indices_drops_them() {
    use oar_tensor::{DType, MaxPool2dParams};
    let (x, w) = (randn(&[2, 3, 8, 8]), randn(&[1]));
    let p = MaxPool2dParams::new(2);
    // Outside autograd, `max_pool2d` records the values-only op itself.
    let g = graph(&x, &w, |x, _| Ok(vec![x[0].max_pool2d(&MaxPool2dParams::new(2))?]));
    assert_eq!(op_names(&g), ["max_pool2d_values"]);
    // Traced with indices that nothing reads: dead-code elimination drops them.
    let g = graph(&x, &w, |x, _| Ok(vec![x[0].max_pool2d_with_indices(&MaxPool2dParams::new(2))?.0.relu()?]));
    assert_eq!(op_names(&g), ["max_pool2d", "relu"]);
    assert_eq!(g.nodes[0].outputs.len(), 2);
    let g = run(g, &x, &[eliminate_dead_code]);
    assert_eq!(op_names(&g), ["max_pool2d_values", "relu"]);
    assert_eq!(g.nodes[0].outputs.len(), 1);
    let eager = x.max_pool2d_with_indices(&p).unwrap().0.relu().unwrap();
    let out = Plan::new(g).unwrap().run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), eager.to_vec::<f32>().unwrap());
    // Indices that reach an output stay.
    let g = graph(&x, &w, |x, _| {
        let (v, i) = x[0].max_pool2d_with_indices(&MaxPool2dParams::new(2))?;
        Ok(vec![v, i.to_dtype(DType::F32)?])
    });
    let g = run(g, &x, &[eliminate_dead_code]);
    assert_eq!(op_names(&g), ["max_pool2d", "to_dtype"]);
}
