//! Creating tensors: from host data, constants, ranges and random values.

use crate::cpu::CpuStorage;
use crate::random::{with_global, Generator};
use crate::{DType, Device, Error, ErrorKind, Layout, Result, Shape, Tensor, WithDType};

impl Tensor {
    /// Uploads row-major host data to `device`.
    pub fn from_storage(data: CpuStorage, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "from_vec",
                &[&shape],
                format!("{} elements given for a shape of {} elements", data.len(), shape.numel()),
            ));
        }
        let storage = device.backend().copy_from_host(data)?;
        Ok(Tensor::from_parts(storage, Layout::contiguous(shape), device.clone()))
    }

    /// A tensor holding `data` (row-major) with the given shape.
    ///
    /// ```
    /// # use oar_tensor::{Device, Tensor};
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4, 5, 6], [2, 3], &Device::cpu()).unwrap();
    /// assert_eq!(t.dims(), &[2, 3]);
    /// ```
    pub fn from_vec<T: WithDType>(data: Vec<T>, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Self::from_storage(T::into_storage(data), shape, device)
    }

    pub fn from_slice<T: WithDType>(data: &[T], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape, device)
    }

    /// A 0-d tensor.
    pub fn scalar<T: WithDType>(value: T, device: &Device) -> Result<Tensor> {
        Self::from_vec(vec![value], (), device)
    }

    pub fn full(shape: impl Into<Shape>, value: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        crate::infer::check_size("full", &shape, dtype)?;
        Self::from_storage(CpuStorage::full(dtype, shape.numel(), value), shape, device)
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(shape, 0.0, dtype, device)
    }

    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(shape, 1.0, dtype, device)
    }

    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), self.device())
    }

    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), self.device())
    }

    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        Self::full(self.shape(), value, self.dtype(), self.device())
    }

    /// `start, start + step, ...` below `end` (1-d), as `torch.arange`.
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!("start {start}, end {end} and step {step} must be finite, step non-zero"),
            ));
        }
        if (end - start) * step < 0.0 {
            return Err(Error::invalid("arange", format!("step {step} points away from end {end} (start {start})")));
        }
        let count = ((end - start) / step).ceil();
        if count >= (1u64 << 48) as f64 {
            return Err(Error::invalid(
                "arange",
                format!("{count} elements (start {start}, end {end}, step {step}) is too many"),
            ));
        }
        let n = count as usize;
        let values: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Self::from_storage(CpuStorage::from_f64s(dtype, &values), [n], device)
    }

    /// `steps` evenly spaced values from `start` to `end` inclusive, as `torch.linspace`.
    pub fn linspace(start: f64, end: f64, steps: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        crate::infer::check_size("linspace", &Shape::new(&[steps]), dtype)?;
        let step = if steps > 1 { (end - start) / (steps - 1) as f64 } else { 0.0 };
        // Symmetric from both ends, as PyTorch, so the last value is exactly `end`.
        let half = steps / 2;
        let values: Vec<f64> = (0..steps)
            .map(|i| {
                if steps == 1 {
                    start
                } else if i < half {
                    start + step * i as f64
                } else {
                    end - step * (steps - 1 - i) as f64
                }
            })
            .collect();
        Self::from_storage(CpuStorage::from_f64s(dtype, &values), [steps], device)
    }

    /// The `n x n` identity matrix.
    pub fn eye(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        crate::infer::check_size("eye", &Shape::new(&[n, n]), dtype)?;
        let mut values = vec![0.0; n * n];
        for i in 0..n {
            values[i * n + i] = 1.0;
        }
        Self::from_storage(CpuStorage::from_f64s(dtype, &values), [n, n], device)
    }

    /// Samples of U[0, 1) from the default generator (see [`crate::manual_seed`]).
    pub fn rand(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        crate::infer::check_size("rand", &shape, dtype)?;
        let v = with_global(|g| g.uniform(shape.numel()));
        Self::random(v, shape, dtype, device, "rand")
    }

    /// Samples of N(0, 1) from the default generator (see [`crate::manual_seed`]).
    pub fn randn(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        crate::infer::check_size("randn", &shape, dtype)?;
        let v = with_global(|g| g.normal(shape.numel()));
        Self::random(v, shape, dtype, device, "randn")
    }

    /// Samples of U[0, 1) from an explicit generator.
    pub fn rand_with(gen: &mut Generator, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        crate::infer::check_size("rand", &shape, dtype)?;
        let v = gen.uniform(shape.numel());
        Self::random(v, shape, dtype, device, "rand")
    }

    /// Samples of N(0, 1) from an explicit generator.
    pub fn randn_with(gen: &mut Generator, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        crate::infer::check_size("randn", &shape, dtype)?;
        let v = gen.normal(shape.numel());
        Self::random(v, shape, dtype, device, "randn")
    }

    fn random(v: Vec<f64>, shape: Shape, dtype: DType, device: &Device, op: &'static str) -> Result<Tensor> {
        crate::infer::check_size(op, &shape, dtype)?;
        if !dtype.is_float() {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op,
                dtype,
                msg: "random values need a floating-point dtype",
            }));
        }
        Self::from_storage(CpuStorage::from_f64s(dtype, &v), shape, device)
    }
}
