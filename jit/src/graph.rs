//! The static graph IR: SSA values (graph inputs, named weights, node
//! outputs), nodes that apply one [`Op`] of the tensor vocabulary, and the
//! graph outputs. Nodes are kept in topological order.

use crate::batch::BatchSpec;
use oar_tensor::op::{Op, TensorMeta};
use oar_tensor::{Error, Result, Tensor};
use std::collections::HashMap;
use std::fmt;

/// An SSA value: defined once (as an input, a weight or a node output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One op application.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A tensor the graph holds: a model parameter or buffer (named by its
/// state-dict key), or a constant captured or computed while optimizing.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub value: ValueId,
    pub tensor: Tensor,
}

/// A named graph input.
#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub value: ValueId,
}

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Def {
    Input(usize),
    Weight(usize),
    /// Output `.1` of node `.0`.
    Node(usize, usize),
}

/// A traced, optimizable program.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Shape and dtype of every value, indexed by [`ValueId`].
    pub values: Vec<TensorMeta>,
    pub inputs: Vec<Input>,
    pub weights: Vec<Weight>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<ValueId>,
    /// Where the batch size appears, for graphs that serve any batch size
    /// (see [`crate::batch`]). Optimizing a graph drops it: passes renumber.
    pub batch: Option<BatchSpec>,
}

/// Counts a graph dump reports (before and after passes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphStats {
    pub nodes: usize,
    pub weights: usize,
    pub weight_elements: usize,
    /// Node count per op name, sorted by name.
    pub ops: Vec<(&'static str, usize)>,
}

impl fmt::Display for GraphStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} nodes, {} weights ({} elements):", self.nodes, self.weights, self.weight_elements)?;
        for (name, n) in &self.ops {
            write!(f, " {name}x{n}")?;
        }
        Ok(())
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid_arg("graph", msg)
}

impl Graph {
    /// A new value of the given meta.
    pub fn add_value(&mut self, meta: TensorMeta) -> ValueId {
        self.values.push(meta);
        ValueId((self.values.len() - 1) as u32)
    }

    pub fn meta(&self, v: ValueId) -> &TensorMeta {
        &self.values[v.index()]
    }

    /// Adds a weight holding `tensor` and returns its value.
    pub fn add_weight(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        let value = self.add_value(tensor.meta());
        self.weights.push(Weight { name: name.into(), value, tensor });
        value
    }

    /// A weight name `prefix.N` no weight has yet.
    pub fn fresh_name(&self, prefix: &str) -> String {
        (self.weights.len()..)
            .map(|n| format!("{prefix}.{n}"))
            .find(|name| self.weights.iter().all(|w| &w.name != name))
            .expect("an unused index exists")
    }

    /// The definition of every value (`None` for values nothing defines).
    pub fn defs(&self) -> Vec<Option<Def>> {
        let mut defs = vec![None; self.values.len()];
        for (i, inp) in self.inputs.iter().enumerate() {
            defs[inp.value.index()] = Some(Def::Input(i));
        }
        for (i, w) in self.weights.iter().enumerate() {
            defs[w.value.index()] = Some(Def::Weight(i));
        }
        for (n, node) in self.nodes.iter().enumerate() {
            for (o, v) in node.outputs.iter().enumerate() {
                defs[v.index()] = Some(Def::Node(n, o));
            }
        }
        defs
    }

