//! Tiny synthetic models and the GPU-against-reference check the decoder tests share.

#![allow(dead_code, unreachable_pub)]

pub mod gguf;

use pertoken_cost::{Arch, Model, Rope, RopePairing, RopeScaling};
use pertoken_gpu::Gpu;
use pertoken_model::weights::{reference_decoder, to_reference};
use pertoken_model::{Decoder, DecoderOptions, ModelSpec, WeightSource};
use pertoken_reference::decoder::{self, Weights};
use pertoken_reference::{Comparison, Tolerance, compare};

/// A small Llama-family shape.
#[derive(Debug, Clone, Copy)]
pub struct Tiny {
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub ffn: u64,
    pub vocab: u64,
    pub tied: bool,
    pub bias: bool,
    pub llama3: bool,
    pub pairing: RopePairing,
    /// What the architecture adds to Llama's block.
    pub arch: Arch,
    /// The attention window (of every layer, or of those [`Arch::global_every`] leaves).
    pub window: Option<u64>,
}

pub const BASE: Tiny = Tiny {
    layers: 2,
    hidden: 96,
    heads: 4,
    kv_heads: 2,
    head_dim: 32,
    ffn: 160,
    vocab: 200,
    tied: false,
    bias: false,
    llama3: false,
    pairing: RopePairing::Halves,
    arch: Arch {
        post_norms: false,
        qk_norm: false,
        embed_scale: false,
        activation: pertoken_cost::Activation::Silu,
        query_scale: None,
        global_every: None,
        local_rope_theta: None,
        logit_softcap: None,
        rotary_dims: None,
        rope_attn_factor: None,
    },
    window: None,
};

/// Rows of 256 (hidden; 4 heads of 64) are whole K-quant super-blocks; the FFN's 288 is not, so
/// the down projection of a K-quant model takes llama.cpp's fallback type.
pub const KQUANT: Tiny = Tiny {
    hidden: 256,
    heads: 4,
    kv_heads: 2,
    head_dim: 64,
    ffn: 288,
    ..BASE
};

impl Tiny {
    pub fn spec(self) -> ModelSpec {
        ModelSpec::new(
            Model {
                name: format!("tiny{self:?}"),
                source: "test".into(),
                layers: self.layers,
                hidden: self.hidden,
                heads: self.heads,
                kv_heads: self.kv_heads,
                head_dim: self.head_dim,
                ffn: self.ffn,
                vocab: self.vocab,
                tied_embeddings: self.tied,
                qkv_bias: self.bias,
                experts: 1,
                active_experts: 1,
                sliding_window: self.window,
                rope: Rope {
                    theta: if self.llama3 { 500_000.0 } else { 10_000.0 },
                    // A short original context, so the tiny positions cross every band.
                    scaling: self.llama3.then_some(RopeScaling {
                        factor: 8.0,
                        low_freq_factor: 1.0,
                        high_freq_factor: 4.0,
                        original_context: 64,
                    }),
                },
                rms_eps: 1e-5,
                arch: self.arch,
                mla: None,
                moe: Default::default(),
            },
            self.pairing,
        )
    }
}

/// Logits within `rel` of the reference, relative to the largest logit's magnitude.
pub fn logits_tolerance(want: &[f64], rel: f64) -> Tolerance {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    Tolerance {
        abs: rel * scale,
        rel,
    }
}

/// What one run found: the worst comparison over the steps.
pub struct Checked {
    pub worst: Comparison,
    pub tokens: Vec<u32>,
}

/// Prefills `prompt`, then decodes `steps` tokens, comparing the logits after the prompt and
/// after each step with the reference fed the same tokens. Err names the step that failed.
pub fn check_against_reference(
    gpu: &Gpu,
    source: &dyn WeightSource,
    reference: &Weights,
    prompt: &[u32],
    steps: usize,
    rel: f64,
) -> Result<Checked, String> {
    // Decode with each fusion on and off: the SwiGLU gate fused into the down GEMV (the
    // default on GPUs, off on CPU adapters), and the norms and residual adds fused into the
    // GEMVs (the default everywhere). Every way must match.
    let mut worst: Option<Checked> = None;
    for (fuse_gate, fuse_norm) in [(false, false), (true, false), (false, true), (true, true)] {
        let checked = check_with(
            gpu,
            source,
            reference,
            (prompt, steps, rel),
            (fuse_gate, fuse_norm),
        )
        .map_err(|e| format!("fused gate {fuse_gate}, fused norms {fuse_norm}: {e}"))?;
        if worst
            .as_ref()
            .is_none_or(|w| checked.worst.max_abs > w.worst.max_abs)
        {
            worst = Some(checked);
        }
    }
    Ok(worst.expect("four runs"))
}

