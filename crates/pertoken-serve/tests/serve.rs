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
    windowed(None)
}

/// The tiny model; with `Some(w)`, every other layer attends a sliding window of `w` positions
/// (as Gemma 3's local layers).
fn windowed(window: Option<u64>) -> ModelSpec {
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
            sliding_window: window,
            rope: Rope {
                theta: 10_000.0,
                scaling: None,
            },
            rms_eps: 1e-5,
            arch: Arch {
                global_every: window.map(|_| 2),
                ..Arch::default()
            },
            mla: None,
            moe: Default::default(),
        },
        RopePairing::Halves,
    )
}

/// A decoder with the scheduler's `options`: its slots, context and step budget, and a paged
/// cache of `dtype` with the scheduler's blocks (and sliding-window pool).
fn paged_decoder(
    gpu: &Gpu,
    source: &Synthetic,
    options: SchedulerOptions,
    dtype: DType,
) -> Decoder {
    let decoder_options = DecoderOptions {
        context: options.context,
        max_tokens: options.token_budget,
        batch: options.slots,
    };
    let kv = PagedKv {
        blocks: options.blocks,
        block: options.block,
        dtype,
        window_blocks: options.window.map(|w| w.1),
    };
    Decoder::load_paged(gpu, source, decoder_options, kv).unwrap()
}

/// The f64 reference's check of `output` after `prompt`: each token its greedy choice, or
/// within `tie` of the largest logit.
fn check_against_reference(
    source: &Synthetic,
    weights: &pertoken_reference::decoder::Weights,
    (prompt, output): (&[u32], &[u32]),
    tie: f64,
) -> Result<(), String> {
    let mut cpu = reference_decoder(source.spec(), weights).unwrap();
    let mut want = cpu.step(prompt).unwrap();
    for (i, &t) in output.iter().enumerate() {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let best = argmax(&want).unwrap();
        let margin = want[best] - want[t as usize];
        if t as usize != best && margin > tie * scale {
            return Err(format!("token {i}: {t}, the reference {best} by {margin}"));
        }
        want = cpu.step(&[t]).unwrap();
    }
    Ok(())
}

/// Every other layer attends a window of 6 positions: those layers keep their keys in a pool of
/// their own, too small for every sequence's whole length, and free the blocks that slide out of
/// the window; the served tokens stay the reference's (whose window layers see the same 6).
#[test]
fn sliding_window_layers_hold_only_their_window() {
    let Some(gpu) = gpu_or_skip() else { return };
    let source = Synthetic::new(windowed(Some(6)), DType::Q8_0, 8).unwrap();
    let weights = to_reference(&source).unwrap();
    // Requests of up to 40 positions: 10 blocks of 4 each in the full pool; a window of 6 and a
    // step's chunk of at most 8 rows fits in (6 − 1 + 8) / 4 + 1 = 5.
    let options = SchedulerOptions {
        slots: 4,
        token_budget: 8,
        block: 4,
        blocks: 40,
        context: 40,
        window: Some((6, 4 * 5)),
    };
    let mut decoder = paged_decoder(&gpu, &source, options, DType::F32);
    let requests = Workload {
        isl: Lengths::Uniform { lo: 10, hi: 25 },
        osl: Lengths::Uniform { lo: 5, hi: 15 },
        requests: 10,
        arrival: Arrival::Concurrency(4),
        seed: 4,
    }
    .make(120)
    .unwrap();
    let run = serve(&mut decoder, &requests, options, Some(4), &mut |_, _| {}).unwrap();
    let report = ServeReport::of(&run);
    println!(
        "window pool: peak {} of {} blocks; full pool: peak {} of {}",
        report.window_blocks_peak,
        report.window_blocks_total,
        report.blocks_peak,
        report.blocks_total
    );
    assert!(report.window_blocks_peak <= 20);
    assert!(
        report.window_blocks_peak < report.blocks_peak,
        "the window layers held less than the others"
    );
    for (r, rec) in requests.iter().zip(&run.requests) {
        check_against_reference(&source, &weights, (&r.prompt, &rec.output), 1e-4)
            .unwrap_or_else(|e| panic!("request {}: {e}", r.id));
    }
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
        window: None,
    };
    let mut decoder = paged_decoder(&gpu, &source, options, DType::F32);
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
        window: None,
    };
    let mut decoder = paged_decoder(&gpu, &source, options, DType::F16);
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
