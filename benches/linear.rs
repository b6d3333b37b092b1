//! Criterion benches of linear layers at decode shapes (M = 1, 4, 16) and a prefill shape, in
//! f16 and Q4_0, with throughput in weight bytes so criterion's rate reads as bytes/s: compare it
//! with `pertoken bench`'s copy-kernel line. Run with `cargo bench --bench linear`.
//!
//! Shapes are scaled down from a 7–8B model's (K, N) = (4096, 14336): lavapipe (software Vulkan)
//! streams a few GB/s, so the full shapes take seconds per sample.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pertoken::gpu::testing::gpu_or_skip;
use pertoken::gpu::{DType, Gpu, Tensor};
use pertoken::matmul::{Kernel, check_linear, linear_into, select_linear};
use pertoken::reference::{QuantFormat, quantize, random::uniform_f32};

const SHAPES: [(usize, usize); 2] = [(1024, 3584), (3584, 1024)];

fn weights(gpu: &Gpu, k: usize, n: usize, dtype: DType) -> Tensor {
    let v = uniform_f32((k + n) as u64, n * k);
    match dtype {
        DType::Q4_0 => {
            let bytes = quantize(QuantFormat::Q4_0, &v).expect("quantize");
            Tensor::from_quantized(gpu, &bytes, &[n, k], dtype).expect("upload")
        }
        _ => {
            Tensor::from_f32_as(gpu, &v, &[n, k], dtype)
                .expect("upload")
                .0
        }
    }
}

fn linear(c: &mut Criterion) {
    let Some(gpu) = gpu_or_skip() else { return };
    for (k, n) in SHAPES {
        for dtype in [DType::F16, DType::Q4_0] {
            let w = weights(&gpu, k, n, dtype);
            let mut group = c.benchmark_group(format!("linear_{dtype}/{k}x{n}"));
            group.throughput(Throughput::Bytes(w.size_in_bytes()));
            group.sample_size(10);
            group.warm_up_time(Duration::from_millis(300));
            group.measurement_time(Duration::from_secs(2));
            for m in [1usize, 4, 16, 128] {
                let x =
                    Tensor::from_slice(&gpu, &uniform_f32(m as u64, m * k), &[m, k]).expect("x");
                let out = Tensor::zeros(&gpu, &[m, n], DType::F32).expect("out");
                let p = check_linear(&x, &w, None).expect("shapes");
                let kernel: Kernel = select_linear(gpu.capabilities(), &p);
                let run = || linear_into(&gpu, &x, &w, None, &out, kernel);
                run().expect("warm-up");
                gpu.sync().expect("sync");
                group.bench_function(BenchmarkId::new(format!("m{m}"), kernel.to_string()), |b| {
                    b.iter_custom(|iters| common::gpu_time(&gpu, &run, iters));
                });
            }
            group.finish();
        }
    }
}

/// One decode token (M = 1) through a 7–8B model's weight shapes at full size, f16 against Q4_0
/// in one group per shape: whether the format with 3.6× fewer bytes is faster per token on this
/// adapter. `cargo bench --bench linear -- decode_token`.
fn decode_per_token(c: &mut Criterion) {
    let Some(gpu) = gpu_or_skip() else { return };
    for (k, n) in [(4096, 4096), (4096, 14336), (14336, 4096)] {
        decode_shape(c, &gpu, k, n);
    }
}

fn decode_shape(c: &mut Criterion, gpu: &Gpu, k: usize, n: usize) {
    let mut group = c.benchmark_group(format!("decode_token/{k}x{n}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let x = Tensor::from_slice(gpu, &uniform_f32(1, k), &[1, k]).expect("x");
    let out = Tensor::zeros(gpu, &[1, n], DType::F32).expect("out");
    for dtype in [DType::F16, DType::Q4_0] {
        let w = weights(gpu, k, n, dtype);
        let p = check_linear(&x, &w, None).expect("shapes");
        let kernel: Kernel = select_linear(gpu.capabilities(), &p);
        let run = || linear_into(gpu, &x, &w, None, &out, kernel);
        run().expect("warm-up");
        gpu.sync().expect("sync");
        group.bench_function(
            BenchmarkId::new(dtype.to_string(), kernel.to_string()),
            |b| {
                b.iter_custom(|iters| common::gpu_time(gpu, &run, iters));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, linear, decode_per_token);
criterion_main!(benches);
