//! The real test model, SmolLM2-135M-Instruct (GGUF: Q4_1 matrices, a Q8_0 embedding tied to
//! the output, interleaved RoPE pairs), on the GPU against the f64 reference: the logits of
//! fixed prompts, and a greedy continuation of 32 tokens.
//!
//! Where the file is absent the test says how to get it (`scripts/fetch-test-model.sh`); under
//! `PERTOKEN_REQUIRE_GPU=1` (CI) it fails instead.

mod common;

use pertoken_formats::testdata::smollm2_or_skip;
use pertoken_formats::tokenizer::Tokenizer;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_model::weights::reference_decoder;
use pertoken_model::{Decoder, DecoderOptions, GgufWeights, WeightSource};
use pertoken_reference::compare;
use pertoken_reference::decoder::argmax;

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
    let tokenizer = Tokenizer::from_gguf(source.gguf()).unwrap();
    let reference = common::reference_of(&source);
    let prompts = [
        "The capital of France is",
        "<|im_start|>user\nWhat is the tallest mountain on Earth?<|im_end|>\n<|im_start|>assistant\n",
    ];
    let mut gpu_model = Decoder::load(
        &gpu,
        &source,
        DecoderOptions {
            context: 128,
            max_tokens: 64,
            batch: 1,
        },
    )
    .unwrap();
    for text in prompts {
        let ids = tokenizer.encode(text).unwrap();
        gpu_model.reset().unwrap();
        let mut cpu = reference_decoder(&spec, &reference).unwrap();
        gpu_model.prefill(&ids).unwrap();
        let mut want = cpu.step(&ids).unwrap();
        let mut expected = Vec::new();
        for step in 0..=CONTINUATION {
            let got = gpu_model.logits().unwrap();
            let cmp = compare(&got, &want, common::logits_tolerance(&want, REL));
            assert!(cmp.passed(), "{text:?} step {step}: {cmp}");
            if step == 0 {
                println!("{text:?}: prompt logits {cmp}");
            }
            let next = argmax(&want).unwrap() as u32;
            expected.push(next);
            if step < CONTINUATION {
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
            "the GPU's greedy tokens are the reference's"
        );
    }
}
