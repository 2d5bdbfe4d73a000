//! `oar-capi`: a C ABI for [`oar_jit::Predictor`], built as `liboar_capi.so`
//! with the hand-written header `include/oar.h`.
//!
//! ```c
//! OarPredictor* p = oar_predictor_create("runs/mnist/model", 0);
//! if (!p) { fprintf(stderr, "%s\n", oar_last_error()); return 1; }
//! int64_t shape[4] = {500, 1, 28, 28};
//! if (oar_predictor_set_input(p, "input0", images, shape, 4) != OAR_OK
//!     || oar_predictor_run(p) != OAR_OK
//!     || oar_predictor_get_output(p, 0, logits, 500 * 10) != OAR_OK) {
//!     fprintf(stderr, "%s\n", oar_last_error());
//! }
//! oar_predictor_destroy(p);
//! ```
//!
//! Conventions at the boundary:
//!
//! - Functions returning `int` return [`OAR_OK`] (0) or a nonzero error
//!   code; `create`, `clone` and `input_name` return NULL on failure. Either
//!   way the message is in [`oar_last_error`], a per-thread string that every
//!   fallible call resets (to `""` on success).
//! - Every pointer argument is checked for NULL (and alignment); sizes are
//!   checked against the model before anything is read or written.
//! - No panic unwinds into C: each entry point runs under `catch_unwind` and
//!   reports a panic as [`OAR_ERR_PANIC`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use oar_jit::{Config, Predictor};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// Success.
pub const OAR_OK: c_int = 0;
/// A bad argument: a NULL pointer, a negative dimension, a shape other than
/// the traced one, an unknown input name, an output index out of range,
/// a wrong element type, or a call out of order (outputs before `run`).
pub const OAR_ERR_INVALID_ARGUMENT: c_int = 1;
/// A caller buffer is smaller than the data to be written into it.
pub const OAR_ERR_BUFFER_TOO_SMALL: c_int = 2;
/// The library failed otherwise: reading or validating the model files, or
/// a kernel error while running.
pub const OAR_ERR_RUNTIME: c_int = 3;
/// A bug: Rust code panicked (the message says where). The predictor may be
/// left half-updated; destroy it.
pub const OAR_ERR_PANIC: c_int = 4;

/// A loaded model with its input and output slots. Opaque to C.
pub struct OarPredictor {
    inner: Predictor,
    /// The inputs' names as C strings, for [`oar_predictor_input_name`].
    input_names: Vec<CString>,
}

/// Why a call failed: a return code and the message for `oar_last_error`.
struct Failure {
    code: c_int,
    msg: String,
}

impl Failure {
    fn invalid(msg: impl Into<String>) -> Failure {
        Failure { code: OAR_ERR_INVALID_ARGUMENT, msg: msg.into() }
    }

    fn too_small(msg: impl Into<String>) -> Failure {
        Failure { code: OAR_ERR_BUFFER_TOO_SMALL, msg: msg.into() }
    }
}

impl From<oar_tensor::Error> for Failure {
    fn from(e: oar_tensor::Error) -> Failure {
        use oar_tensor::ErrorKind as E;
        let code = match e.kind() {
            E::InvalidArgument { .. } | E::ShapeMismatch { .. } | E::DTypeMismatch { .. } => OAR_ERR_INVALID_ARGUMENT,
            _ => OAR_ERR_RUNTIME,
        };
        Failure { code, msg: e.to_string() }
    }
}

type Outcome<T> = std::result::Result<T, Failure>;

thread_local! {
    /// The message of this thread's last failed call (`None`: it succeeded).
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Replaces this thread's last error (`None` clears it). Never panics.
fn set_last_error(msg: Option<String>) {
    let c = msg.map(|m| {
        // Interior NULs would truncate the message in C; show them instead.
        CString::new(m.replace('\0', "\\0")).unwrap_or_default()
    });
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = c;
        }
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let what = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => "(a non-string panic payload)".to_string(),
    };
    format!("internal error: oar panicked: {what}")
}

/// Runs `f` at the boundary: resets the last error, catches panics, and
/// records a failure's message.
fn guard<T>(f: impl FnOnce() -> Outcome<T>) -> std::result::Result<T, c_int> {
    set_last_error(None);
    // AssertUnwindSafe: after a panic the caller is told (OAR_ERR_PANIC) to
    // discard the predictor, so no broken invariant is observed later.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(fail)) => {
            set_last_error(Some(fail.msg));
            Err(fail.code)
        }
        Err(payload) => {
            set_last_error(Some(panic_message(payload.as_ref())));
            // A payload's destructor could panic in turn; contain that too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Err(OAR_ERR_PANIC)
        }
    }
}

