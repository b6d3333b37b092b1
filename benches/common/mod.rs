//! Shared by the criterion benches.

use std::time::Duration;

use pertoken::gpu::{Gpu, MAX_TIMED_PASSES, Result};

/// GPU time of `iters` calls of `run`, each recording one launch, timed in batches the timer can
/// hold (timestamp queries where the adapter has them).
#[allow(dead_code)] // not every bench uses both
pub(crate) fn gpu_time(gpu: &Gpu, run: &dyn Fn() -> Result<()>, iters: u64) -> Duration {
    gpu_time_launches(gpu, run, iters, 1)
}

/// [`gpu_time`] for a `run` that records `launches` launches.
pub(crate) fn gpu_time_launches(
    gpu: &Gpu,
    run: &dyn Fn() -> Result<()>,
    iters: u64,
    launches: u32,
) -> Duration {
    let mut total = 0.0;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(u64::from((MAX_TIMED_PASSES / launches.max(1)).max(1)));
        let ((), t) = gpu
            .time(|| {
                for _ in 0..batch {
                    run()?;
                }
                Ok(())
            })
            .expect("timed launches");
        total += t.seconds;
        left -= batch;
    }
    Duration::from_secs_f64(total)
}
