//! The serving modes against hand calculations.
use super::*;
use crate::Catalog;

fn h100() -> Deployment {
    crate::estimate::tests::deployment("h100-sxm")
}

fn load(batching: Batching) -> Load {
    Load {
        isl: 1000,
        osl: 1000,
        batching,
        max_batch: None,
        max_tpot_s: None,
        requests: None,
    }
}

#[test]
fn kv_memory_bounds_the_batch_by_hand() {
    // Llama 3.1 8B in f16: 16.06 GB of weights; 80 GB less 10% leaves 55.94 GB. A sequence of
    // 1000 + 1000 tokens holds 2000 · 131072 bytes = 262.1 MB → 213 sequences.
    let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
    let d = h100();
    assert_eq!(kv_bound(&m, &d, &load(Batching::Continuous)), 213);
    let s = serve(&m, &d, &load(Batching::Continuous), None).unwrap();
    assert_eq!((s.batch, s.limited_by), (213, "KV memory"));
    assert!(s.usd_per_m_output.is_none());
    assert!(s.assumptions.len() >= 4);
}

#[test]
fn tensor_parallel_past_the_kv_heads_holds_each_kv_head_on_several_devices() {
    // Qwen3-235B-A22B has 4 KV heads: over 8 devices each holds one, so every KV head's
    // cache is kept (and read) twice. Its 94 layers · 2 · 4 · 128 one-byte elements are
    // 96256 bytes per token; a 128 + 2048 token sequence then holds 2 · 2176 · 96256 =
    // 418.9 MB. 8 · 80 GB less 10% is 576 GB; the fp8 weights take 235.1 GB.
    let m = Catalog::builtin().model("qwen3-235b-a22b").unwrap().clone();
    let mut d = h100();
    d.devices = 8;
    d.format = crate::account::WeightFormat::Fp8;
    d.kv_bytes = 1.0;
    assert_eq!(d.kv_copies(&m), 2.0);
    assert_eq!(d.kv_bytes_held(&m), 2.0);
    let l = Load {
        isl: 128,
        osl: 2048,
        ..load(Batching::Continuous)
    };
    let free = 8.0 * 80e9 * 0.9 - crate::account::weight_bytes(&m, d.format);
    let expect = (free / (2.0 * 2176.0 * 96256.0)).floor() as u64;
    assert_eq!(kv_bound(&m, &d, &l), expect);
    assert!((800..830).contains(&expect), "{expect}");
    // Over 4 devices (one KV head each), or 2 (two each), nothing is held twice; nor in a
    // layer split; Llama 3.1 8B's 8 KV heads over 8 devices neither.
    for n in [1, 2, 4] {
        d.devices = n;
        assert_eq!(d.kv_copies(&m), 1.0, "{n}");
    }
    d.devices = 8;
    d.split = crate::estimate::Split::Layers;
    assert_eq!(d.kv_copies(&m), 1.0);
    d.split = crate::estimate::Split::Tensor;
    let llama = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
    assert_eq!(d.kv_copies(&llama), 1.0);
    // 3 KV heads over 2 devices: 2 and 1, held as 2 · ⌈3/2⌉ = 4 heads' worth.
    let mut three = llama.clone();
    three.kv_heads = 3;
    d.devices = 2;
    assert!((d.kv_copies(&three) - 4.0 / 3.0).abs() < 1e-12);
    d.devices = 8;
    d.interconnect = crate::latency::interconnect("nvlink4").ok();
    let s = serve(&m, &d, &l, None).unwrap();
    assert_eq!(s.batch, expect);
    let note = "held and read on 2 devices";
    assert!(
        s.assumptions.iter().any(|a| a.contains(note)),
        "{:?}",
        s.assumptions
    );
}

#[test]
fn expert_parallelism_keeps_a_copy_of_the_shared_weights_on_every_device() {
    // Qwen3-235B-A22B's weights that are not experts: per layer 71303168 attention, 524288
    // router, 8192 norm parameters (94 layers), 2 · 151936 · 4096 embedding and head, and
    // a 4096 final norm: 7997214720, one byte each in fp8. With expert parallelism each of
    // 8 devices holds a copy, 7 more than tensor parallelism; no KV head is held twice, so
    // a 128 + 2048 token sequence takes 2176 · 96256 bytes.
    let m = Catalog::builtin().model("qwen3-235b-a22b").unwrap().clone();
    let mut d = h100();
    d.devices = 8;
    d.format = crate::account::WeightFormat::Fp8;
    d.kv_bytes = 1.0;
    d.split = crate::estimate::Split::Expert;
    d.interconnect = crate::latency::interconnect("nvlink4").ok();
    let all = crate::account::weight_bytes(&m, d.format);
    assert_eq!(d.weight_bytes_held(&m), all + 7.0 * 7_997_214_720.0);
    let l = Load {
        isl: 128,
        osl: 2048,
        ..load(Batching::Continuous)
    };
    let free = 8.0 * 80e9 * 0.9 - all - 7.0 * 7_997_214_720.0;
    let expect = (free / (2176.0 * 96256.0)).floor() as u64;
    assert_eq!(kv_bound(&m, &d, &l), expect);
    assert!((1350..1370).contains(&expect), "{expect}");
    let s = serve(&m, &d, &l, None).unwrap();
    assert_eq!(s.batch, expect);
    assert!(
        s.assumptions
            .iter()
            .any(|a| a.contains("expert parallel over 8 devices")),
        "{:?}",
        s.assumptions
    );
}