/// [`guard`] for functions that return a status code.
fn status(f: impl FnOnce() -> Outcome<()>) -> c_int {
    match guard(f) {
        Ok(()) => OAR_OK,
        Err(code) => code,
    }
}

// ---- argument checking -------------------------------------------------------

fn check_ptr<T>(p: *const T, what: &str) -> Outcome<()> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(Failure::invalid(format!("{what} ({p:p}) is not aligned for its type")));
    }
    Ok(())
}

/// A shared reference from a C pointer, NULL and alignment checked.
///
/// # Safety
/// If non-NULL and aligned, `p` must point to a live `T` that nothing writes
/// while the reference is in use.
unsafe fn ref_arg<'a, T>(p: *const T, what: &str) -> Outcome<&'a T> {
    check_ptr(p, what)?;
    // SAFETY: non-NULL and aligned (checked above); validity and the absence
    // of concurrent writes are the caller's contract.
    Ok(unsafe { &*p })
}

/// An exclusive reference from a C pointer, NULL and alignment checked.
///
/// # Safety
/// If non-NULL and aligned, `p` must point to a live `T` that nothing else
/// reads or writes while the reference is in use.
unsafe fn mut_arg<'a, T>(p: *mut T, what: &str) -> Outcome<&'a mut T> {
    check_ptr(p, what)?;
    // SAFETY: non-NULL and aligned (checked above); validity and exclusive
    // access are the caller's contract.
    Ok(unsafe { &mut *p })
}

/// `len` elements at `p` as a slice; `p` may be NULL when `len` is 0.
///
/// # Safety
/// If `len > 0`, `p` must point to `len` initialized `T`s that nothing
/// writes while the slice is in use.
unsafe fn slice_arg<'a, T>(p: *const T, len: usize, what: &str) -> Outcome<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_ptr(p, what)?;
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
        return Err(Failure::invalid(format!("{what}: {len} elements do not fit in memory")));
    }
    // SAFETY: non-NULL, aligned, and the byte length fits in isize (checked
    // above); that `len` initialized elements live there is the caller's
    // contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A NUL-terminated C string argument.
///
/// # Safety
/// If non-NULL, `p` must point to a NUL-terminated string that stays
/// unchanged while the result is in use.
unsafe fn cstr_arg<'a>(p: *const c_char, what: &str) -> Outcome<&'a CStr> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL (checked above); NUL termination is the caller's
    // contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

fn utf8<'a>(s: &'a CStr, what: &str) -> Outcome<&'a str> {
    s.to_str().map_err(|e| Failure::invalid(format!("{what} is not valid UTF-8: {e}")))
}

#[cfg(unix)]
fn path_of(s: &CStr) -> Outcome<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes())))
}

#[cfg(not(unix))]
fn path_of(s: &CStr) -> Outcome<PathBuf> {
    Ok(PathBuf::from(utf8(s, "model_dir")?))
}

/// Writes `dims` (as i64) to `shape` and the rank to `rank`; the shape part
/// only when `capacity` holds it.
///
/// # Safety
/// `rank`, if non-NULL, must be valid for a write of one `usize`; `shape`, if
/// non-NULL, for writes of `capacity` `i64`s.
unsafe fn write_shape(dims: &[usize], shape: *mut i64, capacity: usize, rank: *mut usize, what: &str) -> Outcome<()> {
    check_ptr(rank, "rank")?;
    // SAFETY: `rank` is non-NULL and aligned (checked above); that it is
    // writable is the caller's contract.
    unsafe { rank.write(dims.len()) };
    if capacity < dims.len() {
        return Err(Failure::too_small(format!(
            "{what} has rank {}, but the shape buffer holds {capacity} (the rank was written)",
            dims.len()
        )));
    }
    if dims.is_empty() {
        return Ok(());
    }
    check_ptr(shape, "shape")?;
    for (i, &d) in dims.iter().enumerate() {
        let d = i64::try_from(d).map_err(|_| Failure::invalid(format!("{what}: dimension {d} exceeds int64_t")))?;
        // SAFETY: `shape` is non-NULL and aligned (checked above) and
        // `i < dims.len() <= capacity`, so the write is within the buffer
        // the caller promised.
        unsafe { shape.add(i).write(d) };
    }
    Ok(())
}

// ---- the API -----------------------------------------------------------------

