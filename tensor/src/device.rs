//! Devices as trait objects: [`Backend`] is what a device implements,
//! [`Device`] is the cheap handle tensors carry.

use crate::cpu::{CpuBackend, CpuStorage};
use crate::op::{Op, TensorMeta};
use crate::pool_arc::PoolArc;
use crate::{DType, Layout, Result};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Where a device lives: what the jit records and what errors print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DeviceLocation {
    Cpu,
    Cuda(usize),
}

impl fmt::Display for DeviceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceLocation::Cpu => f.write_str("cpu"),
            DeviceLocation::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A buffer owned by a backend. Backends downcast it to their own type.
pub trait BackendStorage: Send + Sync + fmt::Debug + Any {
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn as_any(&self) -> &dyn Any;
    /// The buffer as host memory, for the CPU backend's own buffers: one
    /// virtual call instead of an `Any` downcast on every small op.
    fn as_cpu(&self) -> Option<&CpuStorage> {
        None
    }
}

/// Shared handle to a backend buffer; views of a tensor share it. It derefs
/// to the buffer.
#[derive(Clone, Debug)]
pub struct Storage(Shared);

/// CPU buffers sit in a [`PoolArc`]: no weak count and a recycled block, which
/// small ops notice (see [`crate::pool_arc`]). Other backends' buffers are a
/// std `Arc<dyn ...>`.
#[derive(Clone, Debug)]
enum Shared {
    Cpu(PoolArc<CpuBuf>),
    Other(Arc<dyn BackendStorage>),
}

/// A host buffer that hands its element buffer back for reuse when the last
/// handle to it goes (see [`crate::cpu::BufferArena`]).
#[derive(Debug)]
struct CpuBuf(CpuStorage);

impl Drop for CpuBuf {
    #[inline]
    fn drop(&mut self) {
        self.0.recycle()
    }
}

impl Storage {
    /// Wraps a backend's buffer.
    pub fn new(buffer: impl BackendStorage) -> Storage {
        Storage(Shared::Other(Arc::new(buffer)))
    }

    /// Wraps a host buffer (what the CPU backend returns).
    pub fn cpu(buffer: CpuStorage) -> Storage {
        crate::cpu::alloc::ensure_tuned();
        Storage(Shared::Cpu(PoolArc::new(CpuBuf(buffer))))
    }

    /// The host buffer, mutable, when this handle is its only owner (a
    /// buffer an op just produced): what in-place epilogues write into.
    pub(crate) fn cpu_mut(&mut self) -> Option<&mut CpuStorage> {
        match &mut self.0 {
            Shared::Cpu(s) => PoolArc::get_mut(s).map(|b| &mut b.0),
            Shared::Other(_) => None,
        }
    }

    /// The buffer's dtype, without a virtual call for host buffers.
    #[inline]
    pub fn dtype(&self) -> DType {
        match &self.0 {
            Shared::Cpu(s) => s.0.dtype(),
            Shared::Other(s) => s.dtype(),
        }
    }

    /// True when both handles share one buffer.
    pub fn ptr_eq(a: &Storage, b: &Storage) -> bool {
        std::ptr::addr_eq(&**a as *const dyn BackendStorage, &**b as *const dyn BackendStorage)
    }
}

impl std::ops::Deref for Storage {
    type Target = dyn BackendStorage;
    #[inline]
    fn deref(&self) -> &Self::Target {
        match &self.0 {
            Shared::Cpu(s) => &s.0,
            Shared::Other(s) => &**s,
        }
    }
}

/// The buffers one op execution returns (inline: ops have at most two outputs).
pub type Storages = smallvec::SmallVec<[Storage; 2]>;

/// One input of an op as a backend sees it: storage plus the view's layout.
#[derive(Clone, Copy)]
pub struct OpInput<'a> {
    pub storage: &'a dyn BackendStorage,
    pub layout: &'a Layout,
}

