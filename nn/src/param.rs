//! [`Param`] and [`Buffer`]: the named, replaceable tensors a module owns.
//!
//! Tensors are immutable values, so a module does not hold its weights as
//! plain `Tensor`s: it holds handles whose current value an optimizer step,
//! a checkpoint load or a device move replaces. Cloning a handle shares it
//! (the optimizer and the model see the same parameter).

use oar_tensor::{DType, Device, Error, ErrorKind, Result, Tensor};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock(m: &Mutex<Tensor>) -> MutexGuard<'_, Tensor> {
    // A poisoned lock only means a panic elsewhere; the tensor handle is whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A trainable tensor: a leaf that requires grad (unless frozen with
/// [`Param::set_requires_grad`]). Its gradient is the current value's
/// [`Tensor::grad`].
#[derive(Clone)]
pub struct Param(Arc<ParamInner>);

struct ParamInner {
    value: Mutex<Tensor>,
    requires_grad: std::sync::atomic::AtomicBool,
}

impl Param {
    /// Wraps `value` (detached from any graph) as a parameter that requires grad.
    pub fn new(value: Tensor) -> Result<Param> {
        let value = value.with_requires_grad(true)?;
        Ok(Param(Arc::new(ParamInner { value: Mutex::new(value), requires_grad: true.into() })))
    }

    /// The current value: a leaf tensor (cheap handle clone).
    pub fn get(&self) -> Tensor {
        lock(&self.0.value).clone()
    }

    /// Replaces the value with `value` (detached, requiring grad as the
    /// parameter does). The shape, dtype and device must stay the same: a
    /// different shape is a different model. The gradient accumulated so far
    /// moves over, as an in-place update would keep it in PyTorch.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        let mut slot = lock(&self.0.value);
        check_same("Param::set", &slot, value)?;
        let grad = slot.grad();
        let next = value.with_requires_grad(self.requires_grad())?;
        next.set_grad(grad);
        *slot = next;
        Ok(())
    }

    /// Replaces the value with one of any shape, dtype or device (what
    /// [`Param::to_device`] and dtype casts use). The gradient is dropped.
    pub fn replace(&self, value: &Tensor) -> Result<()> {
        let next = value.with_requires_grad(self.requires_grad())?;
        *lock(&self.0.value) = next;
        Ok(())
    }

    /// The gradient of the current value, if a backward pass produced one.
    pub fn grad(&self) -> Option<Tensor> {
        lock(&self.0.value).grad()
    }

    /// Sets (or clears) the gradient, as optimizers and gradient clipping do.
    pub fn set_grad(&self, grad: Option<Tensor>) {
        lock(&self.0.value).set_grad(grad)
    }

    /// Clears the gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        self.set_grad(None)
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Freezes (`false`) or unfreezes the parameter: a frozen one gets no
    /// gradient and optimizers leave it alone.
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        let mut slot = lock(&self.0.value);
        self.0.requires_grad.store(requires_grad, std::sync::atomic::Ordering::Relaxed);
        *slot = slot.with_requires_grad(requires_grad)?;
        Ok(())
    }

    pub fn dims(&self) -> Vec<usize> {
        lock(&self.0.value).dims().to_vec()
    }
    pub fn numel(&self) -> usize {
        lock(&self.0.value).numel()
    }
    pub fn dtype(&self) -> DType {
        lock(&self.0.value).dtype()
    }
    pub fn device(&self) -> Device {
        lock(&self.0.value).device().clone()
    }

    /// Moves the value to `device` (the gradient is dropped).
    pub fn to_device(&self, device: &Device) -> Result<()> {
        let moved = self.get().to_device(device)?;
        self.replace(&moved)
    }

    /// True when both handles are the same parameter.
    pub fn ptr_eq(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.get();
        write!(f, "Param[{}; {}, {}]", t.shape(), t.dtype(), t.device())
    }
}

/// A tensor a module keeps but does not train (BatchNorm's running
/// statistics): saved in the state dict, updated by the module itself.
#[derive(Clone)]
pub struct Buffer(Arc<Mutex<Tensor>>);

impl Buffer {
    pub fn new(value: Tensor) -> Buffer {
        Buffer(Arc::new(Mutex::new(value.detach())))
    }

    pub fn get(&self) -> Tensor {
        lock(&self.0).clone()
    }

    /// Replaces the value; shape, dtype and device must stay the same.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        let mut slot = lock(&self.0);
        check_same("Buffer::set", &slot, value)?;
        *slot = value.detach();
        Ok(())
    }

    /// Replaces the value with one of any shape, dtype or device.
    pub fn replace(&self, value: &Tensor) {
        *lock(&self.0) = value.detach();
    }

    pub fn to_device(&self, device: &Device) -> Result<()> {
        let moved = self.get().to_device(device)?;
        self.replace(&moved);
        Ok(())
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.get();
        write!(f, "Buffer[{}; {}, {}]", t.shape(), t.dtype(), t.device())
    }
}

fn check_same(op: &'static str, old: &Tensor, new: &Tensor) -> Result<()> {
    if old.shape() != new.shape() {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op,
            shapes: vec![old.shape().clone(), new.shape().clone()],
            msg: "a new value must keep the shape".into(),
        }));
    }
    if old.dtype() != new.dtype() {
        return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: old.dtype(), got: new.dtype() }));
    }
    if old.device() != new.device() {
        return Err(Error::from(ErrorKind::DeviceMismatch {
            op,
            lhs: old.device().to_string(),
            rhs: new.device().to_string(),
        }));
    }
    Ok(())
}
