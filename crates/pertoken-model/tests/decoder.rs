//! The decoder on tiny synthetic models against the f64 reference forward pass: every feature
//! (GQA ratios with MQA, tied and untied heads, q/k/v bias, Llama 3 RoPE scaling, both RoPE
//! pairings, head_dim 64 and 128, widths that are no multiple of a tile) and every weight
//! format, logits after the prompt and after each decode step.

mod common;

use common::{BASE, KQUANT, Tiny, check_against_reference, prompt, reference_of};
use pertoken_cost::RopePairing;
use pertoken_gpu::DType;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_model::Synthetic;

/// Logits within this fraction of the largest one: weights are the same numbers on both
/// sides, so only f32 arithmetic (against f64) separates them, in every format.
const REL: f64 = 2e-5;

fn run(tiny: Tiny, format: DType, seed: u64) {
    let Some(gpu) = gpu_or_skip() else { return };
    let source = Synthetic::new(tiny.spec(), format, seed).unwrap();
    let reference = reference_of(&source);
    let p = prompt(seed, 9, tiny.vocab);
    match check_against_reference(&gpu, &source, &reference, &p, 4, REL) {
        Ok(c) => println!("{format} {tiny:?}: worst {}", c.worst),
        Err(e) => panic!("{format} {tiny:?}: {e}"),
    }
}

#[test]
fn every_weight_format_matches_the_reference() {
    for (i, format) in [
        DType::F32,
        DType::F16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
    ]
    .into_iter()
    .enumerate()
    {
        run(BASE, format, 10 + i as u64);
    }
}

#[test]
fn the_newer_formats_and_their_fallbacks_match_the_reference() {
    // The down projection takes llama.cpp's fallback (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0):
    // two types in one model, as in the K-quant files people download.
    let tiny = KQUANT;
    for (i, format) in [
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ]
    .into_iter()
    .enumerate()
    {
        run(tiny, format, 60 + i as u64);
    }
}

#[test]
fn every_feature_matches_the_reference() {
    let cases = [
        // MQA, tied head, interleaved pairs.
        Tiny {
            kv_heads: 1,
            tied: true,
            pairing: RopePairing::Interleaved,
            ..BASE
        },
        // Multi-head (no grouping), q/k/v bias, Llama 3 scaling.
        Tiny {
            kv_heads: 4,
            bias: true,
            llama3: true,
            ..BASE
        },
        // head_dim 64, GQA 3:1 as SmolLM2, interleaved, widths off every tile.
        Tiny {
            heads: 3,
            kv_heads: 1,
            head_dim: 64,
            hidden: 160,
            ffn: 224,
            pairing: RopePairing::Interleaved,
            ..BASE
        },
        // head_dim 128, GQA 4:1, biases and scaling with interleaved pairs.
        Tiny {
            heads: 4,
            kv_heads: 1,
            head_dim: 128,
            hidden: 128,
            bias: true,
            llama3: true,
            pairing: RopePairing::Interleaved,
            layers: 3,
            ..BASE
        },
    ];
    for (i, c) in cases.into_iter().enumerate() {
        run(c, DType::F32, 20 + i as u64);
    }
}

