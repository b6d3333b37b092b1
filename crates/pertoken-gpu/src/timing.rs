//! Timing GPU work: timestamp queries where the adapter has them, wall clock otherwise.

use std::time::Instant;

use crate::{Gpu, Result};

/// How a [`Timing`] was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingMethod {
    /// GPU timestamps written before the first compute pass and after the last.
    Timestamp,
    /// Host wall clock around recording, submit and wait: includes submit and driver overhead.
    WallClock,
}

impl std::fmt::Display for TimingMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimingMethod::Timestamp => "timestamp",
            TimingMethod::WallClock => "wall clock",
        })
    }
}

/// How long some GPU work took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Seconds of GPU time, by [`Timing::method`].
    pub seconds: f64,
    /// Seconds of host wall clock from the start of recording to the end of the wait.
    pub wall_seconds: f64,
    /// How `seconds` was measured.
    pub method: TimingMethod,
    /// Compute passes (kernel dispatches) timed.
    pub passes: u32,
}

impl Timing {
    fn wall_clock(seconds: f64, passes: u32) -> Timing {
        Timing {
            seconds,
            wall_seconds: seconds,
            method: TimingMethod::WallClock,
            passes,
        }
    }
}

/// Most compute passes [`Gpu::measure`] batches into one timed call (calls of a short kernel
/// repeated back to back). [`Gpu::time`] itself times any number.
pub const MAX_TIMED_PASSES: u32 = 1024;

/// Collects the passes recorded while [`Gpu::time`] runs. Only two timestamps are written: at
/// the beginning of the first pass, and at the end of an empty pass recorded after the last.
/// wgpu's Vulkan backend writes pass timestamps at the bottom of the pipe, so a timestamp at
/// every pass would drain the GPU between passes: a batch of 1 MiB copies on an H100 cost ~12 µs
/// a call that way, time the kernels do not take in a forward pass.
pub(crate) struct Recorder {
    query_set: wgpu::QuerySet,
    passes: u32,
}

impl Recorder {
    fn new(device: &wgpu::Device) -> Self {
        Recorder {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pertoken timing"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            passes: 0,
        }
    }

    /// The timestamp writes for the next pass: the beginning one for the first pass, none after.
    /// Any number of passes can be timed: only the first and the closing one write.
    pub(crate) fn next_pass(
        &mut self,
        _op: &'static str,
    ) -> Result<Option<wgpu::ComputePassTimestampWrites<'_>>> {
        self.passes = self.passes.saturating_add(1);
        Ok(
            (self.passes == 1).then_some(wgpu::ComputePassTimestampWrites {
                query_set: &self.query_set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: None,
            }),
        )
    }
}

impl Gpu {
    /// Runs `f`, which records kernel launches on this handle, and measures the GPU time of
    /// what it recorded.
    ///
    /// Pending work is finished first so it is not counted. With timestamp queries the result is
    /// the span from the start of the first pass `f` recorded to the end of the last (the GPU
    /// time of the sequence, barriers between passes included); without, the wall clock around
    /// recording, submit and wait. The result says which.
    ///
    /// While it runs, other threads' ops on this handle (and its clones) wait, so the time
    /// holds this thread's work alone; `f` must not wait for another thread's GPU work.
    pub fn time<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, Timing)> {
        let _owner = self.own_timing();
        self.sync()?;
        let use_timestamps = self.capabilities().timestamp_query;
        if use_timestamps {
            let recorder = self.scoped("time", || Recorder::new(&self.inner.device))?;
            self.pending().recorder = Some(recorder);
        }
        let start = Instant::now();
        let result = f();
        let recorder = self.pending().recorder.take();
        let value = result?;

        let recorder = match recorder {
            Some(r) if r.passes > 0 => r,
            _ => {
                self.sync()?;
                return Ok((value, Timing::wall_clock(start.elapsed().as_secs_f64(), 0)));
            }
        };
        // The closing timestamp: an empty pass after the last one.
        {
            let mut pending = self.pending();
            let encoder = pending.encoder.get_or_insert_with(|| self.new_encoder());
            drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("pertoken timing end"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &recorder.query_set,
                    beginning_of_pass_write_index: None,
                    end_of_pass_write_index: Some(1),
                }),
            }));
        }

        let bytes = 2 * 8;
        let device = &self.inner.device;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pertoken timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.staging_buffer(bytes);
        self.submit_pending(
            "time",
            Some(&mut |enc: &mut wgpu::CommandEncoder| {
                enc.resolve_query_set(&recorder.query_set, 0..2, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            }),
        )?;
        let raw = self.read_staging("time", &staging)?;
        let wall = start.elapsed().as_secs_f64();
        let stamps: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let (begin, end) = (stamps[0], stamps[1]);
        let passes = recorder.passes;
        if end <= begin {
            // A driver that wrote no usable timestamps: fall back rather than report zero.
            return Ok((value, Timing::wall_clock(wall, passes)));
        }
        let period = f64::from(self.capabilities().timestamp_period_ns);
        Ok((
            value,
            Timing {
                seconds: (end - begin) as f64 * period * 1e-9,
                wall_seconds: wall,
                method: TimingMethod::Timestamp,
                passes,
            },
        ))
    }
}