    /// How many node inputs and graph outputs read each value.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.values.len()];
        for node in &self.nodes {
            for v in &node.inputs {
                uses[v.index()] += 1;
            }
        }
        for v in &self.outputs {
            uses[v.index()] += 1;
        }
        uses
    }

    /// The weight tensor behind `v`, if `v` is a weight.
    pub fn weight_of(&self, v: ValueId) -> Option<&Tensor> {
        self.weights.iter().find(|w| w.value == v).map(|w| &w.tensor)
    }

    /// Makes every reader of `old` (node inputs, graph outputs) read `new`.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for node in &mut self.nodes {
            for v in &mut node.inputs {
                if *v == old {
                    *v = new;
                }
            }
        }
        for v in &mut self.outputs {
            if *v == old {
                *v = new;
            }
        }
    }

    /// Removes the nodes at `removed` (ascending indices), then the weights
    /// nothing reads any more, and renumbers: the common tail of the passes.
    pub fn prune(&mut self, removed: &[usize]) {
        let mut index = 0;
        self.nodes.retain(|_| {
            index += 1;
            removed.binary_search(&(index - 1)).is_err()
        });
        let used = self.use_counts();
        self.weights.retain(|w| used[w.value.index()] > 0);
        self.compact();
    }

    /// Renumbers values densely (inputs, weights, then node outputs in order),
    /// dropping values nothing defines.
    pub fn compact(&mut self) {
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        let mut values = Vec::new();
        let mut renumber = |v: &mut ValueId, values: &mut Vec<TensorMeta>, old: &[TensorMeta]| {
            let next = ValueId(values.len() as u32);
            values.push(old[v.index()].clone());
            map.insert(*v, next);
            *v = next;
        };
        let old = std::mem::take(&mut self.values);
        for i in &mut self.inputs {
            renumber(&mut i.value, &mut values, &old);
        }
        for w in &mut self.weights {
            renumber(&mut w.value, &mut values, &old);
        }
        for node in &mut self.nodes {
            for o in &mut node.outputs {
                renumber(o, &mut values, &old);
            }
        }
        for node in &mut self.nodes {
            for v in &mut node.inputs {
                *v = map[v];
            }
        }
        for v in &mut self.outputs {
            *v = map[v];
        }
        self.values = values;
    }

    /// Checks the graph's invariants: every value defined exactly once and
    /// before its first use, ids in range, weights matching their values'
    /// metas, and every node's recorded output metas equal to what its op
    /// infers from its inputs (which also validates the op's attributes).
    pub fn verify(&self) -> Result<()> {
        let n = self.values.len();
        let check = |v: ValueId, what: &dyn Fn() -> String| {
            if v.index() >= n {
                return Err(invalid(format!("{} refers to value {v}, but the graph has {n} values", what())));
            }
            Ok(())
        };
        let mut defined = vec![false; n];
        let define = |v: ValueId, what: &dyn Fn() -> String, defined: &mut Vec<bool>| {
            check(v, what)?;
            if std::mem::replace(&mut defined[v.index()], true) {
                return Err(invalid(format!("{} redefines value {v}", what())));
            }
            Ok(())
        };
        for inp in &self.inputs {
            define(inp.value, &|| format!("input `{}`", inp.name), &mut defined)?;
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.weights {
            define(w.value, &|| format!("weight `{}`", w.name), &mut defined)?;
            if !names.insert(w.name.as_str()) {
                return Err(invalid(format!("two weights are named `{}`", w.name)));
            }
            if w.tensor.meta() != self.values[w.value.index()] {
                return Err(invalid(format!(
                    "weight `{}` is {:?} {} but its value is declared {:?} {}",
                    w.name,
                    w.tensor.dims(),
                    w.tensor.dtype(),
                    self.values[w.value.index()].shape.dims(),
                    self.values[w.value.index()].dtype
                )));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let what = || format!("node {i} ({})", node.op.name());
            let mut metas = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                check(v, &what)?;
                if !defined[v.index()] {
                    return Err(invalid(format!("{} reads value {v} before it is defined", what())));
                }
                metas.push(self.values[v.index()].clone());
            }
            if matches!(node.op, Op::ToDevice(_)) {
                return Err(invalid(format!("{}: device moves are not graph ops", what())));
            }
            let inferred = node.op.infer(&metas).map_err(|e| invalid(format!("{}: {e}", what())))?;
            if inferred.len() != node.outputs.len() {
                return Err(invalid(format!(
                    "{} declares {} outputs, the op has {}",
                    what(),
                    node.outputs.len(),
                    inferred.len()
                )));
            }
            for (&o, m) in node.outputs.iter().zip(&inferred) {
                define(o, &what, &mut defined)?;
                if self.values[o.index()] != *m {
                    return Err(invalid(format!(
                        "{}: output {o} is declared {:?} {} but the op gives {:?} {}",
                        what(),
                        self.values[o.index()].shape.dims(),
                        self.values[o.index()].dtype,
                        m.shape.dims(),
                        m.dtype
                    )));
                }
            }
        }
        for &v in &self.outputs {
            check(v, &|| "a graph output".to_string())?;
            if !defined[v.index()] {
                return Err(invalid(format!("graph output {v} is never defined")));
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> GraphStats {
        let mut ops: Vec<(&'static str, usize)> = Vec::new();
        for node in &self.nodes {
            match ops.iter_mut().find(|(n, _)| *n == node.op.name()) {
                Some((_, c)) => *c += 1,
                None => ops.push((node.op.name(), 1)),
            }
        }
        ops.sort();
        GraphStats {
            nodes: self.nodes.len(),
            weights: self.weights.len(),
            weight_elements: self.weights.iter().map(|w| w.tensor.numel()).sum(),
            ops,
        }
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = |v: ValueId| {
            let m = &self.values[v.index()];
            format!("{v}: {}{:?}", m.dtype, m.shape.dims())
        };
        for i in &self.inputs {
            writeln!(f, "input {} = `{}`", meta(i.value), i.name)?;
        }
        for w in &self.weights {
            writeln!(f, "weight {} = `{}`", meta(w.value), w.name)?;
        }
        for n in &self.nodes {
            let outs: Vec<String> = n.outputs.iter().map(|&v| meta(v)).collect();
            let ins: Vec<String> = n.inputs.iter().map(|v| v.to_string()).collect();
            writeln!(f, "{} = {:?}({})", outs.join(", "), n.op, ins.join(", "))?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|v| v.to_string()).collect();
        write!(f, "return {}", outs.join(", "))
    }
}