#[test]
fn decoding_after_a_prefill_equals_recomputing_the_sequence() {
    use pertoken_model::{Decoder, DecoderOptions};
    let Some(gpu) = gpu_or_skip() else { return };
    let tiny = Tiny {
        pairing: RopePairing::Interleaved,
        ..BASE
    };
    let source = Synthetic::new(tiny.spec(), DType::Q4_1, 31).unwrap();
    let p = prompt(31, 11, tiny.vocab);
    // Prompt chunks of 4 tokens (11 = 4 + 4 + 3), then 6 decode steps.
    let options = DecoderOptions {
        context: 32,
        max_tokens: 4,
        batch: 1,
    };
    let mut step_by_step = Decoder::load(&gpu, &source, options).unwrap();
    step_by_step.prefill(&p).unwrap();
    for _ in 0..6 {
        step_by_step.decode().unwrap();
    }
    let seq = step_by_step.tokens().unwrap();
    let stepped = step_by_step.logits().unwrap();
    assert_eq!(seq.len(), 11 + 6 + 1);
    assert_eq!(&seq[..11], &p[..]);

    // The whole sequence (but its last, predicted token) in one pass, on a reset decoder.
    step_by_step.reset().unwrap();
    let mut whole = Decoder::load(
        &gpu,
        &source,
        DecoderOptions {
            context: 32,
            max_tokens: 32,
            batch: 1,
        },
    )
    .unwrap();
    whole.prefill(&seq[..seq.len() - 1]).unwrap();
    let recomputed = whole.logits().unwrap();
    assert_eq!(whole.tokens().unwrap(), seq, "the same greedy continuation");
    let want: Vec<f64> = recomputed.iter().map(|&v| f64::from(v)).collect();
    let cmp = pertoken_reference::compare(&stepped, &want, common::logits_tolerance(&want, REL));
    assert!(cmp.passed(), "{cmp}");

    // The reset decoder runs the prompt again from position 0 and agrees with itself.
    step_by_step.prefill(&p).unwrap();
    assert_eq!(step_by_step.position(), 11);
    assert_eq!(step_by_step.tokens().unwrap()[..12], seq[..12]);
}