/// This thread's last error message: `""` when the last fallible call
/// succeeded. Never NULL. Valid until the next `oar_*` call on this thread.
#[no_mangle]
pub extern "C" fn oar_last_error() -> *const c_char {
    static EMPTY: &CStr = c"";
    // try_with / try_borrow: no panic even during thread teardown.
    LAST_ERROR
        .try_with(|cell| cell.try_borrow().ok().and_then(|slot| slot.as_ref().map(|c| c.as_ptr())))
        .ok()
        .flatten()
        .unwrap_or(EMPTY.as_ptr())
}

/// Loads, validates and compiles the model saved in `model_dir` (a directory
/// with `model.json` and `weights.safetensors`). `threads > 0` sets the
/// process-wide kernel thread count; `threads <= 0` keeps the current one.
/// NULL on failure.
///
/// # Safety
/// `model_dir` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_create(model_dir: *const c_char, threads: c_int) -> *mut OarPredictor {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let dir = unsafe { cstr_arg(model_dir, "model_dir") }?;
        let mut config = Config::new(path_of(dir)?);
        if threads > 0 {
            config = config.with_threads(threads as usize);
        }
        let inner = Predictor::new(&config)?;
        let input_names = inner
            .input_names()
            .iter()
            .map(|n| CString::new(*n).map_err(|_| Failure::invalid(format!("input name {n:?} contains a NUL"))))
            .collect::<Outcome<Vec<_>>>()?;
        Ok(Box::into_raw(Box::new(OarPredictor { inner, input_names })))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// A second predictor over the same compiled model and weights (shared, not
/// copied), with its own input and output slots, for another thread. NULL on
/// failure.
///
/// # Safety
/// `predictor` must be NULL or a live predictor from this library that no
/// other thread is using during the call.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_clone(predictor: *const OarPredictor) -> *mut OarPredictor {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        Ok(Box::into_raw(Box::new(OarPredictor { inner: p.inner.clone(), input_names: p.input_names.clone() })))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Frees a predictor (NULL: nothing happens). Its weights are freed with the
/// last predictor sharing them. Leaves `oar_last_error` unchanged.
///
/// # Safety
/// `predictor` must be NULL or a live predictor from this library, not used
/// again afterwards.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_destroy(predictor: *mut OarPredictor) {
    if predictor.is_null() {
        return;
    }
    // SAFETY: non-NULL; by contract it came from Box::into_raw in create or
    // clone and is not used again, so taking the box back is sound.
    let boxed = unsafe { Box::from_raw(predictor) };
    // Dropping tensors does not panic, but nothing may unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

/// Writes the number of model inputs to `*count`.
///
/// # Safety
/// `predictor` must be NULL or a live predictor; `count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_input_count(predictor: *const OarPredictor, count: *mut usize) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        // SAFETY: forwarded from this function's contract.
        let count = unsafe { mut_arg(count, "count") }?;
        *count = p.input_names.len();
        Ok(())
    })
}

/// The name of input `index` (for `oar_predictor_set_input`), owned by the
/// predictor and valid while it lives. NULL on failure.
///
/// # Safety
/// `predictor` must be NULL or a live predictor.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_input_name(predictor: *const OarPredictor, index: usize) -> *const c_char {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        match p.input_names.get(index) {
            Some(name) => Ok(name.as_ptr()),
            None => Err(Failure::invalid(format!(
                "input {index} does not exist; the model has {} inputs",
                p.input_names.len()
            ))),
        }
    })
    .unwrap_or(std::ptr::null())
}

/// The shape the model was traced for on input `name`: the rank goes to
/// `*rank` (always, even if the buffer is too small), the dimensions to
/// `shape[0..rank]`, which must hold `capacity >= rank` elements.
///
/// # Safety
/// `predictor`: NULL or live; `name`: NULL or NUL-terminated; `rank`: NULL or
/// writable; `shape`: NULL or writable for `capacity` elements.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_input_shape(
    predictor: *const OarPredictor,
    name: *const c_char,
    shape: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        // SAFETY: forwarded from this function's contract.
        let name = utf8(unsafe { cstr_arg(name, "name") }?, "name")?;
        let graph = p.inner.plan().graph();
        let Some(input) = graph.inputs.iter().find(|i| i.name == name) else {
            return Err(Failure::invalid(format!(
                "no input `{name}`; the model's inputs are {:?}",
                p.inner.input_names()
            )));
        };
        let dims = graph.meta(input.value).shape.dims();
        // SAFETY: forwarded from this function's contract.
        unsafe { write_shape(dims, shape, capacity, rank, &format!("input `{name}`")) }
    })
}

