//! A tour of Oar's tensors: creation, views, broadcasting, reductions, matmul
//! and convolution on the CPU backend.
//!
//! cargo run --release --example tensor_tour

use oar::prelude::*;
use std::time::Instant;

fn main() -> Result<()> {
    let dev = Device::cpu();
    oar::manual_seed(42);
    println!("oar tensor tour on {dev} with {} threads\n", oar::num_threads());

    // Creation.
    let a = Tensor::arange(0.0, 6.0, 1.0, DType::F32, &dev)?.reshape([2, 3])?;
    println!("a = arange(6).reshape(2, 3)      -> {:?} {:?}", a, a.to_vec::<f32>()?);
    let noise = Tensor::randn([2, 3], DType::F32, &dev)?;
    println!("randn([2, 3]) (seed 42)          -> {:?}", round(&noise.to_vec::<f32>()?));

    // Views share storage: the transpose is a strided view, not a copy.
    let at = a.t()?;
    println!(
        "a.t()                            -> dims {:?}, strides {:?}, contiguous: {}, shares storage: {}",
        at.dims(),
        at.layout().strides(),
        at.is_contiguous(),
        at.same_storage(&a)
    );
    let every_other = Tensor::arange(0.0, 10.0, 1.0, DType::I64, &dev)?.slice(0, 1, 10, 2)?;
    println!("arange(10)[1::2]                 -> {:?}", every_other.to_vec::<i64>()?);

    // Broadcasting: [2, 3] * [3] and [2, 1] + [1, 3].
    let scale = Tensor::from_vec(vec![1f32, 10., 100.], [3], &dev)?;
    println!("a * [1, 10, 100]                 -> {:?}", a.mul(&scale)?.to_vec::<f32>()?);
    let col = Tensor::from_vec(vec![0f32, 1.], [2, 1], &dev)?;
    let row = Tensor::from_vec(vec![0f32, 10., 20.], [1, 3], &dev)?;
    println!("[2,1] + [1,3]                    -> {:?}", col.add(&row)?.to_vec::<f32>()?);

    // Reductions and a numerically stable softmax.
    println!("a.sum(dim 1)                     -> {:?}", a.sum(1, false)?.to_vec::<f32>()?);
    println!("a.var(dim 1, correction 1)       -> {:?}", a.var(1, 1, false)?.to_vec::<f32>()?);
    let logits = Tensor::from_vec(vec![1000f32, 1001., 1002.], [3], &dev)?;
    println!("softmax([1000, 1001, 1002])      -> {:?}", round(&logits.softmax(0)?.to_vec::<f32>()?));

    // Matmul, with the transposed view fed straight to gemm.
    let gram = at.matmul(&a)?;
    println!("a.t() @ a                        -> {:?}", gram.to_vec::<f32>()?);
    let n = 1024;
    let x = Tensor::randn([n, n], DType::F32, &dev)?;
    let y = Tensor::randn([n, n], DType::F32, &dev)?;
    x.matmul(&y)?; // warm-up
    let t = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        x.matmul(&y)?;
    }
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    println!("matmul {n}x{n}x{n} f32              -> {:.1} GFLOP/s", 2.0 * (n as f64).powi(3) / secs / 1e9);

    // The seed's first layer: Conv2d(3, 10, 3) -> relu -> MaxPool2d(2) on randn([1, 3, 32, 32]).
    let img = Tensor::randn([1, 3, 32, 32], DType::F32, &dev)?;
    let w = Tensor::randn([10, 3, 3, 3], DType::F32, &dev)?.mul_scalar(0.1)?;
    let b = Tensor::zeros([10], DType::F32, &dev)?;
    let feat = img.conv2d(&w, Some(&b), &Conv2dParams::default())?.relu()?.max_pool2d(&MaxPool2dParams::new(2))?;
    println!("conv2d(3->10, 3x3) relu maxpool2 -> {:?}", feat.dims());
    let flat = feat.flatten(1, -1)?;
    println!("flatten(1)                       -> {:?} (the seed's Linear(10*15*15, 10) input)", flat.dims());

    // Mixed precision: bf16 storage, f32 math.
    let h = a.to_dtype(DType::BF16)?.exp()?;
    println!("exp(a) in bf16                   -> {:?}", h.to_dtype(DType::F32)?.to_vec::<f32>()?);

    // Errors name the op and the shapes.
    let bad = a.matmul(&Tensor::ones([2, 2], DType::F32, &dev)?).unwrap_err();
    println!("\na @ ones([2, 2]) fails with: {bad}");
    Ok(())
}

fn round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| (x * 1e4).round() / 1e4).collect()
}
