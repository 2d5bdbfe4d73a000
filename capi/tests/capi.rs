//! The C ABI called from Rust: a saved LeNet-5 run through `oar_predictor_*`
//! gives bit-for-bit the output of `oar_jit::Predictor`, and every kind of bad
//! call returns an error code with a clear message in `oar_last_error`.

#![warn(clippy::undocumented_unsafe_blocks)]

use oar_capi::*;
use oar_jit::{to_static, Config, Predictor};
use oar_nn::models::LeNet5;
use oar_nn::{Forward, Module};
use oar_tensor::{DType, Device, Tensor};
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::OnceLock;

const SHAPE: [i64; 4] = [2, 1, 28, 28];
const NUMEL: usize = 2 * 28 * 28;

/// One LeNet-5 model directory per test process, saved for [2, 1, 28, 28]
/// only (`save_static`), so other batch sizes are errors.
fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("oar_capi_lenet_{}", std::process::id()));
        let mut m = LeNet5::new().unwrap();
        m.eval();
        let x = Tensor::randn(vec![2, 1, 28, 28], DType::F32, &Device::cpu()).unwrap();
        to_static(&m, &x).unwrap().save_static(&x, &dir).unwrap();
        dir
    })
}

fn c_path(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

/// Deterministic image data.
fn images(seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..NUMEL)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn last_error() -> String {
    // SAFETY: oar_last_error never returns NULL and the string stays valid
    // until the next oar_* call on this thread; it is copied right away.
    unsafe { CStr::from_ptr(oar_last_error()) }.to_str().unwrap().to_string()
}

/// Owns a predictor handle for the duration of a test.
struct Handle(*mut OarPredictor);

impl Handle {
    fn create(dir: &Path, threads: i32) -> Handle {
        let dir = c_path(dir);
        // SAFETY: `dir` is a NUL-terminated string that outlives the call.
        let p = unsafe { oar_predictor_create(dir.as_ptr(), threads) };
        assert!(!p.is_null(), "create failed: {}", last_error());
        assert_eq!(last_error(), "");
        Handle(p)
    }

    fn set_input(&self, name: &str, data: &[f32], shape: &[i64]) -> i32 {
        let name = CString::new(name).unwrap();
        // SAFETY: a live handle; `name` NUL-terminated; `shape` holds
        // `shape.len()` elements; callers pass `data` with at least as many
        // floats as `shape` has elements (or check that the call fails first).
        unsafe { oar_predictor_set_input(self.0, name.as_ptr(), data.as_ptr(), shape.as_ptr(), shape.len()) }
    }

    fn run(&self) -> i32 {
        // SAFETY: a live handle used by this thread only.
        unsafe { oar_predictor_run(self.0) }
    }

    fn output_shape(&self, index: usize) -> Vec<i64> {
        let mut shape = [0i64; 8];
        let mut rank = 0usize;
        // SAFETY: a live handle; `shape` holds 8 elements; `rank` is writable.
        let rc = unsafe { oar_predictor_output_shape(self.0, index, shape.as_mut_ptr(), shape.len(), &mut rank) };
        assert_eq!(rc, OAR_OK, "{}", last_error());
        shape[..rank].to_vec()
    }

    fn output(&self, index: usize) -> Vec<f32> {
        let numel: i64 = self.output_shape(index).iter().product();
        let mut out = vec![f32::NAN; numel as usize];
        // SAFETY: a live handle; `out` holds `out.len()` floats.
        let rc = unsafe { oar_predictor_get_output(self.0, index, out.as_mut_ptr(), out.len()) };
        assert_eq!(rc, OAR_OK, "{}", last_error());
        out
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from create or clone and is not used again.
        unsafe { oar_predictor_destroy(self.0) };
    }
}

fn rust_predictor_output(dir: &Path, x: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let mut p = Predictor::new(&Config::new(dir).with_threads(1)).unwrap();
    p.input("input0").unwrap().reshape(&[2, 1, 28, 28]).unwrap().copy_from_cpu(x).unwrap();
    p.run().unwrap();
    let out = p.output(0).unwrap();
    (out.shape().to_vec(), out.copy_to_cpu::<f32>().unwrap())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn c_api_matches_the_rust_predictor_bit_for_bit() {
    let dir = model_dir();
    let p = Handle::create(dir, 1);
    let x = images(1);

    let mut count = 0usize;
    // SAFETY: a live handle and a writable count.
    assert_eq!(unsafe { oar_predictor_input_count(p.0, &mut count) }, OAR_OK);
    assert_eq!(count, 1);
    // SAFETY: a live handle and a writable count.
    assert_eq!(unsafe { oar_predictor_output_count(p.0, &mut count) }, OAR_OK);
    assert_eq!(count, 1);
    // SAFETY: a live handle; a non-NULL result is a NUL-terminated string
    // owned by the handle, read while it lives.
    let name = unsafe { CStr::from_ptr(oar_predictor_input_name(p.0, 0)) }.to_str().unwrap().to_string();
    assert_eq!(name, "input0");
    let (mut shape, mut rank) = ([0i64; 4], 0usize);
    let cname = CString::new(name.as_str()).unwrap();
    // SAFETY: a live handle; `cname` NUL-terminated; `shape` holds 4; `rank` writable.
    let rc = unsafe { oar_predictor_input_shape(p.0, cname.as_ptr(), shape.as_mut_ptr(), 4, &mut rank) };
    assert_eq!((rc, rank, shape), (OAR_OK, 4, SHAPE), "{}", last_error());

    assert_eq!(p.set_input(&name, &x, &SHAPE), OAR_OK, "{}", last_error());
    assert_eq!(p.run(), OAR_OK, "{}", last_error());
    assert_eq!(last_error(), "");
    assert_eq!(p.output_shape(0), vec![2, 10]);
    let c_out = p.output(0);

    let (rust_shape, rust_out) = rust_predictor_output(dir, &x);
    assert_eq!(rust_shape, vec![2, 10]);
    assert_eq!(bits(&c_out), bits(&rust_out), "C API and Predictor outputs differ");
    assert!(c_out.iter().all(|v| v.is_finite()));

    // A clone shares the model, keeps the outputs of the original's last run
    // until it runs itself, and computes the same function.
    // SAFETY: a live handle, not used elsewhere during the call.
    let q = Handle(unsafe { oar_predictor_clone(p.0) });
    assert!(!q.0.is_null(), "{}", last_error());
    assert_eq!(bits(&q.output(0)), bits(&c_out));
    let y = images(2);
    assert_eq!(q.set_input("input0", &y, &SHAPE), OAR_OK, "{}", last_error());
    assert_eq!(q.run(), OAR_OK, "{}", last_error());
    assert_eq!(bits(&q.output(0)), bits(&rust_predictor_output(dir, &y).1));
    assert_eq!(bits(&p.output(0)), bits(&c_out), "running the clone changed the original");
    drop(p);
    // The clone outlives the original.
    assert_eq!(q.run(), OAR_OK, "{}", last_error());
}

#[test]
fn clones_run_on_other_threads() {
    // Threads = 1 as in the bit-for-bit test, so every compared run uses
    // the same kernel pool size.
    let p = Handle::create(model_dir(), 1);
    let x = images(3);
    assert_eq!(p.set_input("input0", &x, &SHAPE), OAR_OK);
    assert_eq!(p.run(), OAR_OK);
    let want = bits(&p.output(0));
    let clones: Vec<usize> = (0..3)
        .map(|_| {
            // SAFETY: a live handle, used by this thread only.
            let q = unsafe { oar_predictor_clone(p.0) };
            assert!(!q.is_null());
            q as usize
        })
        .collect();
    let handles: Vec<_> = clones
        .into_iter()
        .map(|q| {
            let x = x.clone();
            std::thread::spawn(move || {
                let q = Handle(q as *mut OarPredictor);
                assert_eq!(q.set_input("input0", &x, &SHAPE), OAR_OK, "{}", last_error());
                assert_eq!(q.run(), OAR_OK, "{}", last_error());
                bits(&q.output(0))
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}

#[test]
fn create_fails_cleanly() {
    // SAFETY: NULL is an accepted argument.
    let p = unsafe { oar_predictor_create(ptr::null(), 0) };
    assert!(p.is_null());
    assert!(last_error().contains("model_dir is NULL"), "{}", last_error());

    let missing = c_path(&std::env::temp_dir().join("oar_capi_no_such_model_dir"));
    // SAFETY: a NUL-terminated string that outlives the call.
    let p = unsafe { oar_predictor_create(missing.as_ptr(), 0) };
    assert!(p.is_null());
    let e = last_error();
    assert!(e.contains("oar_capi_no_such_model_dir"), "{e}");

    // A directory that exists but holds no model.
    let empty = std::env::temp_dir().join(format!("oar_capi_empty_{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let c_empty = c_path(&empty);
    // SAFETY: a NUL-terminated string that outlives the call.
    let p = unsafe { oar_predictor_create(c_empty.as_ptr(), 0) };
    assert!(p.is_null());
    assert!(last_error().contains("model.json"), "{}", last_error());
    std::fs::remove_dir_all(&empty).unwrap();

    // A successful call clears the message.
    let _ok = Handle::create(model_dir(), 0);
    assert_eq!(last_error(), "");

    // SAFETY: NULL is accepted by clone and destroy.
    unsafe {
        assert!(oar_predictor_clone(ptr::null()).is_null());
        assert!(last_error().contains("predictor is NULL"), "{}", last_error());
        oar_predictor_destroy(ptr::null_mut());
    }
}

#[test]
fn null_pointers_are_errors() {
    let p = Handle::create(model_dir(), 0);
    let x = images(4);
    let name = CString::new("input0").unwrap();
    let (mut shape, mut rank, mut count) = ([0i64; 4], 0usize, 0usize);
    let mut out = [0f32; 20];
    let expect_null = |rc: i32, what: &str| {
        assert_eq!(rc, OAR_ERR_INVALID_ARGUMENT, "{what}");
        let e = last_error();
        assert!(e.contains(&format!("{what} is NULL")), "{what}: {e}");
    };
    // SAFETY: every pointer is NULL or valid for the access the function
    // makes (sizes as documented); NULLs are what is under test.
    unsafe {
        expect_null(
            oar_predictor_set_input(ptr::null_mut(), name.as_ptr(), x.as_ptr(), SHAPE.as_ptr(), 4),
            "predictor",
        );
        expect_null(oar_predictor_set_input(p.0, ptr::null(), x.as_ptr(), SHAPE.as_ptr(), 4), "name");
        expect_null(oar_predictor_set_input(p.0, name.as_ptr(), ptr::null(), SHAPE.as_ptr(), 4), "data");
        expect_null(oar_predictor_set_input(p.0, name.as_ptr(), x.as_ptr(), ptr::null(), 4), "shape");
        expect_null(oar_predictor_run(ptr::null_mut()), "predictor");
        expect_null(oar_predictor_input_count(ptr::null(), &mut count), "predictor");
        expect_null(oar_predictor_input_count(p.0, ptr::null_mut()), "count");
        expect_null(oar_predictor_output_count(p.0, ptr::null_mut()), "count");
        expect_null(oar_predictor_input_shape(p.0, ptr::null(), shape.as_mut_ptr(), 4, &mut rank), "name");
        expect_null(oar_predictor_input_shape(p.0, name.as_ptr(), shape.as_mut_ptr(), 4, ptr::null_mut()), "rank");
        expect_null(oar_predictor_input_shape(p.0, name.as_ptr(), ptr::null_mut(), 4, &mut rank), "shape");
        assert!(oar_predictor_input_name(ptr::null(), 0).is_null());
        assert!(last_error().contains("predictor is NULL"));
    }
    assert_eq!(p.set_input("input0", &x, &SHAPE), OAR_OK, "{}", last_error());
    assert_eq!(p.run(), OAR_OK, "{}", last_error());
    // SAFETY: as above.
    unsafe {
        expect_null(oar_predictor_output_shape(ptr::null(), 0, shape.as_mut_ptr(), 4, &mut rank), "predictor");
        expect_null(oar_predictor_output_shape(p.0, 0, shape.as_mut_ptr(), 4, ptr::null_mut()), "rank");
        expect_null(oar_predictor_output_shape(p.0, 0, ptr::null_mut(), 4, &mut rank), "shape");
        expect_null(oar_predictor_get_output(ptr::null(), 0, out.as_mut_ptr(), 20), "predictor");
        expect_null(oar_predictor_get_output(p.0, 0, ptr::null_mut(), 20), "data");
    }
    // The failed calls left the predictor usable.
    assert_eq!(p.output(0).len(), 20);
}

#[test]
fn bad_inputs_are_errors() {
    let p = Handle::create(model_dir(), 0);
    let x = images(5);

    // Outputs before any run.
    let (mut shape, mut rank) = ([0i64; 4], 0usize);
    // SAFETY: a live handle; `shape` holds 4; `rank` writable.
    let rc = unsafe { oar_predictor_output_shape(p.0, 0, shape.as_mut_ptr(), 4, &mut rank) };
    assert_eq!(rc, OAR_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("run() has not succeeded"), "{}", last_error());
    // Running before the input is set.
    assert_eq!(p.run(), OAR_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("input `input0` was never set"), "{}", last_error());

    // Unknown input name: the message lists the real ones.
    assert_eq!(p.set_input("image", &x, &SHAPE), OAR_ERR_INVALID_ARGUMENT);
    let e = last_error();
    assert!(e.contains("no input `image`") && e.contains("input0"), "{e}");
    let bad = CString::new("image").unwrap();
    // SAFETY: a live handle; `bad` NUL-terminated; `shape` holds 4; `rank` writable.
    let rc = unsafe { oar_predictor_input_shape(p.0, bad.as_ptr(), shape.as_mut_ptr(), 4, &mut rank) };
    assert_eq!(rc, OAR_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("no input `image`"), "{}", last_error());
    // SAFETY: a live handle.
    assert!(unsafe { oar_predictor_input_name(p.0, 1) }.is_null());
    assert!(last_error().contains("input 1 does not exist"), "{}", last_error());
    // A name that is not UTF-8.
    let latin1 = [0xe9u8, 0];
    // SAFETY: a live handle; a NUL-terminated byte string; `x` has NUMEL floats.
    let rc = unsafe { oar_predictor_set_input(p.0, latin1.as_ptr() as *const c_char, x.as_ptr(), SHAPE.as_ptr(), 4) };
    assert_eq!(rc, OAR_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("not valid UTF-8"), "{}", last_error());

    // Wrong shapes: other batch size, other rank, negative dimension. The
    // data is never read for them (`x` is smaller than [4, 1, 28, 28]).
    for bad in [&[4i64, 1, 28, 28][..], &[2, 784], &[2, -1, 28, 28]] {
        assert_eq!(p.set_input("input0", &x, bad), OAR_ERR_INVALID_ARGUMENT, "{bad:?}");
        let e = last_error();
        if bad.contains(&-1) {
            assert!(e.contains("shape[1] = -1 is negative"), "{e}");
        } else {
            assert!(e.contains("shape mismatch") && e.contains("[2, 1, 28, 28]"), "{bad:?}: {e}");
        }
    }
    assert_eq!(p.run(), OAR_ERR_INVALID_ARGUMENT, "a rejected input must not count as set");

    assert_eq!(p.set_input("input0", &x, &SHAPE), OAR_OK, "{}", last_error());
    assert_eq!(p.run(), OAR_OK, "{}", last_error());

    // Shape buffer too small: the rank is still reported.
    let mut rank = 0usize;
    // SAFETY: a live handle; `shape` holds 4 (only 1 is claimed); `rank` writable.
    let rc = unsafe { oar_predictor_output_shape(p.0, 0, shape.as_mut_ptr(), 1, &mut rank) };
    assert_eq!((rc, rank), (OAR_ERR_BUFFER_TOO_SMALL, 2));
    assert!(last_error().contains("rank 2"), "{}", last_error());
    // Capacity 0 with a NULL buffer asks for the rank only.
    // SAFETY: a live handle; nothing is written to the NULL buffer; `rank` writable.
    let rc = unsafe { oar_predictor_output_shape(p.0, 0, ptr::null_mut(), 0, &mut rank) };
    assert_eq!((rc, rank), (OAR_ERR_BUFFER_TOO_SMALL, 2));
    // SAFETY: a live handle; `shape` holds 4; `rank` writable.
    let rc = unsafe { oar_predictor_input_shape(p.0, c"input0".as_ptr(), shape.as_mut_ptr(), 3, &mut rank) };
    assert_eq!((rc, rank), (OAR_ERR_BUFFER_TOO_SMALL, 4));

    // Output buffer too small: an error, and nothing written.
    let mut out = vec![-7.0f32; 19];
    // SAFETY: a live handle; `out` holds 19 floats.
    let rc = unsafe { oar_predictor_get_output(p.0, 0, out.as_mut_ptr(), out.len()) };
    assert_eq!(rc, OAR_ERR_BUFFER_TOO_SMALL);
    let e = last_error();
    assert!(e.contains("20 elements") && e.contains("holds 19"), "{e}");
    assert!(out.iter().all(|&v| v == -7.0));
    // A larger buffer is fine; only the first 20 are written.
    let mut out = vec![-7.0f32; 32];
    // SAFETY: a live handle; `out` holds 32 floats.
    let rc = unsafe { oar_predictor_get_output(p.0, 0, out.as_mut_ptr(), out.len()) };
    assert_eq!(rc, OAR_OK, "{}", last_error());
    assert!(out[..20].iter().all(|v| v.is_finite()) && out[20..].iter().all(|&v| v == -7.0));

    // Output index out of range.
    // SAFETY: a live handle; `out` holds 32 floats.
    let rc = unsafe { oar_predictor_get_output(p.0, 1, out.as_mut_ptr(), out.len()) };
    assert_eq!(rc, OAR_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("output 1 does not exist"), "{}", last_error());
    // SAFETY: a live handle; `shape` holds 4; `rank` writable.
    let rc = unsafe { oar_predictor_output_shape(p.0, 5, shape.as_mut_ptr(), 4, &mut rank) };
    assert_eq!(rc, OAR_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("output 5 does not exist"), "{}", last_error());
}

#[test]
fn last_error_is_per_thread() {
    // SAFETY: NULL is an accepted argument.
    assert_eq!(unsafe { oar_predictor_run(ptr::null_mut()) }, OAR_ERR_INVALID_ARGUMENT);
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "another thread's error leaked");
    assert!(last_error().contains("predictor is NULL"));
}

/// `include/oar.h` is written by hand: it must declare exactly the exported
/// functions and give the status codes the library's values.
#[test]
fn header_matches_the_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/oar.h")).unwrap();
    let source = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let names = |text: &str, marker: &str| -> std::collections::BTreeSet<String> {
        text.match_indices(marker)
            .map(|(at, _)| {
                let rest = &text[at + marker.len()..];
                rest[..rest.find('(').unwrap()].trim().to_string()
            })
            .collect()
    };
    let exported = names(&source, "extern \"C\" fn ");
    let declared: std::collections::BTreeSet<String> = header
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .filter_map(|l| {
            let at = l.find("oar_")?;
            let end = l[at..].find('(')?;
            Some(l[at..at + end].to_string())
        })
        .collect();
    assert_eq!(exported.len(), 12, "{exported:?}");
    assert_eq!(declared, exported, "oar.h and src/lib.rs disagree on the functions");
    for (name, value) in [
        ("OAR_OK", OAR_OK),
        ("OAR_ERR_INVALID_ARGUMENT", OAR_ERR_INVALID_ARGUMENT),
        ("OAR_ERR_BUFFER_TOO_SMALL", OAR_ERR_BUFFER_TOO_SMALL),
        ("OAR_ERR_RUNTIME", OAR_ERR_RUNTIME),
        ("OAR_ERR_PANIC", OAR_ERR_PANIC),
    ] {
        let define = format!("#define {name} {value}\n");
        assert!(header.contains(&define), "oar.h lacks `{}`", define.trim());
    }
    assert_eq!(header.matches("#define OAR_").count(), 5 + 1, "a status code oar.h has but the library lacks");
}

/// A model saved with a dynamic batch takes any batch size through the C API.
#[test]
fn dynamic_batch_models_take_any_batch_size() {
    let dir = std::env::temp_dir().join(format!("oar_capi_dynamic_{}", std::process::id()));
    let mut m = LeNet5::new().unwrap();
    m.eval();
    let x = Tensor::randn(vec![2, 1, 28, 28], DType::F32, &Device::cpu()).unwrap();
    to_static(&m, &x).unwrap().save(&x, &dir).unwrap();
    let p = Handle::create(&dir, 1);
    for n in [3usize, 1, 5] {
        let data: Vec<f32> = (0..n).flat_map(|i| images(i as u32).into_iter().take(28 * 28)).collect();
        assert_eq!(p.set_input("input0", &data, &[n as i64, 1, 28, 28]), OAR_OK, "{}", last_error());
        assert_eq!(p.run(), OAR_OK, "{}", last_error());
        assert_eq!(p.output_shape(0), [n as i64, 10]);
        let eager = m.forward(&Tensor::from_vec(data, vec![n, 1, 28, 28], &Device::cpu()).unwrap()).unwrap();
        let (want, got) = (eager.to_vec::<f32>().unwrap(), p.output(0));
        assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(1.0)), "batch {n}");
    }
    drop(p);
    std::fs::remove_dir_all(&dir).ok();
}
