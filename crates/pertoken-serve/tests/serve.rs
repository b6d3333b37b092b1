//! A serving run on the GPU over a tiny synthetic model, with a pool tight enough to preempt:
//! every request's output tokens are the f64 reference's greedy choices (or tie them within
//! 1e-4 of the largest logit).

use pertoken_cost::{Arch, Model, Rope, RopePairing};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Gpu};
use pertoken_model::weights::{reference_decoder, to_reference};
use pertoken_model::{Decoder, DecoderOptions, ModelSpec, PagedKv, Synthetic, WeightSource};
use pertoken_reference::decoder::argmax;
use pertoken_serve::{Arrival, Lengths, SchedulerOptions, ServeReport, Workload, serve};

fn tiny() -> ModelSpec {
    ModelSpec::new(
        Model {
            name: "tiny-serve".into(),
            source: "test".into(),
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            ffn: 96,
            vocab: 120,
            tied_embeddings: true,
            qkv_bias: false,
            experts: 1,
            active_experts: 1,
            sliding_window: None,
            rope: Rope {
                theta: 10_000.0,
                scaling: None,
            },
            rms_eps: 1e-5,
            arch: Arch::default(),
        },
        RopePairing::Halves,
    )
}

#[test]
fn served_tokens_are_the_references_even_through_preemption() {
    let Some(gpu) = gpu_or_skip() else { return };
    let source = Synthetic::new(tiny(), DType::Q8_0, 5).unwrap();
    let weights = to_reference(&source).unwrap();
    let options = SchedulerOptions {
        slots: 6,
        token_budget: 24,
        block: 4,
        blocks: 18,
        context: 48,
    };
    let decoder_options = DecoderOptions {
        context: options.context,
        max_tokens: options.token_budget,
        batch: options.slots,
    };
    let kv = PagedKv {
        blocks: options.blocks,
        block: options.block,
        dtype: DType::F32,
    };
    let mut decoder = Decoder::load_paged(&gpu, &source, decoder_options, kv).unwrap();
    let requests = Workload {
        isl: Lengths::Uniform { lo: 2, hi: 30 },
        osl: Lengths::Uniform { lo: 1, hi: 14 },
        requests: 16,
        arrival: Arrival::Concurrency(6),
        seed: 9,
    }
    .make(120)
    .unwrap();
    let mut last = (0, 0);
    let run = serve(&mut decoder, &requests, options, Some(6), &mut |d, n| {
        last = (d, n)
    })
    .unwrap();
    assert_eq!(last, (16, 16), "progress reached the end");
    assert!(
        run.preemptions > 0,
        "18 blocks of 4 hold fewer than 6 long sequences"
    );
    for (r, rec) in requests.iter().zip(&run.requests) {
        assert_eq!(rec.output.len(), r.max_new, "request {}", r.id);
        let mut cpu = reference_decoder(source.spec(), &weights).unwrap();
        let mut want = cpu.step(&r.prompt).unwrap();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, &t) in rec.output.iter().enumerate() {
            let best = argmax(&want).unwrap();
            let margin = want[best] - want[t as usize];
            assert!(
                t as usize == best || margin <= 1e-4 * scale,
                "request {} token {i}: {t}, the reference {best} by {margin}",
                r.id
            );
            want = cpu.step(&[t]).unwrap();
        }
    }
    let report = ServeReport::of(&run);
    assert_eq!(report.requests, 16);
    assert_eq!(report.preemptions, run.preemptions);
    assert!(report.output_tps > 0.0 && report.ttft.p99 >= report.ttft.p50);
    assert!(report.blocks_peak <= 18 && report.peak_memory > 0);
}

/// 2,000 requests of mixed lengths through a pool that preempts: device memory does not grow
/// (the decoder allocates nothing per request or step), every block comes back, and every 100th
/// request's tokens are the reference's.
#[test]
fn a_soak_of_2000_requests_keeps_memory_flat_and_stays_verified() {
    if gpu_or_skip().is_none() {
        return;
    }
    // A handle of its own: the memory it counts is this test's alone.
    let gpu = Gpu::from_env().unwrap();
    let source = Synthetic::new(tiny(), DType::Q4_1, 6).unwrap();
    let weights = to_reference(&source).unwrap();
    let options = SchedulerOptions {
        slots: 24,
        token_budget: 64,
        block: 4,
        blocks: 60,
        context: 32,
    };
    let decoder_options = DecoderOptions {
        context: options.context,
        max_tokens: options.token_budget,
        batch: options.slots,
    };
    let kv = PagedKv {
        blocks: options.blocks,
        block: options.block,
        dtype: DType::F16,
    };
    let mut decoder = Decoder::load_paged(&gpu, &source, decoder_options, kv).unwrap();
    let requests = Workload {
        isl: Lengths::Uniform { lo: 1, hi: 24 },
        osl: Lengths::Uniform { lo: 1, hi: 8 },
        requests: 2000,
        arrival: Arrival::Concurrency(24),
        seed: 21,
    }
    .make(120)
    .unwrap();
    let run = serve(&mut decoder, &requests, options, Some(24), &mut |_, _| {}).unwrap();
    println!(
        "soak: {} steps, {} preemptions, memory {} / {} / {} bytes (start / peak / end)",
        run.steps.len(),
        run.preemptions,
        run.start_memory,
        run.peak_memory,
        run.end_memory
    );
    assert!(
        run.preemptions > 0,
        "60 blocks of 4 for 24 sequences of up to 32"
    );
    assert_eq!(
        run.peak_memory, run.start_memory,
        "memory grew during the run"
    );
    assert_eq!(run.end_memory, run.start_memory);
    for (r, rec) in requests.iter().zip(&run.requests).step_by(100) {
        assert_eq!(rec.output.len(), r.max_new);
        let mut cpu = reference_decoder(source.spec(), &weights).unwrap();
        let mut want = cpu.step(&r.prompt).unwrap();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for &t in &rec.output {
            let best = argmax(&want).unwrap();
            // f16 keys and values: near ties within 3e-3 of the largest logit may go either way.
            assert!(
                t as usize == best || want[best] - want[t as usize] <= 3e-3 * scale,
                "request {}: {t} against {best}",
                r.id
            );
            want = cpu.step(&[t]).unwrap();
        }
    }
}
