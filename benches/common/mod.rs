//! Shared by the criterion benches.

use std::time::Duration;

use pertoken::gpu::{Gpu, MAX_TIMED_PASSES, Result};

/// GPU time of `iters` calls of `run`, each recording one launch, timed in batches the timer can
/// hold (timestamp queries where the adapter has them).
pub(crate) fn gpu_time(gpu: &Gpu, run: &dyn Fn() -> Result<()>, iters: u64) -> Duration {
    let mut total = 0.0;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(u64::from(MAX_TIMED_PASSES));
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
