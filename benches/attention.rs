//! Criterion benches of attention: decode over a KV cache (q_len 1, 32 heads / 8 KV heads,
//! head_dim 128) in f32 and f16, with throughput in K and V bytes, so criterion's rate reads as
//! bytes/s (compare it with `pertoken bench`'s copy-kernel line); and causal prefill, the fused
//! kernel against the naive one. Run with `cargo bench --bench attention`.
//!
//! Prefill is scaled down to 8 heads / 2 KV heads at 256 and 512 tokens: the naive baseline takes
//! seconds per sample on lavapipe (software Vulkan) at the full 32 heads.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pertoken::attention::{AttentionOptions, Kernel, KvCache, attention_into};
use pertoken::gpu::testing::gpu_or_skip;
use pertoken::gpu::{DType, Gpu, Tensor};
use pertoken::reference::random::uniform_f32;

const OPTIONS: AttentionOptions = AttentionOptions {
    causal: true,
    scale: None,
    window: None,
};

fn upload(gpu: &Gpu, seed: u64, shape: &[usize], dtype: DType) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32_as(gpu, &uniform_f32(seed, n), shape, dtype)
        .expect("upload")
        .0
}

fn decode(c: &mut Criterion) {
    let Some(gpu) = gpu_or_skip() else { return };
    let (nh, nkv, d) = (32, 8, 128);
    for context in [512usize, 4096] {
        let mut group = c.benchmark_group(format!("decode/{context}"));
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        for dtype in [DType::F32, DType::F16] {
            let k = upload(&gpu, 1, &[nkv, context, d], dtype);
            let v = upload(&gpu, 2, &[nkv, context, d], dtype);
            let q = upload(&gpu, 3, &[nh, 1, d], dtype);
            let mut cache = KvCache::new(&gpu, nkv, context, d, dtype).expect("cache");
            cache.append(&gpu, &k, &v).expect("append");
            group.throughput(Throughput::Bytes(2 * k.size_in_bytes()));
            let out = Tensor::zeros(&gpu, &[nh, 1, d], DType::F32).expect("output");
            let run = || cache.attention_into(&gpu, &q, &out, OPTIONS);
            run().expect("warm-up");
            gpu.sync().expect("sync");
            group.bench_function(BenchmarkId::from_parameter(dtype), |b| {
                // The attention kernel and the combine pass.
                b.iter_custom(|iters| common::gpu_time_launches(&gpu, &run, iters, 2));
            });
        }
        group.finish();
    }
}

fn prefill(c: &mut Criterion) {
    let Some(gpu) = gpu_or_skip() else { return };
    let (nh, nkv, d) = (8, 2, 128);
    for seq in [256usize, 512] {
        let mut group = c.benchmark_group(format!("prefill/{seq}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(3));
        let q = upload(&gpu, 1, &[nh, seq, d], DType::F32);
        let k = upload(&gpu, 2, &[nkv, seq, d], DType::F32);
        let v = upload(&gpu, 3, &[nkv, seq, d], DType::F32);
        let out = Tensor::zeros(&gpu, &[nh, seq, d], DType::F32).expect("out");
        for (kernel, name, launches) in [(Kernel::Flash, "flash", 2), (Kernel::Naive, "naive", 3)] {
            let run = || attention_into(&gpu, &q, &k, &v, &out, OPTIONS, kernel);
            run().expect("warm-up");
            gpu.sync().expect("sync");
            group.bench_function(name, |b| {
                b.iter_custom(|iters| common::gpu_time_launches(&gpu, &run, iters, launches));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, decode, prefill);
criterion_main!(benches);
