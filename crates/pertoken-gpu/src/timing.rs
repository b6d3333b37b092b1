//! Timing GPU work: timestamp queries where the adapter has them, wall clock otherwise.

use std::time::Instant;

use crate::{Error, Gpu, Result};

/// How a [`Timing`] was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingMethod {
    /// GPU timestamps written at the start of the first compute pass and the end of the last.
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

/// Most compute passes one [`Gpu::time`] call may time with timestamps.
pub const MAX_TIMED_PASSES: u32 = 1024;

/// Collects timestamp writes for the passes recorded while [`Gpu::time`] runs.
pub(crate) struct Recorder {
    query_set: wgpu::QuerySet,
    next: u32,
}

impl Recorder {
    fn new(device: &wgpu::Device) -> Self {
        Recorder {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pertoken timing"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_TIMED_PASSES,
            }),
            next: 0,
        }
    }

    /// The query set and the begin/end indices for the next pass.
    pub(crate) fn next_pass(&mut self, op: &'static str) -> Result<(wgpu::QuerySet, u32, u32)> {
        if self.next >= 2 * MAX_TIMED_PASSES {
            return Err(Error::Unsupported {
                op,
                reason: format!(
                    "more than {MAX_TIMED_PASSES} kernel launches inside one Gpu::time call; \
                     time fewer at once"
                ),
            });
        }
        let b = self.next;
        self.next += 2;
        Ok((self.query_set.clone(), b, b + 1))
    }
}

impl Gpu {
    /// Runs `f`, which records kernel launches on this handle, and measures the GPU time of
    /// what it recorded.
    ///
    /// Pending work is finished first so it is not counted. With timestamp queries the result is
    /// the span from the start of the first pass `f` recorded to the end of the last; without,
    /// the wall clock around recording, submit and wait. The result says which.
    pub fn time<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, Timing)> {
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
            Some(r) if r.next > 0 => r,
            _ => {
                self.sync()?;
                return Ok((value, Timing::wall_clock(start.elapsed().as_secs_f64(), 0)));
            }
        };

        let bytes = u64::from(recorder.next) * 8;
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
                enc.resolve_query_set(&recorder.query_set, 0..recorder.next, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            }),
        )?;
        let raw = self.read_staging("time", &staging)?;
        let wall = start.elapsed().as_secs_f64();
        let stamps: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let begin = stamps.iter().step_by(2).copied().min().unwrap_or(0);
        let end = stamps.iter().skip(1).step_by(2).copied().max().unwrap_or(0);
        let passes = recorder.next / 2;
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
