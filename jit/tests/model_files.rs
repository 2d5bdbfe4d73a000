//! Saved models: every kind of broken file is an `Err` with a clear message,
//! never a panic, and a mutation fuzz over real model files backs that up.

mod common;

use common::randn;
use oar_jit::format::{digest, from_bytes, GRAPH_FILE, WEIGHTS_FILE};
use oar_jit::{to_static, Config, Predictor};
use oar_nn::models::LeNet5;
use oar_nn::Module;
use oar_tensor::{DType, Device, Generator, Tensor};
use std::path::{Path, PathBuf};

fn saved_lenet(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oar_jit_files_{tag}_{}", std::process::id()));
    let mut m = LeNet5::new().unwrap();
    m.eval();
    let x = randn(&[2, 1, 28, 28]);
    to_static(&m, &x).unwrap().save(&x, &dir).unwrap();
    dir
}

fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (std::fs::read(dir.join(GRAPH_FILE)).unwrap(), std::fs::read(dir.join(WEIGHTS_FILE)).unwrap())
}

fn err_of(dir: &Path, json: &[u8], weights: &[u8]) -> String {
    match from_bytes(dir, json, weights) {
        Ok(_) => panic!("a broken model loaded"),
        Err(e) => e.to_string(),
    }
}

/// The graph file as JSON, edited by `f`, re-serialized.
fn edit(json: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn broken_files_are_clear_errors() {
    let dir = saved_lenet("broken");
    let (json, weights) = files(&dir);
    from_bytes(&dir, &json, &weights).expect("the intact files load");

    let e = err_of(&dir, &json[..json.len() / 2], &weights);
    assert!(e.contains("model.json") && e.contains("not a valid graph file"), "{e}");
    let e = err_of(&dir, &json, &weights[..weights.len() - 100]);
    assert!(e.contains("weights.safetensors"), "{e}");
    let e = err_of(&dir, &edit(&json, |v| v["version"] = 99.into()), &weights);
    assert!(e.contains("version 99 is not supported"), "{e}");
    let e = err_of(&dir, &edit(&json, |v| v["format"] = "onnx".into()), &weights);
    assert!(e.contains("format"), "{e}");
    let e = err_of(&dir, &edit(&json, |v| v["nodes"][0]["op"] = serde_json::json!({"Unary": "Frobnicate"})), &weights);
    assert!(e.contains("unknown variant") && e.contains("Frobnicate"), "{e}");
    let e = err_of(&dir, &edit(&json, |v| v["nodes"][1]["inputs"][0] = 9999.into()), &weights);
    assert!(e.contains("refers to value 9999"), "{e}");
    // A node reading a value defined later (or never): the last node's output.
    let e = err_of(
        &dir,
        &edit(&json, |v| {
            let last = v["nodes"].as_array().unwrap().last().unwrap()["outputs"][0].clone();
            v["nodes"][0]["inputs"][0] = last;
        }),
        &weights,
    );
    assert!(e.contains("before it is defined"), "{e}");
    // Declared shapes that disagree with what an op computes.
    let e = err_of(&dir, &edit(&json, |v| v["values"][0]["shape"] = serde_json::json!([2, 1, 27, 28])), &weights);
    assert!(e.contains("node 0"), "{e}");
    let e =
        err_of(&dir, &edit(&json, |v| v["values"][0]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40])), &weights);
    assert!(e.contains("impossible shape"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn weights_must_match_the_graph() {
    let dir = saved_lenet("weights");
    let (json, weights) = files(&dir);
    let (mut sd, _) = oar_nn::checkpoint::parse_safetensors(&dir.join(WEIGHTS_FILE), &weights).unwrap();
    let name = sd.keys()[0].to_string();
    let shape = sd.get(&name).unwrap().dims().to_vec();
    let mut wrong = shape.clone();
    wrong[0] += 1;
    sd.insert(name.clone(), Tensor::zeros(wrong, DType::F32, &Device::cpu()).unwrap());
    let bad = oar_nn::checkpoint::to_safetensors_bytes(sd.iter(), None).unwrap();
    // A file from another save is caught by the digest first ...
    let e = err_of(&dir, &json, &bad);
    assert!(e.contains("different saves"), "{e}");
    // ... and with a matching digest, by the shape check.
    let json2 = edit(&json, |v| v["weights_digest"] = digest(&bad).into());
    let e = err_of(&dir, &json2, &bad);
    assert!(e.contains(&name) && e.contains("the graph declares"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_predictor_rejects_wrong_inputs() {
    let dir = saved_lenet("predictor");
    let mut p = Predictor::new(&Config::new(&dir)).unwrap();
    assert!(p.run().unwrap_err().to_string().contains("never set"));
    assert!(p.input("image").map(|_| ()).unwrap_err().to_string().contains("input0"));
    let e = p.input("input0").unwrap().reshape(&[2, 1, 28, 29]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("[2, 1, 28, 28]") && e.contains("[2, 1, 28, 29]"), "{e}");
    let e = p.input("input0").unwrap().copy_from_cpu(&[0f32; 10]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("1568 elements"), "{e}");
    let e = p.input("input0").unwrap().copy_from_cpu(&[0f64; 1568]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("dtype"), "{e}");
    assert!(p.output(0).is_err(), "no output before a run");
    assert!(Predictor::new(&Config::new(dir.join("missing"))).err().unwrap().to_string().contains("model.json"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Random byte edits of the graph file (flips, deletions, digit changes) and
/// of the weights file: each load returns Ok or Err, never panics, and what
/// loads also runs without panicking.
#[test]
fn mutated_model_files_never_panic() {
    let dir = saved_lenet("fuzz");
    let (json, weights) = files(&dir);
    let mut gen = Generator::new(7);
    let mut rand = |n: usize| ((gen.uniform(1)[0] * n as f64) as usize).min(n - 1);
    let x = randn(&[2, 1, 28, 28]);
    let (mut cases, mut loaded) = (0, 0);
    for round in 0..600 {
        let (mut j, mut w) = (json.clone(), weights.clone());
        let target = if round % 5 == 4 { &mut w } else { &mut j };
        for _ in 0..1 + rand(3) {
            let i = rand(target.len());
            match rand(4) {
                0 => target[i] ^= 1 << rand(8),
                1 => {
                    target.remove(i);
                }
                2 if target[i].is_ascii_digit() => target[i] = b'0' + rand(10) as u8,
                _ => target[i] = b"0123456789[]{},\":-e."[rand(20)],
            }
        }
        if round % 5 == 4 {
            // Re-sign the weights, so the fuzz reaches the safetensors parser
            // and the weight checks rather than stopping at the digest.
            j = edit(&j, |v| v["weights_digest"] = digest(&w).into());
        }
        cases += 1;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let g = from_bytes(&dir, &j, &w)?;
            let plan = oar_jit::Plan::new(g)?;
            if plan.input_metas().first().is_some_and(|m| m.shape.dims() == x.dims()) {
                plan.run(std::slice::from_ref(&x))?;
            }
            Ok::<_, oar_tensor::Error>(())
        }));
        match result {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(_)) => {}
            Err(_) => panic!("mutation {round} panicked"),
        }
    }
    println!("{cases} mutated model files: {loaded} loaded, {} rejected with an error", cases - loaded);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_batch_spec_is_rejected() {
    let dir = saved_lenet("batch");
    let (json, weights) = files(&dir);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap().get("batch").is_some(),
        "LeNet-5 saves with a dynamic batch"
    );
    let e = err_of(&dir, &edit(&json, |v| v["batch"]["traced"] = 5.into()), &weights);
    assert!(e.contains("batch spec"), "{e}");
    let e = err_of(&dir, &edit(&json, |v| v["batch"]["values"][0] = serde_json::json!([0, 3])), &weights);
    assert!(e.contains("batch spec"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
