//! The saved model: a directory with `model.json` (the graph, versioned,
//! through serde) and `weights.safetensors` (every weight by name). Loading
//! trusts nothing: format and version, every id, op and attribute (through
//! the verifier, which re-infers every node), and every weight's presence,
//! dtype, shape and byte length.

use crate::batch::{specialize, BatchSpec};
use crate::graph::{Graph, Input, Node, ValueId, Weight};
use oar_nn::checkpoint::{parse_safetensors, to_safetensors_bytes, write_atomic};
use oar_tensor::op::{Op, TensorMeta};
use oar_tensor::{DType, Error, Result, Shape};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The graph file's name inside a model directory.
pub const GRAPH_FILE: &str = "model.json";
/// The weights file's name inside a model directory.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The `format` field of a graph file.
pub const FORMAT: &str = "oar.graph";
/// The graph file version this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest element count a declared value may have (2^40): anything larger is
/// a corrupt file, and rejecting it keeps size arithmetic from overflowing.
const MAX_ELEMENTS: usize = 1 << 40;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    format: String,
    version: u32,
    /// FNV-1a digest of the weights file, tying the two files of one save
    /// together (they are written one after the other).
    weights_digest: String,
    values: Vec<ValueDecl>,
    inputs: Vec<NamedValue>,
    weights: Vec<NamedValue>,
    nodes: Vec<NodeDecl>,
    outputs: Vec<u32>,
    /// Present when the graph serves any batch size: the traced batch size,
    /// `[value, axis]` pairs and `[node, shape index]` pairs holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<BatchDecl>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchDecl {
    traced: usize,
    values: Vec<(u32, usize)>,
    attrs: Vec<(usize, usize)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueDecl {
    dtype: DType,
    shape: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedValue {
    name: String,
    value: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeDecl {
    op: Op,
    inputs: Vec<u32>,
    outputs: Vec<u32>,
}

/// The digest a graph file records of its weights file (FNV-1a, 64 bits, hex).
pub fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Saves `graph` into the directory `dir` (created if needed). Each file is
/// written atomically (temporary file, then rename), weights first; the graph
/// file names the weights' digest, so a crash between the two renames is
/// detected on load instead of pairing a graph with other weights.
pub fn save(graph: &Graph, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    graph.verify()?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let bytes = to_safetensors_bytes(graph.weights.iter().map(|w| (w.name.as_str(), &w.tensor)), None)?;
    let file = GraphFile {
        format: FORMAT.into(),
        version: VERSION,
        weights_digest: digest(&bytes),
        values: graph.values.iter().map(|m| ValueDecl { dtype: m.dtype, shape: m.shape.dims().to_vec() }).collect(),
        inputs: graph.inputs.iter().map(|i| NamedValue { name: i.name.clone(), value: i.value.0 }).collect(),
        weights: graph.weights.iter().map(|w| NamedValue { name: w.name.clone(), value: w.value.0 }).collect(),
        nodes: graph
            .nodes
            .iter()
            .map(|n| NodeDecl {
                op: n.op.clone(),
                inputs: n.inputs.iter().map(|v| v.0).collect(),
                outputs: n.outputs.iter().map(|v| v.0).collect(),
            })
            .collect(),
        outputs: graph.outputs.iter().map(|v| v.0).collect(),
        batch: graph.batch.as_ref().map(|b| BatchDecl {
            traced: b.traced,
            values: b.values.iter().map(|&(v, a)| (v.0, a)).collect(),
            attrs: b.attrs.clone(),
        }),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::invalid_arg("jit::save", e.to_string()))?;
    write_atomic(&dir.join(WEIGHTS_FILE), |f| f.write_all(&bytes))?;
    write_atomic(&dir.join(GRAPH_FILE), |f| f.write_all(&json))
}

/// Loads and validates the model saved in `dir`.
pub fn load(dir: impl AsRef<Path>) -> Result<Graph> {
    let dir = dir.as_ref();
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
    };
    let (json, weights) = (read(GRAPH_FILE)?, read(WEIGHTS_FILE)?);
    from_bytes(dir, &json, &weights)
}

/// [`load`] over the two files' bytes; `dir` names them in errors.
pub fn from_bytes(dir: &Path, json: &[u8], weights: &[u8]) -> Result<Graph> {
    let gpath = dir.join(GRAPH_FILE);
    let bad = |msg: String| Error::invalid_file(&gpath, msg);
    // Check the version before the schema, so a newer file says so plainly.
    let header: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| bad(format!("not a valid graph file: {e}")))?;
    match header.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        other => return Err(bad(format!("format is {other:?}, expected \"{FORMAT}\""))),
    }
    match header.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == VERSION as u64 => {}
        Some(v) => return Err(bad(format!("graph version {v} is not supported (this build reads version {VERSION})"))),
        None => return Err(bad("missing or non-integer `version`".into())),
    }
    let file: GraphFile = serde_json::from_value(header).map_err(|e| bad(format!("not a valid graph file: {e}")))?;
    if digest(weights) != file.weights_digest {
        return Err(bad(format!(
            "{WEIGHTS_FILE} does not belong to this graph (digest {}, graph expects {}): \
             the two files come from different saves",
            digest(weights),
            file.weights_digest
        )));
    }
    let (tensors, _) = parse_safetensors(&dir.join(WEIGHTS_FILE), weights)?;
    let n = file.values.len();
    let id = |v: u32, what: &str| -> Result<ValueId> {
        if (v as usize) < n {
            Ok(ValueId(v))
        } else {
            Err(bad(format!("{what} refers to value {v}, but the file declares {n} values")))
        }
    };
    let mut g = Graph::default();
    for (i, v) in file.values.iter().enumerate() {
        let elems = v.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d).filter(|&e| e <= MAX_ELEMENTS));
        if elems.is_none() {
            return Err(bad(format!("value {i} has an impossible shape {:?}", v.shape)));
        }
        g.values.push(TensorMeta::new(Shape::new(&v.shape), v.dtype));
    }
    for inp in &file.inputs {
        g.inputs.push(Input { name: inp.name.clone(), value: id(inp.value, &format!("input `{}`", inp.name))? });
    }
    for w in &file.weights {
        let value = id(w.value, &format!("weight `{}`", w.name))?;
        let Some(tensor) = tensors.get(&w.name).cloned() else {
            return Err(Error::invalid_file(dir.join(WEIGHTS_FILE), format!("missing weight `{}`", w.name)));
        };
        let want = &g.values[value.index()];
        if tensor.meta() != *want {
            return Err(Error::invalid_file(
                dir.join(WEIGHTS_FILE),
                format!(
                    "weight `{}` is {} {:?} in the file, the graph declares {} {:?}",
                    w.name,
                    tensor.dtype(),
                    tensor.dims(),
                    want.dtype,
                    want.shape.dims()
                ),
            ));
        }
        g.weights.push(Weight { name: w.name.clone(), value, tensor });
    }
    if let Some(extra) = tensors.keys().into_iter().find(|k| !file.weights.iter().any(|w| w.name == *k)) {
        return Err(Error::invalid_file(
            dir.join(WEIGHTS_FILE),
            format!("holds `{extra}`, which the graph does not declare"),
        ));
    }
    for (k, node) in file.nodes.into_iter().enumerate() {
        let what = format!("node {k} ({})", node.op.name());
        let inputs = node.inputs.iter().map(|&v| id(v, &what)).collect::<Result<Vec<_>>>()?;
        let outputs = node.outputs.iter().map(|&v| id(v, &what)).collect::<Result<Vec<_>>>()?;
        g.nodes.push(Node { op: node.op, inputs, outputs });
    }
    g.outputs = file.outputs.iter().map(|&v| id(v, "a graph output")).collect::<Result<Vec<_>>>()?;
    g.verify().map_err(|e| bad(e.to_string()))?;
    if let Some(b) = file.batch {
        let values = b.values.iter().map(|&(v, a)| Ok((id(v, "the batch spec")?, a))).collect::<Result<Vec<_>>>()?;
        let spec = BatchSpec { traced: b.traced, values, attrs: b.attrs };
        // Every recorded position must hold the traced size, and the graph
        // must verify at another size: a bad spec fails here, not at run time.
        let holds = |v: ValueId, a: usize| g.meta(v).shape.dims().get(a) == Some(&spec.traced);
        if spec.traced == 0 || !spec.values.iter().all(|&(v, a)| holds(v, a)) {
            return Err(bad(format!(
                "the batch spec does not match the graph's shapes (traced batch {})",
                spec.traced
            )));
        }
        specialize(&g, &spec, spec.traced + 1).map_err(|e| bad(format!("the batch spec is inconsistent: {e}")))?;
        g.batch = Some(spec);
    }
    Ok(g)
}
