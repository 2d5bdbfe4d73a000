//! The deployment half of the examples: trace the trained model into a
//! static graph, save it, load it back through a `Predictor` and check it
//! classifies the held-out set exactly as the eager model does.

use oar::jit::{to_static, Config, Predictor};
use oar::nn::data::{Dataset, TensorDataset};
use oar::nn::Layer;
use oar::prelude::*;
use std::path::Path;
use std::time::Instant;

/// Images per predictor call (the batch the graph is specialized to).
pub const BATCH: usize = 500;

/// Exports `model` (in eval mode) to `dir` and returns the Predictor's
/// held-out accuracy. The saved graph has a dynamic batch dimension, so a
/// last partial batch runs at its own size.
pub fn export_and_evaluate(model: &dyn Layer, test: &TensorDataset, dir: &Path) -> Result<f64> {
    let (n, image) = (test.len(), test.inputs().dims()[1..].to_vec());
    let mut shape = vec![BATCH];
    shape.extend(&image);
    let example = Tensor::zeros(shape.clone(), DType::F32, &Device::cpu())?;
    let fast = to_static(model, &example)?;
    let compiled = fast.compiled(&example)?;
    println!("static graph: {} traced -> {} after passes", compiled.traced.nodes, compiled.plan.graph().nodes.len());
    fast.save(&example, dir)?;
    let mut predictor = Predictor::new(&Config::new(dir))?;
    let per_image: usize = image.iter().product();
    let inputs = test.inputs().contiguous()?.to_vec::<f32>()?;
    let labels = test.targets().to_vec::<i64>()?;
    let (mut correct, t0) = (0usize, Instant::now());
    for start in (0..n).step_by(BATCH) {
        let rows = BATCH.min(n - start);
        let mut dims = vec![rows];
        dims.extend(&image);
        let batch = &inputs[start * per_image..(start + rows) * per_image];
        predictor.input("input0")?.reshape(&dims)?.copy_from_cpu(batch)?;
        predictor.run()?;
        let out = predictor.output(0)?;
        let classes = out.shape()[1];
        let logits = out.copy_to_cpu::<f32>()?;
        for r in 0..rows {
            let row = &logits[r * classes..(r + 1) * classes];
            let best = (0..classes).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            correct += (best as i64 == labels[start + r]) as usize;
        }
    }
    println!(
        "saved {} (model.json + weights.safetensors, {} batch); Predictor: {n} images in {:.0} ms",
        dir.display(),
        if predictor.dynamic_batch() { "dynamic" } else { "fixed" },
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(correct as f64 / n as f64)
}
