//! Criterion micro-benchmarks of core `oar-tensor` CPU kernels.
//!
//! Run everything:        `cargo bench --bench tensor_ops`
//! Quick smoke run:       `cargo bench --bench tensor_ops -- --quick`
//! A subset (regex):      `cargo bench --bench tensor_ops -- matmul_f32/256`
//! Thread count:          `OAR_BENCH_THREADS=4 cargo bench --bench tensor_ops` (default 2)
//!
//! Benchmark ids are `<group>/<shape>`; `benches/torch_ops.py` times the same
//! workloads in PyTorch under the same ids and `benches/compare.py` joins the two.
//!
//! | id                                        | workload                                             |
//! |-------------------------------------------|------------------------------------------------------|
//! | `matmul_f32/{n}x{n}x{n}`                  | `[n,n] @ [n,n]`, n = 256, 512, 1024, 2048            |
//! | `conv2d_f32/in{N}x3x32x32_w10x3x3x3_p0`   | seed-model conv, bias, stride 1, no padding, N=1, 64 |
//! | `conv2d_f32/in64x1x28x28_w6x1x5x5_p2`     | LeNet-5 conv1, bias, padding 2                       |
//! | `conv2d_f32/in64x6x14x14_w16x6x5x5_p0`    | LeNet-5 conv2, bias                                  |
//! | `conv2d_f32/in32x64x16x16_w64x64x3x3_p1`  | ResNet basic-block conv, 64 channels (im2col + gemm) |
//! | `conv2d_f32/{conv}_prepacked`             | each conv above from weights packed once (Oar only)  |
//! | `add_f32/1024x1024`                       | element-wise add of two 1M-element tensors           |
//! | `add_f32/1`                               | add of two `[1]` tensors (per-op overhead)           |
//! | `sum_all_f32/1024x1024`                   | `sum_all` over 1M elements                           |
//! | `softmax_f32/64x1000_dim1`                | `softmax(1)` of a `[64, 1000]` tensor                |
//!
//! Throughput is reported as elements/s; for matmul the element count is the
//! FLOP count `2 n^3`, so criterion's "elem/s" reads as FLOP/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oar::prelude::*;
use oar::tensor::op::Op;

mod common;
use common::randn;

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_f32");
    for n in [256usize, 512, 1024, 2048] {
        let a = randn(&[n, n]);
        let b = randn(&[n, n]);
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        if n >= 1024 {
            // ~10-200 ms per call: few, equally sized samples.
            g.sampling_mode(SamplingMode::Flat).sample_size(10);
            g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(if n >= 2048 { 4 } else { 3 }));
        } else {
            g.sampling_mode(SamplingMode::Auto).sample_size(30);
            g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        }
        g.bench_function(BenchmarkId::from_parameter(format!("{n}x{n}x{n}")), |bch| {
            bch.iter(|| black_box(a.matmul(black_box(&b)).unwrap()))
        });
    }
    g.finish();
}

fn conv2d(c: &mut Criterion) {
    // (id, input shape, weight shape, padding)
    let cases: [(&str, [usize; 4], [usize; 4], usize); 5] = [
        ("in1x3x32x32_w10x3x3x3_p0", [1, 3, 32, 32], [10, 3, 3, 3], 0),
        ("in64x3x32x32_w10x3x3x3_p0", [64, 3, 32, 32], [10, 3, 3, 3], 0),
        ("in64x1x28x28_w6x1x5x5_p2", [64, 1, 28, 28], [6, 1, 5, 5], 2),
        ("in64x6x14x14_w16x6x5x5_p0", [64, 6, 14, 14], [16, 6, 5, 5], 0),
        // A ResNet basic block's: 64 channels take im2col + gemm.
        ("in32x64x16x16_w64x64x3x3_p1", [32, 64, 16, 16], [64, 64, 3, 3], 1),
    ];
    let mut g = c.benchmark_group("conv2d_f32");
    g.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (id, xs, ws, pad) in cases {
        let x = randn(&xs);
        let w = randn(&ws);
        let b = randn(&[ws[0]]);
        let p = Conv2dParams { stride: [1, 1], padding: [pad, pad], ..Default::default() };
        // Sanity-check the shape once, outside the timed loop.
        let out = x.conv2d(&w, Some(&b), &p).expect("conv2d");
        let (oh, ow) = (xs[2] + 2 * pad - ws[2] + 1, xs[3] + 2 * pad - ws[3] + 1);
        assert_eq!(out.dims(), &[xs[0], ws[0], oh, ow][..], "{id}");
        // Multiply-adds as "elements" (2x that is FLOPs).
        g.throughput(Throughput::Elements((xs[0] * ws[0] * oh * ow * ws[1] * ws[2] * ws[3]) as u64));
        g.bench_function(BenchmarkId::from_parameter(id), |bch| {
            bch.iter(|| black_box(x.conv2d(black_box(&w), Some(&b), &p).unwrap()))
        });
        // The same convolution from weights packed once, as the jit's executor runs it.
        let op = Op::Conv2d(p);
        if let Some((packed_op, packed)) = w.prepack(&op, 1, &[x.meta(), w.meta(), b.meta()]).expect("prepack") {
            g.bench_function(BenchmarkId::from_parameter(format!("{id}_prepacked")), |bch| {
                bch.iter(|| black_box(Tensor::apply(packed_op.clone(), &[&x, black_box(&packed), &b]).unwrap()))
            });
        }
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("add_f32");
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let a = randn(&[1024, 1024]);
    let b = randn(&[1024, 1024]);
    g.throughput(Throughput::Elements(1 << 20));
    g.bench_function(BenchmarkId::from_parameter("1024x1024"), |bch| {
        bch.iter(|| black_box(a.add(black_box(&b)).unwrap()))
    });
    let a1 = randn(&[1]);
    let b1 = randn(&[1]);
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::from_parameter("1"), |bch| bch.iter(|| black_box(a1.add(black_box(&b1)).unwrap())));
    g.finish();

    let mut g = c.benchmark_group("sum_all_f32");
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1 << 20));
    g.bench_function(BenchmarkId::from_parameter("1024x1024"), |bch| {
        bch.iter(|| black_box(black_box(&a).sum_all().unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("softmax_f32");
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let s = randn(&[64, 1000]);
    g.throughput(Throughput::Elements(64 * 1000));
    g.bench_function(BenchmarkId::from_parameter("64x1000_dim1"), |bch| {
        bch.iter(|| black_box(black_box(&s).softmax(1).unwrap()))
    });
    g.finish();
}

fn main() {
    common::init("tensor_ops");

    let mut c = Criterion::default().configure_from_args();
    matmul(&mut c);
    conv2d(&mut c);
    elementwise(&mut c);
    c.final_summary();
}
