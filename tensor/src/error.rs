//! The crate's error type: every public operation returns [`Result`].

use crate::{DType, Shape};
use std::fmt;

/// The error of every fallible Oar operation: a boxed [`ErrorKind`].
///
/// Boxed so that it is one pointer wide: every op returns a `Result`, and an
/// 80-byte error made each `Result<Tensor>` 80 bytes, returned through
/// memory and copied at every `?`; now it comes back in two registers.
/// Match on [`Error::kind`]:
///
/// ```
/// use oar_tensor::{Device, DType, ErrorKind, Tensor};
/// let dev = Device::cpu();
/// let a = Tensor::zeros([2, 3], DType::F32, &dev).unwrap();
/// let b = Tensor::zeros([4, 5], DType::F32, &dev).unwrap();
/// let err = a.matmul(&b).unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::ShapeMismatch { op: "matmul", .. }), "{err}");
/// ```
pub struct Error(Box<ErrorKind>);

impl Error {
    /// What went wrong, with the op and the values involved.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// The kind, by value (to rebuild an error with more context).
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }
}

impl From<ErrorKind> for Error {
    #[cold]
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(kind))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// The kinds of [`Error`]. Messages name the op and the shapes, dtypes or
/// devices involved so a user can act on them.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{op}: shape mismatch: {msg} (shapes {shapes:?})")]
    ShapeMismatch { op: &'static str, shapes: Vec<Shape>, msg: String },

    #[error("{op}: dtype mismatch: expected {expected}, got {got}")]
    DTypeMismatch { op: &'static str, expected: DType, got: DType },

    #[error("{op}: unsupported dtype {dtype}: {msg}")]
    UnsupportedDType { op: &'static str, dtype: DType, msg: &'static str },

    #[error("{op}: dim {dim} out of range for a tensor of rank {rank} (shape {shape})")]
    DimOutOfRange { op: &'static str, dim: i64, rank: usize, shape: Shape },

    #[error("{op}: tensors on different devices: {lhs} and {rhs}")]
    DeviceMismatch { op: &'static str, lhs: String, rhs: String },

    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    #[error("{op}: index {index} out of range for dim {dim} of size {size}")]
    IndexOutOfRange { op: &'static str, index: i64, dim: usize, size: usize },

    #[error("device error on {device}: {msg}")]
    Device { device: String, msg: String },

    #[error("{op}: reading tensor data on the host during a trace would bake a data-dependent value into the graph")]
    HostReadDuringTrace { op: &'static str },

    #[error("backward: {msg}")]
    Autograd { msg: String },

    #[error("{op} is not implemented on device {device}")]
    NotImplemented { op: &'static str, device: String },

    /// A file could not be read or written (checkpoints, datasets, models).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its contents are malformed, truncated or inconsistent.
    #[error("{path}: {msg}")]
    InvalidFile { path: String, msg: String },

    /// Loading a state dict found missing, unexpected or mismatched entries
    /// (every one is listed).
    #[error("load_state_dict: {msg}")]
    StateDict { msg: String },
}

/// Result alias used by every fallible operation of the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(op: &'static str, shapes: &[&Shape], msg: impl Into<String>) -> Self {
        Error::from(ErrorKind::ShapeMismatch {
            op,
            shapes: shapes.iter().map(|s| (*s).clone()).collect(),
            msg: msg.into(),
        })
    }

    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::from(ErrorKind::InvalidArgument { op, msg: msg.into() })
    }

    /// An [`ErrorKind::Io`] with what was being done (`"reading checkpoint model.safetensors"`).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::from(ErrorKind::Io { context: context.into(), source })
    }

    /// An [`ErrorKind::InvalidFile`] for `path`.
    pub fn invalid_file(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Self {
        Error::from(ErrorKind::InvalidFile { path: path.as_ref().display().to_string(), msg: msg.into() })
    }

    /// An [`ErrorKind::InvalidArgument`] from outside this crate (layers, losses, optimizers).
    pub fn invalid_arg(op: &'static str, msg: impl Into<String>) -> Self {
        Error::invalid(op, msg)
    }
}
