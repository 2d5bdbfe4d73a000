//! Joining and indexing kernels: cat, index_select, gather, scatter_add,
//! one_hot and constant pad. Indices are validated here (they are data).

use super::storage::with_storage;
use super::strided::contiguous;
use super::team;
use super::threads::worth_parallel;
use super::CpuStorage;
use crate::{DType, Error, ErrorKind, Layout, Result, Shape, WithDType};
use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// Index values as i64 (i32 indices are widened), row-major.
fn indices<'a>(s: &'a CpuStorage, l: &Layout, op: &'static str) -> Result<Cow<'a, [i64]>> {
    match s {
        CpuStorage::I64(v) => Ok(contiguous(v, l)),
        CpuStorage::I32(v) => Ok(Cow::Owned(contiguous(v, l).iter().map(|&i| i as i64).collect())),
        other => Err(Error::from(ErrorKind::DTypeMismatch { op, expected: DType::I64, got: other.dtype() })),
    }
}

fn check_index(op: &'static str, i: i64, dim: usize, size: usize) -> Result<usize> {
    if i < 0 || i as usize >= size {
        return Err(Error::from(ErrorKind::IndexOutOfRange { op, index: i, dim, size }));
    }
    Ok(i as usize)
}

fn same<'a, T: WithDType>(s: &'a CpuStorage, op: &'static str) -> Result<&'a [T]> {
    T::storage_slice(s).ok_or(Error::from(ErrorKind::DTypeMismatch { op, expected: T::DTYPE, got: s.dtype() }))
}

pub(crate) fn cat(parts: &[(&CpuStorage, &Layout)], dim: usize, out: &Shape) -> Result<CpuStorage> {
    // `_first` only selects `T` (the dtype of every part).
    fn go<T: WithDType>(_first: &[T], parts: &[(&CpuStorage, &Layout)], dim: usize, out: &Shape) -> Result<Vec<T>> {
        let inner: usize = out.dims()[dim + 1..].iter().product();
        let outer: usize = out.dims()[..dim].iter().product();
        let mut data = Vec::with_capacity(parts.len());
        for (s, l) in parts {
            data.push((contiguous(same::<T>(s, "cat")?, l), l.dims()[dim] * inner));
        }
        let mut res = Vec::with_capacity(out.numel());
        for o in 0..outer {
            for (d, block) in &data {
                res.extend_from_slice(&d[o * block..(o + 1) * block]);
            }
        }
        Ok(res)
    }
    let first = parts[0].0;
    Ok(with_storage!(first, v => WithDType::into_storage(go(v, parts, dim, out)?)))
}

pub(crate) fn index_select(x: (&CpuStorage, &Layout), idx: (&CpuStorage, &Layout), dim: usize) -> Result<CpuStorage> {
    let ids = indices(idx.0, idx.1, "index_select")?;
    let dims = x.1.dims();
    let size = dims[dim];
    let inner: usize = dims[dim + 1..].iter().product();
    let outer: usize = dims[..dim].iter().product();
    let ids: Vec<usize> = ids.iter().map(|&i| check_index("index_select", i, dim, size)).collect::<Result<_>>()?;
    fn go<T: WithDType>(v: &[T], l: &Layout, ids: &[usize], outer: usize, size: usize, inner: usize) -> Vec<T> {
        let src = contiguous(v, l);
        let mut res = Vec::with_capacity(outer * ids.len() * inner);
        for o in 0..outer {
            for &i in ids {
                res.extend_from_slice(&src[(o * size + i) * inner..][..inner]);
            }
        }
        res
    }
    Ok(with_storage!(x.0, v => WithDType::into_storage(go(v, x.1, &ids, outer, size, inner))))
}

/// Row-major strides of a shape as isize-free usize vector.
fn strides_of(s: &Shape) -> Vec<usize> {
    s.contiguous_strides().to_vec()
}

