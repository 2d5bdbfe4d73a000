//! Optimization passes. Each takes a verified graph and leaves it verified
//! (the tests run [`Graph::verify`] after every pass) and computing the same
//! outputs; each returns how many rewrites it made.

mod affine;
mod cse;
mod dce;
mod fold;
mod fuse;
mod simplify;

pub use affine::{fold_affine_into_conv, fold_affine_into_linear};
pub use cse::eliminate_common_subexpressions;
pub use dce::eliminate_dead_code;
pub use fold::fold_constants;
pub use fuse::fuse_epilogues;
pub use simplify::simplify;

use crate::graph::{Def, Graph, ValueId};
use oar_tensor::Result;

/// How much [`optimize`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptLevel {
    /// Verify only: the graph as traced.
    O0,
    /// Dead code, common subexpressions, algebraic identities, constant folding.
    O1,
    /// O1 plus folding per-channel affine ops (eval-mode batch norm) into the
    /// preceding convolution or linear layer, and fusing element-wise ops into their
    /// producers (conv + bias + activation, activation chains).
    #[default]
    O2,
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRecord {
    pub pass: &'static str,
    pub rewrites: usize,
}

/// A pass: rewrites the graph in place, returns the number of rewrites.
pub type Pass = fn(&mut Graph) -> Result<usize>;

/// The passes of `level`, in the order [`optimize`] runs them.
pub fn pipeline(level: OptLevel) -> Vec<(&'static str, Pass)> {
    let mut p: Vec<(&'static str, Pass)> = Vec::new();
    if level >= OptLevel::O1 {
        p.push(("simplify", simplify));
        p.push(("fold_constants", fold_constants));
        p.push(("cse", eliminate_common_subexpressions));
    }
    if level >= OptLevel::O2 {
        p.push(("fold_affine_into_conv", fold_affine_into_conv));
        p.push(("fold_affine_into_linear", fold_affine_into_linear));
        p.push(("fold_constants", fold_constants));
    }
    if level >= OptLevel::O1 {
        p.push(("simplify", simplify));
        p.push(("dce", eliminate_dead_code));
    }
    if level >= OptLevel::O2 {
        p.push(("fuse_epilogues", fuse_epilogues));
    }
    p
}

/// Runs the passes of `level` over `graph`, verifying after each one. A
/// dynamic-batch graph becomes one of its traced batch size.
pub fn optimize(graph: &mut Graph, level: OptLevel) -> Result<Vec<PassRecord>> {
    graph.verify()?;
    if level > OptLevel::O0 {
        graph.batch = None; // positions refer to ids the passes renumber
    }
    let mut log = Vec::new();
    for (name, pass) in pipeline(level) {
        let rewrites = pass(graph)?;
        graph.verify()?;
        log.push(PassRecord { pass: name, rewrites });
    }
    Ok(log)
}

/// True if `v` is a weight (a value the graph holds, so folding may read it).
pub(crate) fn is_weight(defs: &[Option<Def>], v: ValueId) -> bool {
    matches!(defs[v.index()], Some(Def::Weight(_)))
}
