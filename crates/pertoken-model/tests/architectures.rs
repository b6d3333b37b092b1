//! Each architecture beyond Llama as a tiny model written as a GGUF file the way llama.cpp's
//! converter writes it, loaded through the real reader (its keys read into the spec), then run
//! through prefill and decode against the f64 reference, in every newer tensor type.

mod common;

use common::gguf::gguf_of;
use common::{KQUANT, Tiny, check_against_reference, prompt, reference_of};
use pertoken_cost::{Activation, Arch};
use pertoken_gpu::DType;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_model::{GgufWeights, ModelSpec, Synthetic, WeightSource};

/// The newer types; rows that are not whole super-blocks (the FFN's 288) take llama.cpp's
/// fallbacks, so Q8_0 and Q5_0 / Q5_1 run too.
const TYPES: [DType; 5] = [
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Gemma 3 in small: 3 layers with a window of 4 on two and the third global (the 270M model
/// has 18 with a window of 512, every sixth global), q/k heads of 128 on a hidden width of 256
/// (the head width from `key_length`), one KV head, a tied head.
fn gemma3() -> Tiny {
    Tiny {
        layers: 3,
        heads: 4,
        kv_heads: 1,
        head_dim: 128,
        tied: true,
        window: Some(4),
        arch: Arch {
            post_norms: true,
            qk_norm: true,
            embed_scale: true,
            activation: Activation::GeluTanh,
            query_scale: Some(1.0 / 128f64.sqrt()),
            global_every: Some(3),
            local_rope_theta: Some(10_000.0),
            ..Arch::default()
        },
        ..KQUANT
    }
}

/// Qwen3 in small: per-head q/k norms, heads of 128 on a hidden width of 256.
fn qwen3() -> Tiny {
    Tiny {
        head_dim: 128,
        arch: Arch {
            qk_norm: true,
            ..Arch::default()
        },
        ..KQUANT
    }
}

/// Phi-3 (Phi-4-mini's kind) in small: RoPE over the first 32 of 64 elements of each head, with
/// LongRoPE's stored short factors and attention factor.
fn phi3() -> Tiny {
    Tiny {
        arch: Arch {
            rotary_dims: Some(32),
            rope_attn_factor: Some(1.19),
            ..Arch::default()
        },
        ..KQUANT
    }
}

fn spec_of(arch: &str, tiny: Tiny) -> ModelSpec {
    let mut spec = tiny.spec();
    spec.shape.rope.theta = 1_000_000.0;
    if arch == "phi3" {
        let factors = pertoken_reference::random::uniform_f32_in(5, 16, 1.0, 4.0);
        spec.rope_factors = Some(factors);
    }
    spec
}

/// Writes `tiny` as a GGUF file of `arch` in each of [`TYPES`], checks that the reader gives
/// the spec back, and runs it against the reference.
fn check(arch: &str, tiny: Tiny, seed: u64) {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (i, dtype) in TYPES.into_iter().enumerate() {
        let seed = seed + i as u64;
        let synthetic = Synthetic::new(spec_of(arch, tiny), dtype, seed).unwrap();
        let path = dir.path().join(format!("{arch}-{dtype}.gguf"));
        gguf_of(&synthetic, arch, None, tiny.ffn)
            .write(&path)
            .unwrap();
        let file = GgufWeights::open(&path).unwrap();
        let mut want = synthetic.spec().clone();
        want.shape.name = "tiny test model".into();
        want.shape.source = file.spec().shape.source.clone();
        assert_eq!(
            file.spec(),
            &want,
            "{arch} {dtype}: the file's keys give the spec"
        );
        let reference = reference_of(&file);
        let p = prompt(seed, 7, tiny.vocab);
        if let Err(e) = check_against_reference(&gpu, &file, &reference, &p, 3, 2e-5) {
            panic!("{arch} in {dtype}: {e}");
        }
    }
}

#[test]
fn gemma3_sandwich_norms_window_pattern_and_geglu_match_the_reference() {
    check("gemma3", gemma3(), 60);
}

#[test]
fn qwen3_q_and_k_norms_match_the_reference() {
    check("qwen3", qwen3(), 70);
}

#[test]
fn phi3_fused_tensors_partial_rotary_and_longrope_match_the_reference() {
    check("phi3", phi3(), 80);
}