#[test]
fn a_finite_run_counts_its_last_smaller_wave() {
    // Llama 3.1 8B in f16 on an H100 at 1000 + 1000: 213 sequences fit (above). 500
    // requests run as 2 waves of 213 and one of 74, each 1000 steps long.
    let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
    let d = h100();
    let steady = serve(&m, &d, &load(Batching::Continuous), None).unwrap();
    let step = |b: u64| {
        let (w, tokens) = continuous_step_work(&m, &d, &load(Batching::Continuous), b);
        d.step(&m, w, tokens).unwrap().total_s
    };
    let finite = |n| Load {
        requests: Some(n),
        ..load(Batching::Continuous)
    };
    let s = serve(&m, &d, &finite(500), None).unwrap();
    let want = 500.0 * 1000.0 / (2.0 * 1000.0 * step(213) + 1000.0 * step(74));
    assert!((s.output_tokens_per_s - want).abs() < 1e-9 * want);
    assert!(s.output_tokens_per_s < steady.output_tokens_per_s);
    assert_eq!((s.batch, s.tpot_s), (steady.batch, steady.tpot_s));
    assert!(s.assumptions.iter().any(|a| a.contains("then one of 74")));
    // Whole waves are the steady state; fewer requests than fit are one wave of them.
    let whole = serve(&m, &d, &finite(426), None).unwrap();
    let rel = whole.output_tokens_per_s / steady.output_tokens_per_s - 1.0;
    assert!(rel.abs() < 1e-12, "{rel}");
    let few = serve(&m, &d, &finite(10), None).unwrap();
    assert!((few.output_tokens_per_s - 10.0 / step(10)).abs() < 1e-9);
    assert!(serve(&m, &d, &finite(0), None).is_err());
}

#[test]
fn the_steady_state_step_by_hand() {
    // tiny at isl 6, osl 2: batch 4 decodes 4 tokens at context 7 and prefills 4 · 6/2 = 12
    // prompt tokens. FLOPs: decode 4 · (2 · 137728 + 4 · 2 · 4 · 16 · 8) = 1118208; prefill
    // 12 · (2 · 137728 + 4 · 2 · 4 · 16 · 3) = 3323904.
    let m = Catalog::builtin().model("tiny").unwrap().clone();
    let l = Load {
        isl: 6,
        osl: 2,
        ..load(Batching::Continuous)
    };
    let (w, tokens) = continuous_step_work(&m, &h100(), &l, 4);
    assert_eq!(tokens, 16);
    assert_eq!(w.flops(), 1_118_208.0 + 3_323_904.0);
    // Of them attention: decode 4 · 4 · 2 · 4 · 16 · 8 = 16384; chunks 12 · 4 · 2 · 4 · 16 · 3.
    assert_eq!(w.attention.flops, 16_384.0 + 18_432.0);
    // Bytes: weights touched by 16 tokens at 2 bytes ((73984 + 64000 + 16 · 64 + 64) · 2 =
    // 278144), KV read and written by 4 sequences (4 · 9 · 256 = 9216), 12 written (3072).
    assert_eq!(w.bytes(), 278_144.0 + 9_216.0 + 3_072.0);
    assert_eq!(w.matmuls.bytes, 278_144.0);
    assert_eq!(w.attention.bytes, 9_216.0 + 3_072.0);
}

#[test]
fn large_batches_are_compute_bound_and_latency_limits_shrink_them() {
    let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
    let d = h100();
    // At 1000/1000 the KV reads of 213 sequences (42 GB a step) still bound the step; at
    // 128/128, 1667 sequences fit and their matmuls do.
    let l1000 = serve(&m, &d, &load(Batching::Continuous), None).unwrap();
    assert_eq!(l1000.step.bound(), "memory");
    let short = Load {
        isl: 128,
        osl: 128,
        ..load(Batching::Continuous)
    };
    let s = serve(&m, &d, &short, None).unwrap();
    assert_eq!((s.batch, s.step.bound()), (1667, "compute"));
    // Output rate: 2 tokens of matmul FLOPs per output token (one prefill, one decode) at
    // 494.75 TFLOP/s is the ceiling; attention makes it a little slower.
    let ceiling = 989.5e12 * 0.5 / (2.0 * 2.0 * crate::account::matmul_params(&m));
    assert!(s.output_tokens_per_s < ceiling && s.output_tokens_per_s > 0.8 * ceiling);
    let limited = Load {
        max_tpot_s: Some(0.02),
        ..short
    };
    let t = serve(&m, &d, &limited, None).unwrap();
    assert_eq!(t.limited_by, "latency limit");
    assert!(t.tpot_s <= 0.02 && t.batch < s.batch);
    let capped = Load {
        max_batch: Some(8),
        ..short
    };
    assert_eq!(
        serve(&m, &d, &capped, None).unwrap().limited_by,
        "batch limit"
    );
}

#[test]
fn static_batches_by_hand() {
    // One sequence, isl 1, osl 1: a 1-token prefill then one decode step at context 1.
    let m = Catalog::builtin().model("tiny").unwrap().clone();
    let d = h100();
    let l = Load {
        isl: 1,
        osl: 1,
        ..load(Batching::Static { batch: 1 })
    };
    let s = serve(&m, &d, &l, None).unwrap();
    let pre = d
        .step(&m, crate::account::prefill(&m, d.format, 2.0, 1), 1)
        .unwrap()
        .total_s;
    let dec = d
        .step(&m, decode_step(&m, d.format, 2.0, 1, 1), 1)
        .unwrap()
        .total_s;
    assert!((s.output_tokens_per_s - 1.0 / (pre + dec)).abs() < 1e-6 * s.output_tokens_per_s);
    let big = Load {
        batching: Batching::Static { batch: 1 << 40 },
        ..l
    };
    assert!(serve(&m, &d, &big, None).is_err());
}
