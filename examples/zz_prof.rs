use oar::prelude::*;
use oar::tensor::{Conv2dParams, ConvTranspose2dParams, MaxPool2dParams, UnaryOp};
use std::time::Instant;
fn t(name: &str, mut f: impl FnMut() -> Tensor) {
    if let Some(only) = std::env::args().nth(1) {
        if !name.contains(&only) {
            return;
        }
    }
    for _ in 0..5 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..7 {
        let s = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(f());
        }
        best = best.min(s.elapsed().as_secs_f64() / 20.0);
    }
    println!("{name:<40} {:>9.1} us", best * 1e6);
}
fn main() -> Result<()> {
    oar::set_num_threads(2);
    let d = Device::cpu();
    let r = |s: &[usize]| Tensor::randn(s, DType::F32, &d).unwrap();
    let x = r(&[64, 1, 28, 28]);
    let w1 = r(&[6, 1, 5, 5]);
    let b1 = r(&[6]);
    let p1 = Conv2dParams { padding: [2, 2], ..Default::default() };
    let h1 = x.conv2d(&w1, Some(&b1), &p1)?;
    t("conv1 fwd", || x.conv2d(&w1, Some(&b1), &p1).unwrap());
    t("relu1", || h1.relu().unwrap());
    oar::set_num_threads(1);
    t("relu1 1thread", || h1.relu().unwrap());
    t("relu1 small 16K 1thread", || h1.narrow(0, 0, 3).unwrap().contiguous().unwrap().relu().unwrap());
    oar::set_num_threads(2);
    let big = r(&[64, 6, 28, 28]);
    t("copy contiguous()", || big.transpose(2, 3).unwrap().contiguous().unwrap());
    {
        let src = big.to_vec::<f32>().unwrap();
        let mut dst = vec![0f32; src.len()];
        let mut best = f64::MAX;
        for _ in 0..50 {
            let s0 = Instant::now();
            for (d, &x) in dst.iter_mut().zip(&src) {
                *d = if x < 0.0 { 0.0 } else { x };
            }
            std::hint::black_box(&dst);
            best = best.min(s0.elapsed().as_secs_f64());
        }
        println!("raw relu loop prealloc (sse2)              {:>9.1} us", best * 1e6);
        let mut best = f64::MAX;
        for _ in 0..50 {
            let s0 = Instant::now();
            let v: Vec<f32> = src.iter().map(|&x| if x < 0.0 { 0.0 } else { x }).collect();
            std::hint::black_box(&v);
            best = best.min(s0.elapsed().as_secs_f64());
        }
        println!("raw relu collect (sse2)                    {:>9.1} us", best * 1e6);
    }
    t("exp", || big.exp().unwrap());
    let a1 = h1.relu()?;
    let mp = MaxPool2dParams::new(2);
    t("pool1", || a1.max_pool2d_with_indices(&mp).unwrap().0);
    let (q1, i1) = a1.max_pool2d_with_indices(&mp)?;
    let w2 = r(&[16, 6, 5, 5]);
    let b2 = r(&[16]);
    let h2 = q1.conv2d(&w2, Some(&b2), &Conv2dParams::default())?;
    t("conv2 fwd", || q1.conv2d(&w2, Some(&b2), &Conv2dParams::default()).unwrap());
    let g2 = r(h2.dims());
    t("conv2 input grad (conv_t)", || g2.conv_transpose2d(&w2, None, &ConvTranspose2dParams::default()).unwrap());
    t("conv2 weight grad", || q1.conv2d_weight_grad(&g2, [5, 5], &Conv2dParams::default()).unwrap());
    let g1 = r(h1.dims());
    t("conv1 weight grad", || x.conv2d_weight_grad(&g1, [5, 5], &p1).unwrap());
    t("relu1 backward", || g1.unary_backward(UnaryOp::Relu, &h1).unwrap());
    t("tanh backward", || g1.unary_backward(UnaryOp::Tanh, &h1).unwrap());
    t("mul same shape", || g1.mul(&h1).unwrap());
    t("add same shape", || g1.add(&h1).unwrap());
    let gq1 = r(q1.dims());
    let z = Tensor::zeros([64, 6, 784], DType::F32, &d)?;
    let i1f = i1.reshape([64, 6, 196])?;
    let gq1f = gq1.reshape([64, 6, 196])?;
    t("pool1 backward (zeros+scatter_add)", || {
        Tensor::zeros([64, 6, 784], DType::F32, &d).unwrap().scatter_add(2, &i1f, &gq1f).unwrap()
    });
    t("  scatter_add only", || z.scatter_add(2, &i1f, &gq1f).unwrap());
    t("bias grad sum [64,6,28,28] over 0,2,3", || g1.sum([0, 2, 3], false).unwrap());
    {
        let x = r(&[128, 784]);
        let w1 = r(&[512, 784]);
        let h = r(&[128, 512]);
        let w2 = r(&[512, 512]);
        let g = r(&[128, 512]);
        t("mlp fwd1 x@w1^T [128,784]x[784,512]", || x.matmul(&w1.t().unwrap()).unwrap());
        t("mlp fwd2 h@w2^T [128,512]x[512,512]", || h.matmul(&w2.t().unwrap()).unwrap());
        t("mlp dX1 g@w2 [128,512]x[512,512]", || g.matmul(&w2).unwrap());
        t("mlp dW1 g^T@x [512,128]x[128,784]", || g.t().unwrap().matmul(&x).unwrap());
        t("mlp dW1 alt x^T@g [784,128]x[128,512]", || x.t().unwrap().matmul(&g).unwrap());
        t("mlp dW2 g^T@h [512,128]x[128,512]", || g.t().unwrap().matmul(&h).unwrap());
        let gt = r(&[512, 128]).t().unwrap();
        let w2t = r(&[512, 512]).t().unwrap();
        t("mlp transpose copy 512x512", || w2t.contiguous().unwrap());
        t("mlp orient NN  g@w2", || g.matmul(&w2).unwrap());
        t("mlp orient NT  g@w2t", || g.matmul(&w2t).unwrap());
        t("mlp orient TN  gt@w2", || gt.matmul(&w2).unwrap());
        t("mlp orient TT  gt@w2t", || gt.matmul(&w2t).unwrap());
        let a512 = r(&[512, 512]);
        t("mlp sq 512^3", || a512.matmul(&w2).unwrap());
        oar::set_num_threads(1);
        t("mlp 1t dX1 g@w2 [128,512]x[512,512]", || g.matmul(&w2).unwrap());
        t("mlp 1t sq 512^3", || a512.matmul(&w2).unwrap());
        oar::set_num_threads(2);
    }
    let f = r(&[64, 400]);
    let wf = r(&[120, 400]);
    t("fc1 fwd", || f.matmul(&wf.t().unwrap()).unwrap());
    Ok(())
}
#[allow(dead_code)]
fn extra() {}