pub(crate) fn gather(x: (&CpuStorage, &Layout), idx: (&CpuStorage, &Layout), dim: usize) -> Result<CpuStorage> {
    let ids = indices(idx.0, idx.1, "gather")?;
    let ishape = idx.1.shape();
    let istr = strides_of(ishape);
    let xstr = strides_of(x.1.shape());
    let size = x.1.dims()[dim];
    // Offsets into contiguous x for every index position.
    let mut offs = Vec::with_capacity(ids.len());
    for (p, &i) in ids.iter().enumerate() {
        let i = check_index("gather", i, dim, size)?;
        let mut off = 0;
        for d in 0..ishape.rank() {
            let c = (p / istr[d]) % ishape.dims()[d];
            off += if d == dim { i } else { c } * xstr[d];
        }
        offs.push(off);
    }
    fn go<T: WithDType>(v: &[T], l: &Layout, offs: &[usize]) -> Vec<T> {
        let src = contiguous(v, l);
        offs.iter().map(|&o| src[o]).collect()
    }
    Ok(with_storage!(x.0, v => WithDType::into_storage(go(v, x.1, &offs))))
}

pub(crate) fn scatter_add(
    x: (&CpuStorage, &Layout),
    idx: (&CpuStorage, &Layout),
    src: (&CpuStorage, &Layout),
    dim: usize,
) -> Result<CpuStorage> {
    let ids = indices(idx.0, idx.1, "scatter_add")?;
    if let Some(blocks) = ScatterBlocks::new(x.1.shape(), idx.1.shape(), src.1.shape(), dim, ids.len()) {
        return scatter_add_blocks(x, &ids, src, dim, blocks);
    }
    let ishape = idx.1.shape();
    let istr = strides_of(ishape);
    let xstr = strides_of(x.1.shape());
    let sstr = strides_of(src.1.shape());
    let size = x.1.dims()[dim];
    let mut pairs = Vec::with_capacity(ids.len());
    for (p, &i) in ids.iter().enumerate() {
        let i = check_index("scatter_add", i, dim, size)?;
        let (mut xo, mut so) = (0, 0);
        for d in 0..ishape.rank() {
            let c = (p / istr[d]) % ishape.dims()[d];
            xo += if d == dim { i } else { c } * xstr[d];
            so += c * sstr[d];
        }
        pairs.push((xo, so));
    }
    fn go<T: WithDType>(
        x: &[T],
        lx: &Layout,
        s: &[T],
        ls: &Layout,
        pairs: &[(usize, usize)],
        add: impl Fn(T, T) -> T,
    ) -> Vec<T> {
        let mut out = contiguous(x, lx).into_owned();
        let s = contiguous(s, ls);
        for &(xo, so) in pairs {
            out[xo] = add(out[xo], s[so]);
        }
        out
    }
    macro_rules! arm {
        ($var:ident, $add:expr) => {{
            let (CpuStorage::$var(xv), CpuStorage::$var(sv)) = (x.0, src.0) else {
                return Err(Error::from(ErrorKind::DTypeMismatch {
                    op: "scatter_add",
                    expected: x.0.dtype(),
                    got: src.0.dtype(),
                }));
            };
            CpuStorage::$var(go(xv, x.1, sv, src.1, &pairs, $add))
        }};
    }
    Ok(match x.0 {
        CpuStorage::F32(_) => arm!(F32, |a, b| a + b),
        CpuStorage::F64(_) => arm!(F64, |a, b| a + b),
        CpuStorage::F16(_) => arm!(F16, |a, b| a + b),
        CpuStorage::BF16(_) => arm!(BF16, |a, b| a + b),
        CpuStorage::I64(_) => arm!(I64, i64::wrapping_add),
        CpuStorage::I32(_) => arm!(I32, i32::wrapping_add),
        CpuStorage::U8(_) => arm!(U8, u8::wrapping_add),
        CpuStorage::Bool(_) => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "scatter_add",
                dtype: DType::Bool,
                msg: "not defined for bool",
            }))
        }
    })
}