/// Writes the number of model outputs to `*count` (known before any run).
///
/// # Safety
/// `predictor` must be NULL or a live predictor; `count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_output_count(predictor: *const OarPredictor, count: *mut usize) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        // SAFETY: forwarded from this function's contract.
        let count = unsafe { mut_arg(count, "count") }?;
        *count = p.inner.plan().graph().outputs.len();
        Ok(())
    })
}

/// Copies `data` (row-major f32, `shape[0] * ... * shape[rank-1]` elements)
/// into input `name`. The shape must be the traced one; a model saved with a
/// dynamic batch also takes another first dim (the batch size).
///
/// # Safety
/// `predictor`: NULL or live, not used by another thread during the call;
/// `name`: NULL or NUL-terminated; `shape`: NULL or `rank` readable elements;
/// `data`: NULL or as many readable floats as the shape has elements.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_set_input(
    predictor: *mut OarPredictor,
    name: *const c_char,
    data: *const f32,
    shape: *const i64,
    rank: usize,
) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { mut_arg(predictor, "predictor") }?;
        // SAFETY: forwarded from this function's contract.
        let name = utf8(unsafe { cstr_arg(name, "name") }?, "name")?;
        // SAFETY: forwarded from this function's contract.
        let raw_dims = unsafe { slice_arg(shape, rank, "shape") }?;
        let mut dims = Vec::with_capacity(rank);
        for (i, &d) in raw_dims.iter().enumerate() {
            let d = usize::try_from(d)
                .map_err(|_| Failure::invalid(format!("input `{name}`: shape[{i}] = {d} is negative")))?;
            dims.push(d);
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Failure::invalid(format!("input `{name}`: shape {dims:?} has too many elements")))?;
        // Name and shape are checked against the model before `data` is read.
        let mut input = p.inner.input(name)?;
        input.reshape(&dims)?;
        // SAFETY: forwarded from this function's contract (`numel` is the
        // element count of `shape`).
        let values = unsafe { slice_arg(data, numel, "data") }?;
        input.copy_from_cpu(values)?;
        Ok(())
    })
}

/// Runs the model on the inputs set so far (all must have been set).
///
/// # Safety
/// `predictor` must be NULL or live, not used by another thread during the
/// call.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_run(predictor: *mut OarPredictor) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { mut_arg(predictor, "predictor") }?;
        p.inner.run()?;
        Ok(())
    })
}

/// The shape of output `index` of the last successful run, written as in
/// `oar_predictor_input_shape` (the rank always, the dimensions when
/// `capacity >= rank`).
///
/// # Safety
/// `predictor`: NULL or live; `rank`: NULL or writable; `shape`: NULL or
/// writable for `capacity` elements.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_output_shape(
    predictor: *const OarPredictor,
    index: usize,
    shape: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        let output = p.inner.output(index)?;
        // SAFETY: forwarded from this function's contract.
        unsafe { write_shape(output.shape(), shape, capacity, rank, &format!("output {index}")) }
    })
}

/// Copies output `index` of the last successful run (row-major f32) into
/// `data`, which holds `capacity` floats; fails with
/// `OAR_ERR_BUFFER_TOO_SMALL`, writing nothing, when the output has more.
///
/// # Safety
/// `predictor`: NULL or live; `data`: NULL or writable for `capacity` floats.
#[no_mangle]
pub unsafe extern "C" fn oar_predictor_get_output(
    predictor: *const OarPredictor,
    index: usize,
    data: *mut f32,
    capacity: usize,
) -> c_int {
    status(|| {
        // SAFETY: forwarded from this function's contract.
        let p = unsafe { ref_arg(predictor, "predictor") }?;
        let output = p.inner.output(index)?;
        let numel: usize = output.shape().iter().product();
        if capacity < numel {
            return Err(Failure::too_small(format!(
                "output {index} has {numel} elements (shape {:?}), but the buffer holds {capacity}",
                output.shape()
            )));
        }
        let values = output.copy_to_cpu::<f32>()?;
        if values.is_empty() {
            return Ok(());
        }
        check_ptr(data, "data")?;
        // SAFETY: `data` is non-NULL and aligned (checked above) and, by
        // contract, writable for `capacity >= numel == values.len()` floats;
        // `values` is our own fresh buffer, so the two cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), data, values.len()) };
        Ok(())
    })
}
