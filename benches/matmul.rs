//! Criterion benches of the matmul kernels, with the CPU's sgemm in the same group for scale.
//!
//! GPU time comes from timestamp queries where the adapter has them (`Gpu::time`), so it excludes
//! host overhead; the CPU's is wall clock. Throughput is 2·M·N·K elements, so criterion's
//! "elem/s" reads as FLOP/s. Run with `cargo bench --bench matmul`.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pertoken::gpu::testing::gpu_or_skip;
use pertoken::gpu::{DType, Tensor};
use pertoken::matmul::{Kernel, MatmulShape, matmul_into, select};
use pertoken::reference::random::uniform_array2;

/// Square sizes: lavapipe (software Vulkan) does ~10 GFLOP/s, so larger sizes take minutes.
const SIZES: [usize; 3] = [128, 256, 512];

fn matmul(c: &mut Criterion) {
    let Some(gpu) = gpu_or_skip() else { return };
    for n in SIZES {
        let shape = MatmulShape { m: n, k: n, n };
        let a = uniform_array2(1, n, n);
        let b = uniform_array2(2, n, n);
        let ta = Tensor::from_array(&gpu, a.view()).expect("upload a");
        let tb = Tensor::from_array(&gpu, b.view()).expect("upload b");
        let out = Tensor::zeros(&gpu, &[n, n], DType::F32).expect("output");

        let mut group = c.benchmark_group(format!("matmul_f32/{n}x{n}x{n}"));
        group.throughput(Throughput::Elements(shape.flops() as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        for kernel in [Kernel::Naive, select(gpu.capabilities(), shape)] {
            // Compile the pipeline before measuring.
            matmul_into(&gpu, &ta, &tb, &out, kernel).expect("warm-up");
            gpu.sync().expect("sync");
            group.bench_function(BenchmarkId::new("gpu", kernel.to_string()), |bench| {
                let run = || matmul_into(&gpu, &ta, &tb, &out, kernel);
                bench.iter_custom(|iters| common::gpu_time(&gpu, &run, iters));
            });
        }
        group.bench_function(BenchmarkId::new("cpu", "ndarray dot"), |bench| {
            bench.iter(|| a.dot(&b));
        });
        group.finish();
    }
}

criterion_group!(benches, matmul);
criterion_main!(benches);