fn check_with(
    gpu: &Gpu,
    source: &dyn WeightSource,
    reference: &Weights,
    (prompt, steps, rel): (&[u32], usize, f64),
    (fuse_gate, fuse_norm): (bool, bool),
) -> Result<Checked, String> {
    let spec = source.spec();
    let options = DecoderOptions {
        context: prompt.len() + steps + 1,
        max_tokens: prompt.len().min(16),
        batch: 1,
    };
    let mut gpu_model = Decoder::load(gpu, source, options).map_err(|e| e.to_string())?;
    gpu_model.set_fuse_gate(fuse_gate);
    gpu_model.set_fuse_norm(fuse_norm);
    let mut cpu = reference_decoder(spec, reference).map_err(|e| e.to_string())?;
    gpu_model.prefill(prompt).map_err(|e| e.to_string())?;
    let mut want = cpu.step(prompt).map_err(|e| e.to_string())?;
    let mut worst: Option<Comparison> = None;
    for step in 0..=steps {
        let got = gpu_model.logits().map_err(|e| e.to_string())?;
        let cmp = compare(&got, &want, logits_tolerance(&want, rel));
        if !cmp.passed() {
            return Err(format!(
                "step {step} (after {} tokens): {cmp}",
                gpu_model.position()
            ));
        }
        let tokens = gpu_model.tokens().map_err(|e| e.to_string())?;
        let chosen = *tokens.last().expect("a token");
        // The GPU's choice is its own logits' argmax, and the reference's unless they tie.
        let own = decoder::argmax(&got.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        if own != Some(chosen as usize) {
            return Err(format!(
                "step {step}: argmax chose {chosen}, its logits' largest is {own:?}"
            ));
        }
        let best = decoder::argmax(&want).expect("finite logits");
        let margin = want[best] - want[chosen as usize];
        if chosen as usize != best && margin > cmp.tolerance.abs * 2.0 {
            return Err(format!(
                "step {step}: GPU chose {chosen}, the reference {best} by a margin of {margin}"
            ));
        }
        if worst.as_ref().is_none_or(|w| cmp.max_abs > w.max_abs) {
            worst = Some(cmp);
        }
        if step < steps {
            gpu_model.decode().map_err(|e| e.to_string())?;
            want = cpu.step(&[chosen]).map_err(|e| e.to_string())?;
        }
    }
    Ok(Checked {
        worst: worst.expect("at least one step"),
        tokens: gpu_model.tokens().map_err(|e| e.to_string())?,
    })
}

/// The reference weights of `source`, or a panic naming why not.
pub fn reference_of(source: &dyn WeightSource) -> Weights {
    to_reference(source).unwrap_or_else(|e| panic!("reference weights: {e}"))
}

/// `n` seeded token ids below `vocab`.
pub fn prompt(seed: u64, n: usize, vocab: u64) -> Vec<u32> {
    pertoken_reference::random::uniform_f32_in(seed, n, 0.0, vocab as f32)
        .into_iter()
        .map(|v| (v as u32).min(vocab as u32 - 1))
        .collect()
}

/// A real model's logits after each of `prompts` (BOS first where its tokenizer says) and each
/// of `continuation` greedy steps, within `rel` of the f64 reference's, and its greedy tokens
/// equal to the reference's.
pub fn real_model_matches_the_reference(
    gpu: &Gpu,
    source: &pertoken_model::GgufWeights,
    prompts: &[&str],
    rel: f64,
    continuation: usize,
) {
    let tokenizer = pertoken_formats::tokenizer::Tokenizer::from_gguf(source.gguf()).unwrap();
    let spec = source.spec().clone();
    let reference = reference_of(source);
    let options = DecoderOptions {
        context: 128,
        max_tokens: 64,
        batch: 1,
    };
    let mut gpu_model = Decoder::load(gpu, source, options).unwrap();
    for text in prompts {
        let ids = tokenizer.encode_prompt(text).unwrap();
        gpu_model.reset().unwrap();
        let mut cpu = reference_decoder(&spec, &reference).unwrap();
        gpu_model.prefill(&ids).unwrap();
        let mut want = cpu.step(&ids).unwrap();
        let mut expected = Vec::new();
        for step in 0..=continuation {
            let got = gpu_model.logits().unwrap();
            let cmp = compare(&got, &want, logits_tolerance(&want, rel));
            assert!(cmp.passed(), "{text:?} step {step}: {cmp}");
            if step == 0 {
                println!("{text:?}: prompt logits {cmp}");
            }
            let next = decoder::argmax(&want).unwrap() as u32;
            expected.push(next);
            if step < continuation {
                gpu_model.decode().unwrap();
                want = cpu.step(&[next]).unwrap();
            }
        }
        let seq = gpu_model.tokens().unwrap();
        let generated = &seq[ids.len()..];
        println!("{text:?} -> {:?}", tokenizer.decode(generated).unwrap());
        assert_eq!(
            generated,
            &expected[..],
            "{text:?}: the GPU's greedy tokens are the reference's"
        );
    }
}
