//! The adapter's bandwidth bound on a serving run's own steps.

use pertoken_gpu::DType;
use pertoken_model::ModelSpec;
use pertoken_serve::ServeRun;

/// The least time the run's steps could take at the adapter's copy bandwidth, each step reading
/// the weights once and each of its sequences' keys and values once (every layer, or its window
/// on sliding-window layers), against the time they took.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bound {
    /// Seconds at the copy bandwidth.
    pub seconds: f64,
    /// Seconds the steps took.
    pub measured_seconds: f64,
    /// `seconds / measured_seconds`: the share of the bound reached.
    pub share: f64,
}

impl Bound {
    /// Of `run`, for a model of `spec` with `weight_bytes` of weights and keys and values in
    /// `kv`, at `copy_rate` bytes/s.
    pub fn of(
        run: &ServeRun,
        spec: &ModelSpec,
        (weight_bytes, kv): (u64, DType),
        copy_rate: f64,
    ) -> Bound {
        let m = &spec.shape;
        let per_key = (2 * m.kv_heads * m.head_dim) as f64 * kv.block().1 as f64;
        let mut bytes = 0.0;
        for s in &run.steps {
            // Mean keys per sequence, each layer capped by its window.
            let seqs = s.sequences.max(1) as f64;
            let mean = s.keys as f64 / seqs;
            let keys: f64 = (0..m.layers)
                .map(|l| m.layer_window(l).map_or(mean, |w| mean.min(w as f64)))
                .sum();
            bytes += weight_bytes as f64 + seqs * keys * per_key;
        }
        let seconds = bytes / copy_rate.max(1.0);
        let measured: f64 = run.steps.iter().map(|s| s.seconds).sum();
        Bound {
            seconds,
            measured_seconds: measured,
            share: if measured > 0.0 {
                seconds / measured
            } else {
                0.0
            },
        }
    }
}
