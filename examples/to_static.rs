//! The seed's SimpleCNN through `to_static`: eager and static outputs side by
//! side, the graph before and after the passes, and the latency of both.
//!
//! cargo run --release --example to_static

use oar::jit::to_static;
use oar::nn::models::SimpleCnn;
use oar::prelude::*;
use std::time::Instant;

/// Median wall time of `f` over `runs` calls, in microseconds.
fn median_us(runs: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

fn main() -> Result<()> {
    oar::manual_seed(0);
    let mut model = SimpleCnn::new()?;
    model.eval();
    let x = Tensor::randn([1, 3, 32, 32], DType::F32, &Device::cpu())?;

    let fast = to_static(&model, &x)?;
    let compiled = fast.compiled(&x)?;
    println!("traced graph:    {}", compiled.traced);
    for p in &compiled.passes {
        println!("  pass {:<22} {} rewrites", p.pass, p.rewrites);
    }
    println!("optimized graph: {}", compiled.plan.graph().stats());
    println!("weights packed for the CPU kernels: {}", compiled.plan.prepacked_weights());
    println!("\n{}\n", compiled.plan.graph());

    let eager = {
        let _g = oar::no_grad();
        model.forward(&x)?
    };
    let graph = fast.forward(&x)?;
    println!("eager  output {:?}: {:?}", eager.dims(), eager.to_vec::<f32>()?);
    println!("static output {:?}: {:?}", graph.dims(), graph.to_vec::<f32>()?);
    let diff = eager.sub(&graph)?.abs()?.max_all()?.item()?;
    println!("max |eager - static| = {diff:.2e}");

    for batch in [1, 64] {
        let x = Tensor::randn([batch, 3, 32, 32], DType::F32, &Device::cpu())?;
        let _g = oar::no_grad();
        fast.forward(&x)?; // trace and compile this shape
        let runs = if batch == 1 { 2000 } else { 200 };
        let e = median_us(runs, || model.forward(&x))?;
        let s = median_us(runs, || fast.forward(&x))?;
        println!("batch {batch:>2}: eager {e:8.1} us, static {s:8.1} us ({:.2}x)", e / s);
    }
    Ok(())
}