/// `scatter_add` where index and src have one shape, equal to self's outside
/// `dim`: the three are `outer` blocks, of `size * inner` elements in self and
/// `k * inner` in index and src, and block `o` of src only adds into block `o`
/// of self.
#[derive(Clone, Copy)]
struct ScatterBlocks {
    outer: usize,
    size: usize,
    k: usize,
    inner: usize,
}

impl ScatterBlocks {
    fn new(x: &Shape, idx: &Shape, src: &Shape, dim: usize, n_ids: usize) -> Option<Self> {
        let (xd, id) = (x.dims(), idx.dims());
        let fits = idx == src && xd.len() == id.len() && (0..xd.len()).all(|d| d == dim || xd[d] == id[d]);
        let (size, k) = (*xd.get(dim)?, *id.get(dim)?);
        let b = ScatterBlocks { outer: xd[..dim].iter().product(), size, k, inner: xd[dim + 1..].iter().product() };
        // Empty blocks are left to the general path.
        (fits && n_ids > 0 && b.size * b.inner > 0 && b.k * b.inner > 0).then_some(b)
    }
}

/// The first out-of-range index in row-major order, as the general path reports it.
fn check_all(op: &'static str, ids: &[i64], dim: usize, size: usize) -> Result<()> {
    for &i in ids {
        check_index(op, i, dim, size)?;
    }
    Ok(())
}

/// Adds `src` into a copy of `x` block by block (in parallel when large): each
/// block copies its part of `x`, then adds its src entries in row-major order,
/// so every output element sums in the same order as the general path.
fn scatter_add_blocks(
    x: (&CpuStorage, &Layout),
    ids: &[i64],
    src: (&CpuStorage, &Layout),
    dim: usize,
    b: ScatterBlocks,
) -> Result<CpuStorage> {
    fn go<T: WithDType>(
        x: &[T],
        lx: &Layout,
        s: &[T],
        ls: &Layout,
        ids: &[i64],
        b: ScatterBlocks,
        add: impl Fn(T, T) -> T + Sync,
    ) -> Option<Vec<T>> {
        let (x, s) = (contiguous(x, lx), contiguous(s, ls));
        let (xb, sb) = (b.size * b.inner, b.k * b.inner);
        let n = b.outer * xb;
        let mut out = Vec::with_capacity(n);
        let buf = &mut out.spare_capacity_mut()[..n];
        type Block<'a, T> = ((&'a mut [MaybeUninit<T>], &'a [T]), (&'a [i64], &'a [T]));
        let block = |((o, xs), (is, ss)): Block<'_, T>| -> bool {
            for (d, &v) in o.iter_mut().zip(xs) {
                d.write(v);
            }
            // SAFETY: `o` and `xs` are both one block long, so the loop above
            // initialized every element of `o`; `MaybeUninit<T>` has `T`'s layout.
            let o = unsafe { &mut *(o as *mut [MaybeUninit<T>] as *mut [T]) };
            if b.inner == 1 {
                for (&i, &v) in is.iter().zip(ss) {
                    match usize::try_from(i).ok().and_then(|i| o.get_mut(i)) {
                        Some(d) => *d = add(*d, v),
                        None => return false,
                    }
                }
            } else {
                for (ir, sr) in is.chunks_exact(b.inner).zip(ss.chunks_exact(b.inner)) {
                    for (j, (&i, &v)) in ir.iter().zip(sr).enumerate() {
                        match usize::try_from(i) {
                            Ok(i) if i < b.size => o[i * b.inner + j] = add(o[i * b.inner + j], v),
                            _ => return false,
                        }
                    }
                }
            }
            true
        };
        let ok = if b.outer > 1 && worth_parallel(ids.len() + n) {
            let ok = AtomicBool::new(true);
            team::chunks_mut(true, buf, xb, |i, o| {
                let (xs, is, ss) = (&x[i * xb..][..xb], &ids[i * sb..][..sb], &s[i * sb..][..sb]);
                if !block(((o, xs), (is, ss))) {
                    ok.store(false, Ordering::Relaxed);
                }
            });
            ok.into_inner()
        } else {
            buf.chunks_exact_mut(xb)
                .zip(x.chunks_exact(xb))
                .zip(ids.chunks_exact(sb).zip(s.chunks_exact(sb)))
                .all(block)
        };
        if !ok {
            return None;
        }
        // SAFETY: the `outer` blocks of `xb` elements cover `0..n`, and every
        // block ran (`all` only stops early on a bad index, which returned
        // above) and initialized all of its elements first thing.
        unsafe { out.set_len(n) };
        Some(out)
    }
    let bad = || match check_all("scatter_add", ids, dim, b.size) {
        Err(e) => e,
        Ok(()) => Error::invalid("scatter_add", "index check disagreed with the kernel"),
    };
    macro_rules! arm {
        ($var:ident, $add:expr) => {{
            let (CpuStorage::$var(xv), CpuStorage::$var(sv)) = (x.0, src.0) else {
                // The general path reports bad indices before a dtype mismatch.
                check_all("scatter_add", ids, dim, b.size)?;
                return Err(Error::from(ErrorKind::DTypeMismatch {
                    op: "scatter_add",
                    expected: x.0.dtype(),
                    got: src.0.dtype(),
                }));
            };
            CpuStorage::$var(go(xv, x.1, sv, src.1, ids, b, $add).ok_or_else(bad)?)
        }};
    }
    Ok(match x.0 {
        CpuStorage::F32(_) => arm!(F32, |a, b| a + b),
        CpuStorage::F64(_) => arm!(F64, |a, b| a + b),
        CpuStorage::F16(_) => arm!(F16, |a, b| a + b),
        CpuStorage::BF16(_) => arm!(BF16, |a, b| a + b),
        CpuStorage::I64(_) => arm!(I64, i64::wrapping_add),
        CpuStorage::I32(_) => arm!(I32, i32::wrapping_add),
        CpuStorage::U8(_) => arm!(U8, u8::wrapping_add),
        CpuStorage::Bool(_) => {
            check_all("scatter_add", ids, dim, b.size)?;
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "scatter_add",
                dtype: DType::Bool,
                msg: "not defined for bool",
            }));
        }
    })
}

