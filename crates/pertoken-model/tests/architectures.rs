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
fn soft_capped_logits_match_the_reference() {
    // A cap near the logits' size, so that it bends them (the greedy choice it cannot change).
    let mut tiny = gemma3();
    tiny.arch.logit_softcap = Some(2.0);
    check("gemma3", tiny, 65);
}

#[test]
fn qwen3_q_and_k_norms_match_the_reference() {
    check("qwen3", qwen3(), 70);
}

#[test]
fn phi3_fused_tensors_partial_rotary_and_longrope_match_the_reference() {
    check("phi3", phi3(), 80);
}

#[test]
fn what_an_architecture_needs_and_lacks_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    let open = |b: &pertoken_formats::gguf::write::GgufBuilder| {
        b.write(&path).unwrap();
        GgufWeights::open(&path).unwrap_err().to_string()
    };
    let tiny = gemma3();
    let synthetic = Synthetic::new(spec_of("gemma3", tiny), DType::Q4_K, 90).unwrap();
    // A Gemma 3 file without one of its post-norms.
    let e = open(&gguf_of(
        &synthetic,
        "gemma3",
        Some("blk.1.post_ffw_norm.weight"),
        tiny.ffn,
    ));
    assert!(e.contains("blk.1.post_ffw_norm.weight"), "{e}");
    // A soft-cap that is no number.
    let mut b = gguf_of(&synthetic, "gemma3", None, tiny.ffn);
    b.set("gemma3.final_logit_softcapping", -30.0f32);
    let e = open(&b);
    assert!(e.contains("logit_softcap"), "{e}");
    // Value heads of another width than the key heads.
    let mut b = gguf_of(&synthetic, "gemma3", None, tiny.ffn);
    b.set("gemma3.attention.value_length", 64u32);
    let e = open(&b);
    assert!(e.contains("value heads of 64"), "{e}");
    // The reference refuses weights that do not match the architecture, too.
    let mut w = common::reference_of(&synthetic);
    w.layers[1].post_norms = None;
    let e = pertoken_reference::decoder::Decoder::new(
        &synthetic.spec().shape,
        synthetic.spec().pairing,
        &w,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("layer 1: post-norm weights missing"), "{e}");
    // A Qwen3 file without its k norms.
    let q = Synthetic::new(spec_of("qwen3", qwen3()), DType::Q5_K, 91).unwrap();
    let e = open(&gguf_of(
        &q,
        "qwen3",
        Some("blk.0.attn_k_norm.weight"),
        qwen3().ffn,
    ));
    assert!(e.contains("blk.0.attn_k_norm.weight"), "{e}");
    // An architecture not run names itself and those that are.
    let e = open(&gguf_of(&q, "gemma2", None, qwen3().ffn));
    assert!(
        e.contains("gemma2") && e.contains("gemma3") && e.contains("phi3"),
        "{e}"
    );
    // Phi-3 with LongRoPE's long factors: a context past the original length is refused.
    let p = Synthetic::new(spec_of("phi3", phi3()), DType::Q6_K, 92).unwrap();
    let mut b = gguf_of(&p, "phi3", None, phi3().ffn);
    let long: Vec<u8> = [2.0f32; 16].iter().flat_map(|v| v.to_le_bytes()).collect();
    b.add_tensor(
        "rope_factors_long.weight",
        pertoken_formats::gguf::GgmlType::F32,
        &[16],
        long,
    );
    b.set("phi3.rope.scaling.original_context_length", 32u32);
    b.write(&path).unwrap();
    let file = GgufWeights::open(&path).unwrap();
    assert_eq!(file.spec().context_limit, Some(32));
    if let Some(gpu) = gpu_or_skip() {
        let options = pertoken_model::DecoderOptions {
            context: 33,
            ..Default::default()
        };
        let e = pertoken_model::Decoder::load(&gpu, &file, options)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("long RoPE factors") && e.contains("at most 32"),
            "{e}"
        );
    }
}

#[test]
fn a_batch_of_gemma3_sequences_decodes_as_the_reference() {
    use pertoken_model::weights::reference_decoder;
    use pertoken_model::{Decoder, DecoderOptions};
    let Some(gpu) = gpu_or_skip() else { return };
    // The batched step (the linears at M = 3, attention per sequence) with post-norms, q/k
    // norms, the window pattern and the scaled embedding; sequences at their own positions,
    // past the window of 4.
    let tiny = gemma3();
    let source = Synthetic::new(spec_of("gemma3", tiny), DType::Q4_K, 95).unwrap();
    let reference = common::reference_of(&source);
    let prompts: Vec<Vec<u32>> = (0..3)
        .map(|b| prompt(96 + b, 3 + 3 * b as usize, tiny.vocab))
        .collect();
    let options = DecoderOptions {
        context: 24,
        max_tokens: 8,
        batch: 3,
    };
    let mut batch = Decoder::load(&gpu, &source, options).unwrap();
    for (b, p) in prompts.iter().enumerate() {
        batch.prefill_sequence(b, p).unwrap();
    }
    for _ in 0..5 {
        batch.decode().unwrap();
    }
    for b in 0..prompts.len() {
        let seq = batch.tokens_of(b).unwrap();
        let got = batch.logits_of(b).unwrap();
        let mut cpu = reference_decoder(source.spec(), &reference).unwrap();
        let want = cpu.step(&seq[..seq.len() - 1]).unwrap();
        let cmp = pertoken_reference::compare(&got, &want, common::logits_tolerance(&want, 2e-5));
        assert!(cmp.passed(), "sequence {b}: {cmp}");
    }
}

#[test]
fn a_query_scale_of_its_own_matches_the_reference() {
    // Gemma 3 27B scales q by 1/√(hidden / heads), not 1/√head_dim: a scale of the model's own
    // reaches the attention kernels (Qwen3's block, which otherwise takes the default).
    let Some(gpu) = gpu_or_skip() else { return };
    let mut tiny = qwen3();
    tiny.arch.query_scale = Some(0.21);
    let source = Synthetic::new(spec_of("qwen3", tiny), DType::Q4_K, 97).unwrap();
    let reference = common::reference_of(&source);
    let p = prompt(97, 7, tiny.vocab);
    if let Err(e) = check_against_reference(&gpu, &source, &reference, &p, 3, 2e-5) {
        panic!("{e}");
    }
}
