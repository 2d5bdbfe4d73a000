//! [`Tensor`]: a cheap handle to storage + layout, and the one dispatch path
//! every op goes through.

use crate::device::{Device, OpInput, Storage};
use crate::op::{MetaRef, Metas, Op, TensorMeta};
use crate::pool_arc::PoolArc;
use crate::record::{is_tracing, mode};
use crate::{DType, Error, ErrorKind, Layout, Result, Shape, WithDType};
use smallvec::SmallVec;
use std::cell::Cell;
use std::fmt;
use std::ptr::addr_of_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Unique identity of a tensor handle (views get their own id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    /// Ids are handed out in per-thread blocks: a shared atomic counter bumped
    /// on every op would cost a locked instruction per tensor.
    fn next() -> Self {
        const BLOCK: u64 = 1 << 16;
        static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        RANGE.with(|r| {
            let (mut next, mut end) = r.get();
            if next == end {
                next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            r.set((next + 1, end));
            TensorId(next)
        })
    }
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// How a tensor was made: the op and its inputs. Multi-output ops share one
/// node; `output` says which result this tensor is.
#[derive(Clone, Debug)]
pub struct Provenance {
    pub node: NodeRef,
    pub output: usize,
}

/// Shared handle to a recorded node: a [`PoolArc`], as the tensor handle, so
/// recording an op for autograd reuses a cached block (see [`crate::pool_arc`]).
pub type NodeRef = PoolArc<Node>;

/// A recorded op application.
#[derive(Debug)]
pub struct Node {
    pub op: Op,
    /// The inputs, holding their buffers alive for the backward pass; `None`
    /// once a backward pass has released them (see [`Node::release`]).
    inputs: Mutex<Option<NodeInputs>>,
    /// Metadata of every output, so consumers need not keep outputs alive.
    pub outputs: Metas,
    /// Non-float secondary outputs of multi-output ops (max_pool2d's indices),
    /// which a backward rule reads even when the caller dropped them. They
    /// carry no provenance outside a trace, so this makes no reference cycle;
    /// during a trace nothing is kept. A single-output op's result is what the
    /// caller holds, so nothing is kept for those.
    kept: Mutex<Vec<(usize, Tensor)>>,
}

impl Node {
    /// The recorded inputs; `None` after [`Node::release`].
    pub fn inputs(&self) -> Option<NodeInputs> {
        self.lock().clone()
    }

    /// Moves the inputs out, releasing the node in the same step (what a
    /// backward pass that does not retain the graph does: no handle clones).
    pub fn take_inputs(&self) -> Option<NodeInputs> {
        self.lock().take()
    }

    /// Drops the references to the inputs so their buffers can be freed (what
    /// a backward pass does unless asked to retain the graph).
    pub fn release(&self) {
        self.lock().take();
        if self.outputs.len() > 1 {
            self.kept_lock().clear();
        }
    }

    /// Output `index` if the node kept it (see the `kept` field).
    pub fn kept_output(&self, index: usize) -> Option<Tensor> {
        if self.outputs.len() < 2 {
            return None;
        }
        self.kept_lock().iter().find(|(i, _)| *i == index).map(|(_, t)| t.clone())
    }

    fn kept_lock(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Tensor)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_released(&self) -> bool {
        self.lock().is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<NodeInputs>> {
        // A poisoned lock only means a panic elsewhere; the Vec is still whole.
        self.inputs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Outputs = SmallVec<[Tensor; 2]>;

/// A node's recorded inputs: inline up to three (`where`, conv with bias),
/// so recording an op allocates only the node itself.
pub type NodeInputs = SmallVec<[Tensor; 3]>;

struct Inner {
    id: TensorId,
    storage: Storage,
    layout: Layout,
    dtype: DType,
    device: Device,
    requires_grad: bool,
    provenance: Option<Provenance>,
    /// The accumulated gradient of a leaf (or of a non-leaf that retains it).
    grad: Mutex<Option<Tensor>>,
    retains_grad: AtomicBool,
}

/// An n-dimensional array on a device. Cloning shares the data.
#[derive(Clone)]
pub struct Tensor(PoolArc<Inner>);

impl Tensor {
    /// The one constructor. The handle is a [`PoolArc`]: no weak count
    /// (dropping the last handle is one atomic operation) and a recycled block
    /// (no `malloc` per op), filled field by field in place.
    #[inline(always)]
    fn make(
        storage: Storage,
        layout: Layout,
        dtype: DType,
        device: Device,
        requires_grad: bool,
        provenance: Option<Provenance>,
    ) -> Tensor {
        // SAFETY: every field of `Inner` is written exactly once.
        Tensor(unsafe {
            PoolArc::new_in_place(|p: *mut Inner| {
                addr_of_mut!((*p).id).write(TensorId::next());
                addr_of_mut!((*p).storage).write(storage);
                addr_of_mut!((*p).layout).write(layout);
                addr_of_mut!((*p).dtype).write(dtype);
                addr_of_mut!((*p).device).write(device);
                addr_of_mut!((*p).requires_grad).write(requires_grad);
                addr_of_mut!((*p).provenance).write(provenance);
                addr_of_mut!((*p).grad).write(Mutex::new(None));
                addr_of_mut!((*p).retains_grad).write(AtomicBool::new(false));
            })
        })
    }

    pub(crate) fn from_parts(storage: Storage, layout: Layout, device: Device) -> Tensor {
        let dtype = storage.dtype();
        Tensor::make(storage, layout, dtype, device, false, None)
    }

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &Shape {
        self.0.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.0.layout.dims()
    }
    pub fn rank(&self) -> usize {
        self.shape().rank()
    }
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn storage(&self) -> &Storage {
        &self.0.storage
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    pub fn meta(&self) -> TensorMeta {
        TensorMeta::new(self.shape().clone(), self.dtype())
    }
    /// Size of dim `d` (negative counts from the end).
    pub fn size(&self, d: impl crate::Dim) -> Result<usize> {
        Ok(self.dims()[d.resolve(self.shape(), "size")?])
    }

    /// Whether autograd tracks this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// How this tensor was computed, if an op recorded it.
    pub fn provenance(&self) -> Option<&Provenance> {
        self.0.provenance.as_ref()
    }

    /// A leaf is a tensor autograd does not see through: it does not require
    /// grad, or it does but no op made it (user-created parameters).
    pub fn is_leaf(&self) -> bool {
        !self.0.requires_grad || self.0.provenance.is_none()
    }

    /// The gradient accumulated by backward passes: set on leaves that require
    /// grad, and on non-leaves after [`Tensor::retain_grad`].
    pub fn grad(&self) -> Option<Tensor> {
        self.grad_slot().clone()
    }

    /// Replaces the stored gradient (what autograd and optimizers use).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.grad_slot() = grad;
    }

    /// Clears the gradient (PyTorch's `zero_grad(set_to_none=True)`): the next
    /// backward pass stores a fresh one instead of accumulating.
    pub fn zero_grad(&self) {
        self.set_grad(None);
    }

    /// Asks backward passes to store this non-leaf tensor's gradient too.
    pub fn retain_grad(&self) -> Result<()> {
        if !self.0.requires_grad {
            return Err(Error::from(ErrorKind::Autograd {
                msg: "retain_grad on a tensor that does not require grad".into(),
            }));
        }
        self.0.retains_grad.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether backward passes store this tensor's gradient (leaves that
    /// require grad always do).
    pub fn retains_grad(&self) -> bool {
        self.0.retains_grad.load(Ordering::Relaxed)
    }

    fn grad_slot(&self) -> std::sync::MutexGuard<'_, Option<Tensor>> {
        self.0.grad.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new handle to the same data, marked as a leaf that requires grad (or
    /// not). It has no provenance: gradients stop here.
    pub fn with_requires_grad(&self, requires_grad: bool) -> Result<Tensor> {
        if requires_grad && !self.dtype().is_float() {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "requires_grad",
                dtype: self.dtype(),
                msg: "only floating-point tensors can require gradients",
            }));
        }
        Ok(self.detached(requires_grad))
    }

    /// A handle to the same data that does not require grad: gradients stop
    /// here. Outside a trace it has no provenance. During a trace it keeps
    /// the provenance, so the traced graph still computes the value (rather
    /// than baking in the one seen while tracing); autograd never walks into
    /// a tensor that does not require grad, so gradients stop all the same.
    pub fn detach(&self) -> Tensor {
        if is_tracing() {
            if let Some(p) = self.provenance() {
                let i = &self.0;
                return Tensor::make(
                    i.storage.clone(),
                    i.layout.clone(),
                    i.dtype,
                    i.device.clone(),
                    false,
                    Some(p.clone()),
                );
            }
        }
        self.detached(false)
    }

    fn detached(&self, requires_grad: bool) -> Tensor {
        let i = &self.0;
        Tensor::make(i.storage.clone(), i.layout.clone(), i.dtype, i.device.clone(), requires_grad, None)
    }

    /// True when both handles view the same storage buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Storage::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// Copies the data to the host as a row-major vector. `T` must match the dtype.
    pub fn to_vec<T: WithDType>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::from(ErrorKind::DTypeMismatch { op: "to_vec", expected: self.dtype(), got: T::DTYPE }));
        }
        let host = self.to_host("to_vec")?;
        Ok(host.into_vec::<T>().expect("dtype checked above"))
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar<T: WithDType>(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(Error::shape("to_scalar", &[self.shape()], "expected exactly one element"));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// The single value of a one-element tensor of any dtype, as f64.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape("item", &[self.shape()], "expected exactly one element"));
        }
        Ok(self.to_host("item")?.get_f64(0))
    }

    /// Row-major host copy; an error during a trace, where data-dependent host
    /// reads cannot be captured in a graph.
    pub(crate) fn to_host(&self, op: &'static str) -> Result<crate::cpu::CpuStorage> {
        if is_tracing() {
            return Err(Error::from(ErrorKind::HostReadDuringTrace { op }));
        }
        self.0.device.backend().copy_to_host(&*self.0.storage, &self.0.layout)
    }

    /// Applies a single-output op.
    pub(crate) fn apply1(op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
        if let Some(meta) = same_shape_float_elementwise(&op, inputs) {
            return Self::dispatch_elementwise(op, inputs, meta);
        }
        let mut out = Self::dispatch(op, inputs)?;
        Ok(out.swap_remove(0))
    }

    /// [`Tensor::dispatch`] for an op [`same_shape_float_elementwise`]
    /// accepted: its output meta is known, so general inference and the
    /// multi-output bookkeeping are skipped. These are the small ops of
    /// autograd chains and optimizer updates, where the fixed cost dominates.
    fn dispatch_elementwise(op: Op, inputs: &[&Tensor], meta: TensorMeta) -> Result<Tensor> {
        let x = inputs[0];
        let mut op_inputs: SmallVec<[OpInput<'_>; 2]> = SmallVec::new();
        for t in inputs {
            op_inputs.push(OpInput { storage: &*t.0.storage, layout: &t.0.layout });
        }
        let device = x.device();
        let storage = device.backend().execute1(&op, &op_inputs, &meta)?;
        let rec = Recording::new(op, inputs, std::slice::from_ref(&meta));
        Ok(rec.output(0, storage, Layout::contiguous(meta.shape), device))
    }

    /// The dispatch path of every op: validate (via [`Op::infer`]), execute on
    /// the inputs' device (or compute a view), and record provenance when grad
    /// mode needs it or a trace is active.
    pub fn apply(op: Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        Ok(Self::dispatch(op, inputs)?.into_vec())
    }

    /// [`Tensor::apply`] without heap allocation for its bookkeeping: this path
    /// is the per-op overhead every small op pays.
    fn dispatch(op: Op, inputs: &[&Tensor]) -> Result<Outputs> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid(op.name(), "op applied to no inputs"));
        };
        let device = first.device();
        for t in &inputs[1..] {
            if t.device() != device {
                let (lhs, rhs) = (device.to_string(), t.device().to_string());
                return Err(Error::from(ErrorKind::DeviceMismatch { op: op.name(), lhs, rhs }));
            }
        }
        // Plain pushes: `collect` into a SmallVec costs more than these few elements.
        let mut metas: SmallVec<[MetaRef<'_>; 3]> = SmallVec::new();
        for t in inputs {
            metas.push(MetaRef { shape: t.shape(), dtype: t.dtype() });
        }
        let outs = op.infer_refs(&metas)?;
        if op.is_view() {
            let (storage, layout) = view_of(&op, first, &outs[0])?;
            let rec = Recording::new(op, inputs, &outs);
            return Ok(smallvec::smallvec![rec.output(0, storage, layout, device)]);
        }
        if let Op::ToDevice(loc) = op {
            return Err(Error::invalid(op.name(), format!("use Tensor::to_device to move to {loc}")));
        }
        let mut op_inputs: SmallVec<[OpInput<'_>; 3]> = SmallVec::new();
        for t in inputs {
            op_inputs.push(OpInput { storage: &*t.0.storage, layout: &t.0.layout });
        }
        let storages = device.backend().execute(&op, &op_inputs, &outs)?;
        let rec = Recording::new(op, inputs, &outs);
        let mut result = Outputs::new();
        for (i, (storage, meta)) in storages.into_iter().zip(outs).enumerate() {
            result.push(rec.output(i, storage, Layout::contiguous(meta.shape), device));
        }
        if let (Some(node), false, true) = (&rec.node, rec.tracing, result.len() > 1) {
            let mut kept = node.kept_lock();
            kept.extend(result.iter().enumerate().filter(|(_, t)| !t.dtype().is_float()).map(|(i, t)| (i, t.clone())));
        }
        Ok(result)
    }

    /// This tensor packed, as input `input` of `op` (whose inputs have the
    /// metadata `inputs`), into the layout the device's backend runs `op`
    /// fastest from: the [`Op::Prepacked`] to apply instead of `op`, and the
    /// packed tensor to pass in this one's place. For callers that run `op`
    /// many times with the same tensor there, as the jit's executor does with
    /// weights. `None` when the backend has no faster layout for this op.
    ///
    /// The packed tensor is a flat buffer only that backend reads: pass it to
    /// the returned op and nowhere else.
    ///
    /// ```
    /// use oar_tensor::op::{Conv2dParams, Op};
    /// use oar_tensor::{DType, Device, Tensor};
    /// let (x, w) = (Tensor::randn([2, 3, 8, 8], DType::F32, &Device::cpu())?, Tensor::randn([4, 3, 3, 3], DType::F32, &Device::cpu())?);
    /// let op = Op::Conv2d(Conv2dParams::default());
    /// let want = Tensor::apply(op.clone(), &[&x, &w])?;
    /// if let Some((packed_op, packed)) = w.prepack(&op, 1, &[x.meta(), w.meta()])? {
    ///     // CPUs with AVX2 or AVX-512 run this convolution from packed weights.
    ///     assert_eq!(Tensor::apply(packed_op, &[&x, &packed])?[0].to_vec::<f32>()?, want[0].to_vec::<f32>()?);
    /// }
    /// # Ok::<(), oar_tensor::Error>(())
    /// ```
    pub fn prepack(&self, op: &Op, input: usize, inputs: &[TensorMeta]) -> Result<Option<(Op, Tensor)>> {
        if inputs.get(input) != Some(&self.meta()) {
            return Err(Error::invalid(
                "prepack",
                format!("input {input} of `{}` must be this {} {:?} tensor", op.name(), self.dtype(), self.dims()),
            ));
        }
        op.infer(inputs)?;
        let data = OpInput { storage: &*self.0.storage, layout: &self.0.layout };
        let Some(storage) = self.device().backend().prepack(op, input, inputs, data)? else { return Ok(None) };
        let layout = Layout::contiguous(Shape::from(storage.len()));
        let packed = Tensor::from_parts(storage, layout, self.device().clone());
        Ok(Some((Op::Prepacked { op: Box::new(op.clone()), input, logical: self.meta() }, packed)))
    }

    /// The element-wise `ops` (unary, tensor-scalar, clamp, binary: what an
    /// [`Op::Fused`] epilogue holds) applied to this tensor, one after the
    /// other; `operands` are the binary ops' right-hand sides, in order. The
    /// result overwrites this tensor's buffer when the backend can do that
    /// safely: this handle is the buffer's only owner (consumed here), the
    /// buffer is exactly this row-major tensor, and nothing records the ops
    /// (no autograd, no trace). Otherwise the ops run as
    /// [`Tensor::apply`] would run them, into fresh buffers. Either way the
    /// values are the same bits. Each op must keep the tensor's shape and
    /// dtype. What the jit's executor runs for element-wise steps whose input
    /// dies there.
    ///
    /// ```
    /// use oar_tensor::op::{BinaryOp, Op, UnaryOp};
    /// use oar_tensor::{Device, Tensor};
    ///
    /// let x = Tensor::from_vec(vec![-1f32, 2.0, -3.0], [3], &Device::cpu())?;
    /// let b = Tensor::from_vec(vec![0.5f32], [1], &Device::cpu())?;
    /// let y = x.apply_in_place(&[Op::Unary(UnaryOp::Relu), Op::Binary(BinaryOp::Add)], &[&b])?;
    /// assert_eq!(y.to_vec::<f32>()?, [0.5, 2.5, 0.5]);
    /// # Ok::<(), oar_tensor::Error>(())
    /// ```
    pub fn apply_in_place(mut self, ops: &[Op], operands: &[&Tensor]) -> Result<Tensor> {
        const NAME: &str = "apply_in_place";
        let binary = crate::op::binary_ops(ops);
        if binary != operands.len() {
            return Err(Error::invalid(
                NAME,
                format!("{binary} binary ops take as many operands, got {}", operands.len()),
            ));
        }
        let meta = self.meta();
        let mut rest = operands.iter();
        for op in ops {
            if !crate::op::is_epilogue_op(op) {
                return Err(Error::invalid(NAME, format!("`{}` is not an element-wise op", op.name())));
            }
            let outs = match op {
                Op::Binary(_) => op.infer(&[meta.clone(), rest.next().expect("counted above").meta()])?,
                _ => op.infer(std::slice::from_ref(&meta))?,
            };
            if outs[0] != meta {
                return Err(Error::from(ErrorKind::ShapeMismatch {
                    op: NAME,
                    shapes: vec![meta.shape.clone(), outs[0].shape.clone()],
                    msg: format!("`{}` would change the tensor's shape or dtype", op.name()),
                }));
            }
        }
        let device = self.device().clone();
        if let Some(t) = operands.iter().find(|t| t.device() != &device) {
            let (lhs, rhs) = (device.to_string(), t.device().to_string());
            return Err(Error::from(ErrorKind::DeviceMismatch { op: NAME, lhs, rhs }));
        }
        let recorded = is_tracing()
            || (crate::is_grad_enabled() && (self.requires_grad() || operands.iter().any(|t| t.requires_grad())));
        if !recorded {
            if let Some(inner) = PoolArc::get_mut(&mut self.0) {
                let inputs: SmallVec<[OpInput<'_>; 3]> =
                    operands.iter().map(|t| OpInput { storage: &*t.0.storage, layout: &t.0.layout }).collect();
                if device.backend().execute_in_place(ops, &mut inner.storage, &inner.layout, &inputs)? {
                    return Ok(self);
                }
            }
        }
        let mut rest = operands.iter();
        let mut x = self;
        for op in ops {
            x = match op {
                Op::Binary(_) => Tensor::dispatch(op.clone(), &[&x, rest.next().expect("counted above")])?.remove(0),
                _ => Tensor::dispatch(op.clone(), &[&x])?.remove(0),
            };
        }
        Ok(x)
    }

    /// The values a packed tensor holds, as a view of its buffer with the
    /// logical shape, when the backend packed them in a plain strided layout
    /// ([`Backend::packed_layout`](crate::Backend::packed_layout)): `prepacked`
    /// is the [`Op::Prepacked`] that [`Tensor::prepack`] returned with this
    /// tensor. Lets a caller that keeps the packed copy drop the original.
    /// `None` for layouts only the backend reads, or for another op.
    pub fn unpacked(&self, prepacked: &Op) -> Option<Tensor> {
        let Op::Prepacked { op, input, logical } = prepacked else { return None };
        let layout = self.device().backend().packed_layout(op, *input, logical)?;
        let fits = logical.dtype == self.dtype()
            && layout.shape() == &logical.shape
            && layout.storage_extent() <= self.0.storage.len()
            && self.0.layout.offset() == 0;
        fits.then(|| Tensor::from_parts(self.0.storage.clone(), layout, self.device().clone()))
    }

    /// Moves (copies) the tensor to `device`; a no-op handle clone if it is there already.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let host = self.to_host("to_device")?;
        let storage = device.backend().copy_from_host(host)?;
        let layout = Layout::contiguous(self.shape().clone());
        let outs: Metas = smallvec::smallvec![self.meta()];
        Ok(Recording::new(Op::ToDevice(device.location()), &[self], &outs).output(0, storage, layout, device))
    }
}

/// What an op application records: whether outputs require grad, and the
/// shared node when grad mode or a trace needs provenance.
struct Recording {
    grad: bool,
    tracing: bool,
    node: Option<NodeRef>,
}

impl Recording {
    fn new(op: Op, inputs: &[&Tensor], outs: &[TensorMeta]) -> Self {
        let mode = mode();
        let grad = mode.grad_enabled && inputs.iter().any(|t| t.requires_grad());
        let tracing = mode.tracing();
        let node = (grad || tracing).then(|| {
            let inputs = inputs.iter().map(|t| (*t).clone()).collect();
            PoolArc::new(Node {
                op,
                inputs: Mutex::new(Some(inputs)),
                outputs: Metas::from(outs),
                kept: Mutex::new(Vec::new()),
            })
        });
        Recording { grad, tracing, node }
    }

    /// Output `index` of the op as a tensor.
    #[inline(always)]
    fn output(&self, index: usize, storage: Storage, layout: Layout, device: &Device) -> Tensor {
        let dtype = storage.dtype();
        let requires_grad = self.grad && dtype.is_float();
        let provenance = self
            .node
            .as_ref()
            .filter(|_| self.tracing || requires_grad)
            .map(|n| Provenance { node: n.clone(), output: index });
        Tensor::make(storage, layout, dtype, device.clone(), requires_grad, provenance)
    }
}

/// The output meta of `op` when it is an element-wise float op whose inputs
/// share shape, dtype and device: exactly the cases where [`Op::infer`] would
/// accept the op and return input 0's meta. `None` sends the op down the
/// general path (which also produces every error message).
#[inline]
fn same_shape_float_elementwise(op: &Op, inputs: &[&Tensor]) -> Option<TensorMeta> {
    let ok = match (op, inputs) {
        (Op::Unary(_) | Op::BinaryScalar { .. }, [x]) => x.dtype().is_float(),
        (Op::Binary(_) | Op::UnaryBackward(_), [x, y]) => {
            x.dtype().is_float() && x.dtype() == y.dtype() && x.shape() == y.shape() && x.device() == y.device()
        }
        _ => false,
    };
    ok.then(|| inputs[0].meta())
}

/// Storage and layout of a view op's output. A reshape whose strides cannot
/// be viewed copies the input row-major first (as PyTorch's `reshape`), so the
/// op always succeeds whoever applies it (front end or jit).
fn view_of(op: &Op, x: &Tensor, out: &TensorMeta) -> Result<(Storage, Layout)> {
    let l = x.layout();
    let layout = match op {
        Op::Reshape { .. } => match l.reshape(&out.shape) {
            Some(v) => v,
            None => {
                let input = [OpInput { storage: &*x.0.storage, layout: l }];
                let meta = [TensorMeta::new(l.shape().clone(), x.dtype())];
                let mut copy = x.device().backend().execute(&Op::Contiguous, &input, &meta)?;
                return Ok((copy.swap_remove(0), Layout::contiguous(out.shape.clone())));
            }
        },
        Op::Permute { perm } => l.permute(perm),
        Op::Expand { shape } => l.broadcast_to(&Shape::new(shape), "expand")?,
        Op::Slice { dim, start, end, step } => l.slice(*dim, *start, *end, *step),
        _ => unreachable!("not a view op"),
    };
    Ok((x.0.storage.clone(), layout))
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor[{}; {}, {}]", self.shape(), self.dtype(), self.device())
    }
}
