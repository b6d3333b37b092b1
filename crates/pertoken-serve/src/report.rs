//! What a serving run measured, as people compare serving systems: throughput, time to first
//! token, time per output token and inter-token latency (mean, median, 99th percentile), how
//! full the batches and the KV pool were, preemptions and peak memory.

use crate::ServeRun;

/// Mean, median and 99th percentile of a latency, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
}

impl Latency {
    /// Of `values` (zeros when empty).
    pub fn of(mut values: Vec<f64>) -> Latency {
        if values.is_empty() {
            return Latency::default();
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Latency {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: rank(0.5),
            p99: rank(0.99),
        }
    }
}

/// A serving run's summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServeReport {
    /// Requests run.
    pub requests: usize,
    /// Prompt tokens of all requests.
    pub input_tokens: usize,
    /// Output tokens of all requests.
    pub output_tokens: usize,
    /// Seconds from the first arrival to the last token.
    pub seconds: f64,
    /// Output tokens per second.
    pub output_tps: f64,
    /// Prompt and output tokens per second.
    pub total_tps: f64,
    /// Time to first token.
    pub ttft: Latency,
    /// Time per output token after the first, per request.
    pub tpot: Latency,
    /// Every gap between a request's consecutive tokens.
    pub itl: Latency,
    /// Steps run.
    pub steps: usize,
    /// Mean sequences running per step, weighted by the step's time.
    pub occupancy: f64,
    /// Mean rows per step.
    pub rows_per_step: f64,
    /// Mean KV blocks in use, weighted by time.
    pub blocks_mean: f64,
    /// The most KV blocks in use at once.
    pub blocks_peak: usize,
    /// KV blocks in the pool.
    pub blocks_total: usize,
    /// The most sliding-window blocks in use at once, and their pool (0 and 0 without one).
    pub window_blocks_peak: usize,
    /// Blocks in the sliding-window pool.
    pub window_blocks_total: usize,
    /// Preemptions.
    pub preemptions: usize,
    /// Device memory the decoder held before the run (weights, KV pool, activations), bytes.
    pub start_memory: u64,
    /// The most device memory it held at any step's end, bytes (equal to the start: nothing is
    /// allocated per request or step).
    pub peak_memory: u64,
    /// Device memory it held after the run, bytes.
    pub end_memory: u64,
}

impl ServeReport {
    /// The summary of `run`.
    pub fn of(run: &ServeRun) -> ServeReport {
        let input_tokens = run.requests.iter().map(|r| r.prompt_len).sum();
        let output_tokens: usize = run.requests.iter().map(|r| r.token_times.len()).sum();
        let seconds = run.seconds.max(1e-9);
        let itl = run
            .requests
            .iter()
            .flat_map(|r| r.token_times.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let busy: f64 = run.steps.iter().map(|s| s.seconds).sum::<f64>().max(1e-12);
        let weighted = |f: &dyn Fn(&crate::StepRecord) -> f64| {
            run.steps.iter().map(|s| f(s) * s.seconds).sum::<f64>() / busy
        };
        let n_steps = run.steps.len().max(1) as f64;
        ServeReport {
            requests: run.requests.len(),
            input_tokens,
            output_tokens,
            seconds: run.seconds,
            output_tps: output_tokens as f64 / seconds,
            total_tps: (input_tokens + output_tokens) as f64 / seconds,
            ttft: Latency::of(run.requests.iter().filter_map(|r| r.ttft()).collect()),
            tpot: Latency::of(run.requests.iter().filter_map(|r| r.tpot()).collect()),
            itl: Latency::of(itl),
            steps: run.steps.len(),
            occupancy: weighted(&|s| s.running as f64),
            rows_per_step: run.steps.iter().map(|s| s.rows as f64).sum::<f64>() / n_steps,
            blocks_mean: weighted(&|s| s.blocks_in_use as f64),
            blocks_peak: run.steps.iter().map(|s| s.blocks_in_use).max().unwrap_or(0),
            blocks_total: run.options.blocks,
            window_blocks_peak: run
                .steps
                .iter()
                .map(|s| s.window_blocks_in_use)
                .max()
                .unwrap_or(0),
            window_blocks_total: run.options.window.map_or(0, |w| w.1),
            preemptions: run.preemptions,
            start_memory: run.start_memory,
            peak_memory: run.peak_memory,
            end_memory: run.end_memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!((l.p50, l.p99, l.mean), (50.0, 99.0, 50.5));
        assert_eq!(Latency::of(vec![3.0]).p99, 3.0);
        assert_eq!(Latency::of(vec![]), Latency::default());
    }
}
