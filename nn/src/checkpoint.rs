//! Saving and loading tensors as safetensors files, with atomic writes.
//!
//! - A model's state dict is a plain safetensors file with PyTorch's key
//!   names, so `safetensors.torch.save_file(model.state_dict(), path)` from
//!   PyTorch loads into the same Oar model, and the reverse.
//! - A training [`Checkpoint`] puts model and optimizer state and string
//!   metadata (epoch, schedule position) in one file, so they can never be
//!   from different steps.
//!
//! Every write goes to a temporary file in the destination's directory,
//! is flushed to disk, then renamed over the destination: a crash or error
//! mid-write leaves the previous file as it was.

use crate::optim::OptimizerState;
use crate::state::StateDict;
use oar_tensor::{bf16, f16, DType, Device, Error, Result, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes a file atomically: `write` fills a temporary file next to `path`,
/// which is synced and renamed over `path` only if `write` succeeds. On any
/// error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::invalid_file(path, "not a file name"))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable (best effort: not every platform can open a directory).
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(ctx("writing"), e));
    }
    Ok(())
}

/// Little-endian bytes of a tensor and its safetensors dtype.
fn to_bytes(t: &Tensor) -> Result<(Dtype, Vec<u8>)> {
    macro_rules! le {
        ($ty:ty, $d:ident) => {
            (Dtype::$d, t.to_vec::<$ty>()?.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
    }
    Ok(match t.dtype() {
        DType::F32 => le!(f32, F32),
        DType::F64 => le!(f64, F64),
        DType::F16 => le!(f16, F16),
        DType::BF16 => le!(bf16, BF16),
        DType::I64 => le!(i64, I64),
        DType::I32 => le!(i32, I32),
        DType::U8 => le!(u8, U8),
        DType::Bool => (Dtype::BOOL, t.to_vec::<bool>()?.iter().map(|&b| b as u8).collect()),
    })
}

/// A tensor from a safetensors view (validated by the safetensors parser:
/// offsets in bounds, byte length = shape x dtype size).
fn from_view(path: &Path, name: &str, v: &TensorView<'_>, device: &Device) -> Result<Tensor> {
    let bytes = v.data();
    let shape = v.shape().to_vec();
    macro_rules! le {
        ($ty:ty) => {{
            const N: usize = std::mem::size_of::<$ty>();
            let vals: Vec<$ty> =
                bytes.chunks_exact(N).map(|c| <$ty>::from_le_bytes(c.try_into().expect("N bytes"))).collect();
            Tensor::from_vec(vals, shape, device)
        }};
    }
    match v.dtype() {
        Dtype::F32 => le!(f32),
        Dtype::F64 => le!(f64),
        Dtype::F16 => le!(f16),
        Dtype::BF16 => le!(bf16),
        Dtype::I64 => le!(i64),
        Dtype::I32 => le!(i32),
        Dtype::U8 => Tensor::from_vec(bytes.to_vec(), shape, device),
        Dtype::BOOL => {
            if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                return Err(Error::invalid_file(path, format!("tensor {name}: bool byte {b} is neither 0 nor 1")));
            }
            Tensor::from_vec(bytes.iter().map(|&b| b == 1).collect::<Vec<bool>>(), shape, device)
        }
        other => Err(Error::invalid_file(
            path,
            format!("tensor {name}: dtype {other:?} is not supported (f32 f64 f16 bf16 i64 i32 u8 bool are)"),
        )),
    }
}

struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Serializes named tensors and string metadata in the safetensors format.
pub fn to_safetensors_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut owned = Vec::new();
    for (name, t) in tensors {
        let (dtype, data) = to_bytes(t)?;
        owned.push((name.to_string(), Bytes { dtype, shape: t.dims().to_vec(), data }));
    }
    safetensors::serialize(owned.iter().map(|(n, b)| (n.as_str(), b)), metadata)
        .map_err(|e| Error::invalid_arg("save_safetensors", e.to_string()))
}

/// Writes a state dict (and optional string metadata) to `path`, atomically.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &StateDict,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes = to_safetensors_bytes(tensors.iter(), metadata)?;
    write_atomic(path.as_ref(), |f| f.write_all(&bytes))
}

/// Reads every tensor of a safetensors file (onto the CPU) and its metadata.
/// A truncated, corrupt or inconsistent file is an [`ErrorKind::InvalidFile`](oar_tensor::ErrorKind::InvalidFile).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<(StateDict, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    parse_safetensors(path, &bytes)
}

/// [`load_safetensors`] over bytes already read; `path` names them in errors.
pub fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<(StateDict, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::invalid_file(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::invalid_file(path, format!("not a valid safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let mut named = st.tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let dev = Device::cpu();
    let mut sd = StateDict::new();
    for (name, view) in &named {
        sd.insert(name.clone(), from_view(path, name, view, &dev)?);
    }
    Ok((sd, metadata))
}

const FORMAT_KEY: &str = "format";
const FORMAT: &str = "oar.checkpoint.v1";
const GROUPS_KEY: &str = "optimizer.param_groups";
const META_PREFIX: &str = "meta.";

/// A training checkpoint: model state, optional optimizer state, and string
/// metadata (the epoch, a scheduler position, ...), saved as one safetensors
/// file (model keys under `model.`, optimizer keys under `optimizer.`).
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    pub model: StateDict,
    pub optimizer: Option<OptimizerState>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut all = self.model.with_prefix("model");
        let mut meta = HashMap::new();
        meta.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        if let Some(opt) = &self.optimizer {
            for (k, t) in opt.tensors.iter() {
                all.insert(format!("optimizer.{k}"), t.clone());
            }
            let groups = serde_json::to_string(&opt.param_groups)
                .map_err(|e| Error::invalid_arg("Checkpoint::save", e.to_string()))?;
            meta.insert(GROUPS_KEY.to_string(), groups);
        }
        for (k, v) in &self.metadata {
            meta.insert(format!("{META_PREFIX}{k}"), v.clone());
        }
        save_safetensors(path, &all, Some(meta))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let (all, meta) = load_safetensors(path)?;
        if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
            return Err(Error::invalid_file(
                path,
                format!("not an Oar training checkpoint (expected metadata {FORMAT_KEY}={FORMAT}); a plain state dict loads with load_safetensors"),
            ));
        }
        let optimizer = match meta.get(GROUPS_KEY) {
            Some(groups) => {
                let param_groups = serde_json::from_str(groups)
                    .map_err(|e| Error::invalid_file(path, format!("optimizer groups: {e}")))?;
                Some(OptimizerState { tensors: all.strip_prefix("optimizer"), param_groups })
            }
            None => None,
        };
        let unknown: Vec<&str> =
            all.keys().into_iter().filter(|k| !k.starts_with("model.") && !k.starts_with("optimizer.")).collect();
        if !unknown.is_empty() {
            return Err(Error::invalid_file(path, format!("unexpected tensors {unknown:?}")));
        }
        let metadata =
            meta.iter().filter_map(|(k, v)| k.strip_prefix(META_PREFIX).map(|k| (k.to_string(), v.clone()))).collect();
        Ok(Checkpoint { model: all.strip_prefix("model"), optimizer, metadata })
    }
}
