//! [`CpuStorage`]: a host buffer of one dtype. It is both the CPU backend's
//! storage and the host-side exchange format of every backend.

use crate::device::BackendStorage;
use crate::{DType, WithDType};
use half::{bf16, f16};
use std::any::Any;

#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

/// Runs `$body` with `$v` bound to the inner vector, whatever the dtype; every
/// arm must produce the same type.
macro_rules! with_storage {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            $crate::cpu::CpuStorage::F32($v) => $body,
            $crate::cpu::CpuStorage::F64($v) => $body,
            $crate::cpu::CpuStorage::F16($v) => $body,
            $crate::cpu::CpuStorage::BF16($v) => $body,
            $crate::cpu::CpuStorage::I64($v) => $body,
            $crate::cpu::CpuStorage::I32($v) => $body,
            $crate::cpu::CpuStorage::U8($v) => $body,
            $crate::cpu::CpuStorage::Bool($v) => $body,
        }
    };
}

/// Maps each variant to the same variant: `$body` yields the new inner vector.
macro_rules! map_storage {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            $crate::cpu::CpuStorage::F32($v) => $crate::cpu::CpuStorage::F32($body),
            $crate::cpu::CpuStorage::F64($v) => $crate::cpu::CpuStorage::F64($body),
            $crate::cpu::CpuStorage::F16($v) => $crate::cpu::CpuStorage::F16($body),
            $crate::cpu::CpuStorage::BF16($v) => $crate::cpu::CpuStorage::BF16($body),
            $crate::cpu::CpuStorage::I64($v) => $crate::cpu::CpuStorage::I64($body),
            $crate::cpu::CpuStorage::I32($v) => $crate::cpu::CpuStorage::I32($body),
            $crate::cpu::CpuStorage::U8($v) => $crate::cpu::CpuStorage::U8($body),
            $crate::cpu::CpuStorage::Bool($v) => $crate::cpu::CpuStorage::Bool($body),
        }
    };
}
pub(crate) use {map_storage, with_storage};

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::U8(_) => DType::U8,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        with_storage!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the element buffer to this thread's small-buffer cache or its
    /// installed arena for reuse, leaving this storage empty (see
    /// [`super::arena`]); with neither taking it, the buffer stays.
    #[inline]
    pub(crate) fn recycle(&mut self) {
        with_storage!(self, v => super::arena::recycle(v))
    }

    /// The inner vector, if `T` is this storage's element type.
    pub fn into_vec<T: WithDType>(self) -> Option<Vec<T>> {
        let any: Box<dyn Any> = with_storage!(self, v => Box::new(v));
        any.downcast::<Vec<T>>().ok().map(|b| *b)
    }

    pub fn as_slice<T: WithDType>(&self) -> Option<&[T]> {
        T::storage_slice(self)
    }

    /// Element `i` converted to f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        with_storage!(self, v => v[i].to_f64())
    }

    /// A buffer of `n` copies of `value` converted to `dtype`.
    pub fn full(dtype: DType, n: usize, value: f64) -> CpuStorage {
        fn fill<T: WithDType>(n: usize, value: f64) -> Vec<T> {
            vec![T::from_f64(value); n]
        }
        match dtype {
            DType::F32 => CpuStorage::F32(fill(n, value)),
            DType::F64 => CpuStorage::F64(fill(n, value)),
            DType::F16 => CpuStorage::F16(fill(n, value)),
            DType::BF16 => CpuStorage::BF16(fill(n, value)),
            DType::I64 => CpuStorage::I64(fill(n, value)),
            DType::I32 => CpuStorage::I32(fill(n, value)),
            DType::U8 => CpuStorage::U8(fill(n, value)),
            DType::Bool => CpuStorage::Bool(fill(n, value)),
        }
    }

    /// Converts a vector of f64 values to `dtype`.
    pub fn from_f64s(dtype: DType, values: &[f64]) -> CpuStorage {
        fn conv<T: WithDType>(v: &[f64]) -> Vec<T> {
            v.iter().map(|&x| T::from_f64(x)).collect()
        }
        match dtype {
            DType::F32 => CpuStorage::F32(conv(values)),
            DType::F64 => CpuStorage::F64(conv(values)),
            DType::F16 => CpuStorage::F16(conv(values)),
            DType::BF16 => CpuStorage::BF16(conv(values)),
            DType::I64 => CpuStorage::I64(conv(values)),
            DType::I32 => CpuStorage::I32(conv(values)),
            DType::U8 => CpuStorage::U8(conv(values)),
            DType::Bool => CpuStorage::Bool(conv(values)),
        }
    }
}

impl BackendStorage for CpuStorage {
    fn dtype(&self) -> DType {
        CpuStorage::dtype(self)
    }
    fn len(&self) -> usize {
        CpuStorage::len(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_cpu(&self) -> Option<&CpuStorage> {
        Some(self)
    }
}