pub(crate) fn one_hot(idx: (&CpuStorage, &Layout), num_classes: usize) -> Result<CpuStorage> {
    let ids = indices(idx.0, idx.1, "one_hot")?;
    let mut out = vec![0i64; ids.len() * num_classes];
    for (p, &i) in ids.iter().enumerate() {
        let i = check_index("one_hot", i, 0, num_classes)?;
        out[p * num_classes + i] = 1;
    }
    Ok(CpuStorage::I64(out))
}

pub(crate) fn pad(x: (&CpuStorage, &Layout), pads: &[(usize, usize)], value: f64, out: &Shape) -> Result<CpuStorage> {
    fn go<T: WithDType>(v: &[T], l: &Layout, pads: &[(usize, usize)], value: f64, out: &Shape) -> Vec<T> {
        let src = contiguous(v, l);
        let mut res = vec![T::from_f64(value); out.numel()];
        let dims = l.dims();
        let rank = dims.len();
        if src.is_empty() {
            return res;
        }
        if rank == 0 {
            res[0] = src[0];
            return res;
        }
        let ostr = strides_of(out);
        let row = dims[rank - 1];
        let istr = strides_of(l.shape());
        for (r, chunk) in src.chunks(row).enumerate() {
            let p = r * row;
            let mut off = pads[rank - 1].0;
            for d in 0..rank - 1 {
                let c = (p / istr[d]) % dims[d];
                off += (c + pads[d].0) * ostr[d];
            }
            res[off..off + row].copy_from_slice(chunk);
        }
        res
    }
    Ok(with_storage!(x.0, v => WithDType::into_storage(go(v, x.1, pads, value, out))))
}