#[test]
fn bad_calls_are_errors() {
    use pertoken_model::{Decoder, DecoderOptions};
    let Some(gpu) = gpu_or_skip() else { return };
    let source = Synthetic::new(BASE.spec(), DType::F16, 5).unwrap();
    let options = DecoderOptions {
        context: 8,
        max_tokens: 4,
        batch: 1,
    };
    let mut d = Decoder::load(&gpu, &source, options).unwrap();
    let e = d.decode().unwrap_err().to_string();
    assert!(e.contains("prefill a prompt first"), "{e}");
    let e = d.prefill(&[1, 2, 200]).unwrap_err().to_string();
    assert!(
        e.contains("token id 200 is past the vocabulary of 200"),
        "{e}"
    );
    let e = d.prefill(&[]).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = d.prefill(&[1; 9]).unwrap_err().to_string();
    assert!(e.contains("context holds 8 positions"), "{e}");
    d.prefill(&[1; 7]).unwrap();
    d.decode().unwrap();
    let e = d.decode().unwrap_err().to_string();
    assert!(e.contains("8 used + 1 more"), "{e}");
    // Shapes a quantized format cannot hold, and a format that is no weight format.
    let odd = Tiny { hidden: 80, ..BASE };
    let e = Synthetic::new(odd.spec(), DType::Q4_0, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blocks of 32") && e.contains("hidden is 80"),
        "{e}"
    );
    let e = Synthetic::new(BASE.spec(), DType::U32, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not u32"), "{e}");
}

#[test]
fn a_model_that_does_not_fit_is_an_error_with_the_sizes() {
    use pertoken_gpu::{Gpu, GpuOptions};
    use pertoken_model::{Decoder, DecoderOptions};
    if gpu_or_skip().is_none() {
        return;
    }
    // One layer's K cache: 2 KV heads · 4096 positions · 32 · 4 bytes = 1 MiB, over 512 KiB.
    let options = GpuOptions {
        max_storage_binding: Some(512 << 10),
        ..GpuOptions::from_env().unwrap()
    };
    let gpu = Gpu::new(&options).unwrap();
    let source = Synthetic::new(BASE.spec(), DType::Q8_0, 3).unwrap();
    let long = DecoderOptions {
        context: 4096,
        max_tokens: 8,
        batch: 1,
    };
    let e = Decoder::load(&gpu, &source, long).unwrap_err().to_string();
    assert!(
        e.contains("K cache") && e.contains("1048576 bytes") && e.contains("shorter context"),
        "{e}"
    );
    let short = DecoderOptions {
        context: 1024,
        ..long
    };
    Decoder::load(&gpu, &source, short).unwrap();
}

#[test]
fn a_model_past_the_memory_limit_is_refused_before_upload_and_fits_under_a_larger_one() {
    use pertoken_gpu::{Gpu, GpuOptions};
    use pertoken_model::{Decoder, DecoderOptions, plan_memory};
    let Some(probe) = gpu_or_skip() else { return };
    let source = Synthetic::new(BASE.spec(), DType::Q4_0, 5).unwrap();
    let options = DecoderOptions {
        context: 64,
        max_tokens: 8,
        batch: 2,
    };
    let need = plan_memory(&probe, &source, options).unwrap().total();
    let limited = |limit| {
        let gpu = Gpu::new(&GpuOptions {
            memory_limit: Some(limit),
            ..GpuOptions::from_env().unwrap()
        })
        .unwrap();
        (Decoder::load(&gpu, &source, options).map(|_| ()), gpu)
    };
    let (refused, gpu) = limited(need - 1);
    let e = refused.unwrap_err().to_string();
    assert!(
        e.contains("PERTOKEN_MEMORY_LIMIT") && e.contains(&format!("{need} bytes")),
        "{e}"
    );
    assert_eq!(gpu.memory_in_use(), 0, "nothing was uploaded");
    // With room, it loads; what it holds stays within its plan, and returns when it drops.
    let (loaded, gpu) = limited(need + (1 << 20));
    loaded.unwrap();
    assert_eq!(gpu.memory_in_use(), 0);
    let decoder = Decoder::load(&gpu, &source, options).unwrap();
    let held = gpu.memory_in_use();
    assert!(
        held > need / 2 && held <= need,
        "{held} held, {need} planned"
    );
    drop(decoder);
    assert_eq!(gpu.memory_in_use(), 0);
    // A reshape frees the old KV caches before making new ones: with room for the peak (the
    // old activations beside the new state), it succeeds.
    let (_, gpu) = limited(need + (64 << 10));
    let mut decoder = Decoder::load(&gpu, &source, options).unwrap();
    decoder.reshape(options).unwrap();
    assert!(gpu.memory_in_use() <= need);
}

#[test]
fn a_batch_of_sequences_decodes_as_each_alone_and_as_the_reference() {
    use pertoken_model::weights::reference_decoder;
    use pertoken_model::{Decoder, DecoderOptions, WeightSource};
    let Some(gpu) = gpu_or_skip() else { return };
    let tiny = Tiny {
        bias: true,
        pairing: RopePairing::Interleaved,
        ..BASE
    };
    let source = Synthetic::new(tiny.spec(), DType::Q4_1, 51).unwrap();
    let reference = reference_of(&source);
    let steps = 5;
    // Prompts of different lengths: each sequence sits at its own position.
    let prompts: Vec<Vec<u32>> = (0..3)
        .map(|b| prompt(60 + b, 4 + 3 * b as usize, tiny.vocab))
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
    for _ in 0..steps {
        batch.decode().unwrap();
    }
    for (b, p) in prompts.iter().enumerate() {
        let mut alone = Decoder::load(
            &gpu,
            &source,
            DecoderOptions {
                batch: 1,
                ..options
            },
        )
        .unwrap();
        alone.prefill(p).unwrap();
        for _ in 0..steps {
            alone.decode().unwrap();
        }
        let seq = batch.tokens_of(b).unwrap();
        assert_eq!(seq, alone.tokens().unwrap(), "sequence {b}");
        assert_eq!(batch.position_of(b), p.len() + steps);
        let got = batch.logits_of(b).unwrap();
        // The reference fed the same tokens.
        let mut cpu = reference_decoder(source.spec(), &reference).unwrap();
        let want = cpu.step(&seq[..seq.len() - 1]).unwrap();
        let cmp = pertoken_reference::compare(&got, &want, common::logits_tolerance(&want, REL));
        assert!(cmp.passed(), "sequence {b}: {cmp}");
    }
    let e = batch.logits_of(3).unwrap_err().to_string();
    assert!(e.contains("holds 3"), "{e}");
    batch.reset().unwrap();
    batch.prefill_sequence(0, &prompts[0]).unwrap();
    let e = batch.decode().unwrap_err().to_string();
    assert!(e.contains("sequence 1 has nothing to continue"), "{e}");
}