impl Gpu {
    /// Runs `f` with every kernel launch it makes submitted, waited on and timed alone (by
    /// [`Gpu::time`]), and returns each launch's op and time, in order: where a sequence's time
    /// goes, and what its kernels cost without overlapping (against a [`Gpu::time`] of the same
    /// `f`). Other threads' ops on this handle wait meanwhile, as for [`Gpu::time`].
    pub fn time_each<R>(
        &self,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<(R, Vec<(&'static str, Timing)>)> {
        let _owner = self.own_timing();
        self.sync()?;
        self.pending().solo = Some(Vec::new());
        let result = f();
        let log = self.pending().solo.take().unwrap_or_default();
        self.sync()?;
        Ok((result?, log))
    }
}

/// GPU time a timed batch of calls should span at least: on a fast GPU one kernel takes
/// microseconds, the same order as the gap between a pass's start timestamp and its first
/// instruction, so a single timed call overstates it (an H100 showed ~0.3 ms on every GEMV).
pub const BATCH_SECONDS: f64 = 2e-3;

/// Most calls [`Gpu::time_calls`] puts in one batch.
pub const MAX_BATCH_CALLS: u32 = 256;

/// How many calls of work that took `single` (timed alone) to put in one timed batch: enough for
/// [`BATCH_SECONDS`], at most [`MAX_BATCH_CALLS`] and what the timer's passes allow; 1 for work
/// that is already that long (every kernel on a CPU adapter).
pub fn calls_per_batch(single: &Timing) -> u32 {
    let passes = single.passes.max(1);
    let cap = (MAX_TIMED_PASSES / passes).clamp(1, MAX_BATCH_CALLS);
    if single.seconds <= 0.0 || !single.seconds.is_finite() {
        return cap;
    }
    let calls = (BATCH_SECONDS / single.seconds).ceil();
    if calls >= f64::from(cap) {
        cap
    } else {
        (calls as u32).max(1)
    }
}

impl Gpu {
    /// Where work is short enough to batch (`calls > 1`: a fast GPU), runs one batch untimed
    /// first, so that a GPU that idled while the host computed a reference has its clocks up
    /// before timing starts (a lead, not yet confirmed: on an H100 one GEMV configuration at
    /// 4096×4096 f16 measured 0.019, 0.052 and 0.062 ms in three calls). Work that runs alone
    /// (every kernel on a CPU adapter) needs none.
    pub fn warm_up(&self, calls: u32, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        if calls > 1 {
            for _ in 0..calls {
                f()?;
            }
            self.sync()?;
        }
        Ok(())
    }

    /// Times `calls` back-to-back calls of `f` (each recording the same launches) as one batch
    /// and returns the time per call: what a sequence of kernels in one submission costs each,
    /// as in a model's forward pass. Size `calls` with [`calls_per_batch`].
    pub fn time_calls(&self, calls: u32, f: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
        let calls = calls.max(1);
        let ((), t) = self.time(|| {
            for _ in 0..calls {
                f()?;
            }
            Ok(())
        })?;
        Ok(Timing {
            seconds: t.seconds / f64::from(calls),
            wall_seconds: t.wall_seconds / f64::from(calls),
            method: t.method,
            passes: t.passes,
        })
    }
}

/// Per-call times of some work over several timed batches ([`Gpu::measure`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Median seconds per call over the batches.
    pub median: f64,
    /// Fastest batch's seconds per call.
    pub best: f64,
    /// Calls per timed batch.
    pub calls: u32,
    /// How the batches were timed.
    pub method: TimingMethod,
}

impl Gpu {
    /// Times `f` once alone to size a batch ([`calls_per_batch`]), then `repeats` batches
    /// ([`Gpu::time_calls`]); returns the median and fastest time per call. `f` should have run
    /// once before (a warm-up compiles its pipelines).
    pub fn measure(&self, repeats: u32, f: &mut dyn FnMut() -> Result<()>) -> Result<Measured> {
        let ((), single) = self.time(&mut *f)?;
        let calls = calls_per_batch(&single);
        self.warm_up(calls, f)?;
        let mut times = Vec::with_capacity(repeats.max(1) as usize);
        let mut method = single.method;
        for _ in 0..repeats.max(1) {
            let t = self.time_calls(calls, f)?;
            method = t.method;
            times.push(t.seconds);
        }
        times.sort_by(f64::total_cmp);
        let mid = times.len() / 2;
        let median = if times.len() % 2 == 1 {
            times[mid]
        } else {
            (times[mid - 1] + times[mid]) / 2.0
        };
        Ok(Measured {
            median,
            best: times[0],
            calls,
            method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn took(seconds: f64, passes: u32) -> Timing {
        Timing {
            seconds,
            wall_seconds: seconds,
            method: TimingMethod::Timestamp,
            passes,
        }
    }

    #[test]
    fn batches_span_the_target_within_the_timer_limits() {
        // A 10 µs kernel: 200 calls make 2 ms.
        assert_eq!(calls_per_batch(&took(1e-5, 1)), 200);
        // Work already longer than the target runs alone.
        assert_eq!(calls_per_batch(&took(5e-3, 2)), 1);
        // Very short work: capped by MAX_BATCH_CALLS, then by the passes the timer holds.
        assert_eq!(calls_per_batch(&took(1e-9, 1)), MAX_BATCH_CALLS);
        assert_eq!(calls_per_batch(&took(1e-9, 16)), MAX_TIMED_PASSES / 16);
        assert_eq!(calls_per_batch(&took(1e-9, 2 * MAX_TIMED_PASSES)), 1);
        // A timer that read nothing: the cap, never zero calls.
        assert_eq!(calls_per_batch(&took(0.0, 4)), MAX_BATCH_CALLS);
        assert_eq!(calls_per_batch(&took(f64::NAN, 0)), MAX_BATCH_CALLS);
    }
}
