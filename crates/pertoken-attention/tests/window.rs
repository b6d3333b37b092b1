//! Sliding-window attention (Gemma's local layers, Mistral): a query at position P sees only
//! the keys after P − window. Every kernel (flash, teams, naive), prefill and decode over a KV
//! cache, split across workgroups, against the f64 reference with the same window.

use pertoken_attention::AttentionShape as GpuShape;
use pertoken_attention::{
    AttentionOptions, Kernel, KvCache, TeamKnobs, attention_into, team_kernel_applies,
};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_reference::{AttentionShape, random::uniform_f32};

mod common;
use common::{against_reference_windowed, per_key_tolerance};

/// q [nh, q_len, d] (scores spanning a few units), k and v [nkv, kv_len, d], seeded.
fn inputs(nh: usize, nkv: usize, d: usize, q_len: usize, kv_len: usize) -> [Vec<f32>; 3] {
    let seed = (nh * 31 + d * 7 + q_len * 3 + kv_len) as u64;
    let q = uniform_f32(seed, nh * q_len * d)
        .iter()
        .map(|x| x * 2.0)
        .collect();
    let k = uniform_f32(seed + 1, nkv * kv_len * d)
        .iter()
        .map(|x| x * 2.0)
        .collect();
    [q, k, uniform_f32(seed + 2, nkv * kv_len * d)]
}

fn shape(nh: usize, nkv: usize, d: usize, q_len: usize, kv_len: usize) -> AttentionShape {
    AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len,
        kv_len,
        causal: true,
    }
}

fn options(window: u32) -> AttentionOptions {
    AttentionOptions {
        causal: true,
        scale: None,
        window: Some(window),
    }
}

fn run(
    gpu: &Gpu,
    kernel: Kernel,
    (nh, nkv, d, q_len, kv_len): (usize, usize, usize, usize, usize),
    window: u32,
) -> Result<(), String> {
    let [qv, kv, vv] = inputs(nh, nkv, d, q_len, kv_len);
    let q = Tensor::from_slice(gpu, &qv, &[nh, q_len, d]).unwrap();
    let k = Tensor::from_slice(gpu, &kv, &[nkv, kv_len, d]).unwrap();
    let v = Tensor::from_slice(gpu, &vv, &[nkv, kv_len, d]).unwrap();
    let out = Tensor::zeros(gpu, &[nh, q_len, d], DType::F32).unwrap();
    out.fill(f32::NAN).unwrap();
    let what =
        format!("{kernel:?} heads {nh}/{nkv} d {d} q_len {q_len} kv_len {kv_len} window {window}");
    attention_into(gpu, &q, &k, &v, &out, options(window), kernel)
        .map_err(|e| format!("{what}: {e}"))?;
    let got = out.to_vec::<f32>().unwrap();
    let s = shape(nh, nkv, d, q_len, kv_len);
    let cmp = against_reference_windowed(
        &got,
        (&qv, &kv, &vv),
        s,
        Some(window as usize),
        per_key_tolerance(kv_len),
    );
    if cmp.passed() {
        Ok(())
    } else {
        Err(format!("{what}: {cmp}"))
    }
}

#[test]
fn every_kernel_masks_keys_before_the_window() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cpu = gpu.capabilities().cpu;
    let mut failures = Vec::new();
    // A whole prompt, the last queries of a longer context, one decode query; windows of 1, of
    // fewer keys than a tile, of many tiles, and of the whole context (no effect).
    let shapes = [
        (4, 2, 64, 70, 70),
        (8, 1, 128, 5, 300),
        (4, 4, 32, 1, 200),
        (2, 1, 256, 40, 40),
    ];
    for s in shapes {
        for window in [1u32, 7, 64, 1000] {
            let mut kernels = vec![Kernel::Flash, Kernel::Naive];
            let (n_heads, n_kv_heads, head_dim, q_len, kv_len) = s;
            let gs = GpuShape {
                n_heads,
                n_kv_heads,
                head_dim,
                q_len,
                kv_len,
            };
            if team_kernel_applies(&gs, gpu.capabilities()) {
                kernels.push(Kernel::Team(TeamKnobs::heuristic(&gs, cpu)));
            }
            for kernel in kernels {
                if let Err(e) = run(&gpu, kernel, s, window) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_over_a_cache_with_a_window_matches_the_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    // 1500 keys at head_dim 128, several splits per head: most splits lie wholly before a
    // window of 100 (their partial results hold no key) and one straddles its start. The cache
    // binds its keys from the first one a window reaches (rounded down to the binding offset
    // alignment: at head_dim 32 a row is 128 bytes, less than most alignments), for one decode
    // query and for a chunk of 9 prefill queries, whose first query's window starts earliest.
    let (nh, nkv, len) = (4usize, 2usize, 1500usize);
    for (d, q_len) in [(128usize, 1usize), (32, 9), (32, 1)] {
        let [qv, kv, vv] = inputs(nh, nkv, d, q_len, len);
        let mut cache = KvCache::new(&gpu, nkv, len + 8, d, DType::F32).unwrap();
        let k = Tensor::from_slice(&gpu, &kv, &[nkv, len, d]).unwrap();
        let v = Tensor::from_slice(&gpu, &vv, &[nkv, len, d]).unwrap();
        cache.append(&gpu, &k, &v).unwrap();
        let q = Tensor::from_slice(&gpu, &qv, &[nh, q_len, d]).unwrap();
        for window in [1u32, 3, 100, 512, 2000] {
            let out = Tensor::zeros(&gpu, &[nh, q_len, d], DType::F32).unwrap();
            out.fill(f32::NAN).unwrap();
            cache
                .attention_into(&gpu, &q, &out, options(window))
                .unwrap();
            let got = out.to_vec::<f32>().unwrap();
            let s = shape(nh, nkv, d, q_len, len);
            let cmp = against_reference_windowed(
                &got,
                (&qv, &kv, &vv),
                s,
                Some(window as usize),
                per_key_tolerance(len),
            );
            assert!(cmp.passed(), "d {d} q_len {q_len} window {window}: {cmp}");
        }
    }
}