/// What a compute device implements. Object safe: devices are `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + fmt::Debug {
    fn location(&self) -> DeviceLocation;

    /// Executes a non-view op. `outputs` are the metas [`Op::infer`] produced;
    /// the returned storages are row-major with exactly those shapes.
    fn execute(&self, op: &Op, inputs: &[OpInput<'_>], outputs: &[TensorMeta]) -> Result<Storages>;

    /// Executes a single-output op (`output` as [`Op::infer`] produced it).
    /// Backends may override it with a shorter path for the small element-wise
    /// ops whose fixed cost dominates; the default goes through [`Backend::execute`].
    fn execute1(&self, op: &Op, inputs: &[OpInput<'_>], output: &TensorMeta) -> Result<Storage> {
        let mut out = self.execute(op, inputs, std::slice::from_ref(output))?;
        Ok(out.swap_remove(0))
    }

    /// Input `input` of `op` (`data`, whose metadata is `inputs[input]`)
    /// rewritten into a layout this backend runs `op` faster from, for a
    /// caller that runs `op` many times with that same tensor there (an
    /// executor's weights), which then runs [`Op::Prepacked`] with it. `None`,
    /// the default, when the backend has no such layout for `op`.
    fn prepack(&self, op: &Op, input: usize, inputs: &[TensorMeta], data: OpInput<'_>) -> Result<Option<Storage>> {
        let _ = (op, input, inputs, data);
        Ok(None)
    }

    /// The strided layout in which a buffer [`Backend::prepack`] made for
    /// input `input` of `op` holds that input's values (`logical`), when it
    /// is a plain one (a row-major copy, say): a caller can then keep that
    /// one buffer for both uses ([`Tensor::unpacked`](crate::Tensor::unpacked)).
    /// `None`, the default, for layouts only the backend's kernels read.
    fn packed_layout(&self, op: &Op, input: usize, logical: &TensorMeta) -> Option<Layout> {
        let _ = (op, input, logical);
        None
    }

    /// Applies the element-wise `ops` (what an [`Op::Fused`] epilogue may
    /// hold; `operands`: one per binary op, its right-hand side, broadcast to
    /// `layout`'s shape) to `target` in place, when this backend can write
    /// into it: `target` is this handle's alone and `layout` covers the
    /// whole buffer, row-major. Returns whether it did; `false`, the
    /// default, leaves `target` untouched, and the caller computes the ops
    /// into fresh buffers instead.
    fn execute_in_place(
        &self,
        ops: &[Op],
        target: &mut Storage,
        layout: &Layout,
        operands: &[OpInput<'_>],
    ) -> Result<bool> {
        let _ = (ops, target, layout, operands);
        Ok(false)
    }

    /// Uploads host data (row-major) to a new buffer on this device.
    fn copy_from_host(&self, data: CpuStorage) -> Result<Storage>;

    /// Copies a (possibly strided) view back to the host, row-major.
    fn copy_to_host(&self, storage: &dyn BackendStorage, layout: &Layout) -> Result<CpuStorage>;

    /// Waits for queued work; a no-op for synchronous backends.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// A handle to a compute device. Cloning is cheap; equality is by location.
#[derive(Clone)]
pub struct Device(Handle);

/// The CPU backend is a process-wide static, so CPU tensors carry a plain
/// reference and creating one costs no reference-count traffic (the per-op
/// overhead of small ops is dominated by such costs).
#[derive(Clone)]
enum Handle {
    Static(&'static dyn Backend),
    Shared(Arc<dyn Backend>),
}

impl Device {
    /// The CPU device (one shared instance per process).
    pub fn cpu() -> Device {
        static CPU: CpuBackend = CpuBackend;
        Device(Handle::Static(&CPU))
    }

    /// Wraps a backend implemented outside this crate (the CUDA backend does this).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Device {
        Device(Handle::Shared(backend))
    }

    #[inline]
    pub fn backend(&self) -> &dyn Backend {
        match &self.0 {
            Handle::Static(b) => *b,
            Handle::Shared(b) => &**b,
        }
    }

    pub fn location(&self) -> DeviceLocation {
        self.backend().location()
    }

    pub fn is_cpu(&self) -> bool {
        self.location() == DeviceLocation::Cpu
    }

    pub fn synchronize(&self) -> Result<()> {
        self.backend().synchronize()
    }
}

impl PartialEq for Device {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(self.backend(), other.backend()) || self.location() == other.location()
    }
}
impl Eq for Device {}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.location())
    }
}
impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location())
    }
}
