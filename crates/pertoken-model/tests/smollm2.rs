//! The real test model, SmolLM2-135M-Instruct (GGUF: Q4_1 matrices, a Q8_0 embedding tied to
//! the output, interleaved RoPE pairs), on the GPU against the f64 reference: the logits of
//! fixed prompts, and a greedy continuation of 32 tokens.
//!
//! Where the file is absent the test says how to get it (`scripts/fetch-test-model.sh`); under
//! `PERTOKEN_REQUIRE_GPU=1` (CI) it fails instead.

mod common;

use pertoken_formats::testdata::smollm2_or_skip;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_model::{GgufWeights, WeightSource};

/// Logits within this fraction of the largest: 30 layers of f32 arithmetic against f64.
const REL: f64 = 1e-4;
const CONTINUATION: usize = 32;

#[test]
fn smollm2_matches_the_reference_on_prompts_and_a_greedy_continuation() {
    let Some(path) = smollm2_or_skip() else {
        return;
    };
    let Some(gpu) = gpu_or_skip() else { return };
    let source = GgufWeights::open(&path).unwrap();
    let spec = source.spec().clone();
    assert_eq!(
        (
            spec.shape.layers,
            spec.shape.hidden,
            spec.shape.heads,
            spec.shape.kv_heads
        ),
        (30, 576, 9, 3)
    );
    assert!(spec.shape.tied_embeddings);
    let prompts = [
        "The capital of France is",
        "<|im_start|>user\nWhat is the tallest mountain on Earth?<|im_end|>\n<|im_start|>assistant\n",
    ];
    common::real_model_matches_the_reference(&gpu, &source, &prompts, REL, CONTINUATION);
}
