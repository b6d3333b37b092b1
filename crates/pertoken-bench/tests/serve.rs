//! The serving bench as a library: a model whose every other layer attends a sliding window
//! gets a window pool, and each run is verified (the first and last request run alone and
//! replayed through the f64 reference), bounded and predicted.

use pertoken_bench::serve::{ServeBench, ServeConfig};
use pertoken_cost::{Arch, Model, Rope, RopePairing};
use pertoken_gpu::DType;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_model::{ModelSpec, Synthetic};
use pertoken_serve::{Arrival, Lengths};

fn windowed() -> ModelSpec {
    ModelSpec::new(
        Model {
            name: "tiny-window".into(),
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
            sliding_window: Some(6),
            rope: Rope {
                theta: 10_000.0,
                scaling: None,
            },
            rms_eps: 1e-5,
            arch: Arch {
                global_every: Some(2),
                ..Arch::default()
            },
            mla: None,
            moe: Default::default(),
        },
        RopePairing::Halves,
    )
}

#[test]
fn a_windowed_model_serves_verified_with_its_window_pool() {
    let Some(gpu) = gpu_or_skip() else { return };
    let source = Synthetic::new(windowed(), DType::Q8_0, 3).unwrap();
    let config = ServeConfig {
        isl: Lengths::Uniform { lo: 10, hi: 24 },
        osl: Lengths::Uniform { lo: 4, hi: 10 },
        requests: Some(6),
        loads: vec![Arrival::Concurrency(1), Arrival::Concurrency(3)],
        max_seqs: 4,
        kv_dtype: DType::F16,
        block: 4,
        kv_blocks: None,
        token_budget: 8,
        seed: 1,
        verify: true,
    };
    let mut tuner = pertoken_matmul::Tuner::new(&gpu, pertoken_matmul::TuneMode::Off, None);
    let mut bench =
        ServeBench::load(&gpu, &source, &config, 1e10, &mut tuner, &mut |_, _, _| {}).unwrap();
    let setup = bench.setup();
    // Requests of up to 34 positions take 9 blocks of 4; a window of 6 and a chunk of 8 take 5.
    assert_eq!(setup.window, Some((6, 3 * 5)), "{setup:?}");
    let mut runs = Vec::new();
    for &load in &config.loads {
        let m = bench.run(load, &mut |_, _| {}).unwrap();
        let verified = m.verified.clone().unwrap();
        assert!(
            verified
                .as_ref()
                .is_ok_and(|v| v.contains("equal to each run alone and to the f64 reference")),
            "{load:?}: {verified:?}"
        );
        assert!(m.report.window_blocks_peak > 0 && m.report.window_blocks_peak <= 15);
        assert!(m.bound.share > 0.0 && m.launches_per_step > 0.0);
        runs.push((load, m));
    }
    let refs: Vec<_> = runs.iter().map(|(l, m)| (*l, m)).collect();
    let (cal, predicted) = bench.predictions(&refs).unwrap();
    assert!(cal.bytes_per_s > 0.0 && cal.flops_per_s > 0.0);
    assert!(
        predicted
            .iter()
            .all(|p| p.is_some_and(|p| p.output_tps > 0.0))
    );
}
