//! A serving run: requests arrive on the wall clock, the scheduler plans each step, an engine
//! (the decoder) runs it, and every token's time is recorded.

use std::time::{Duration, Instant};

use pertoken_model::{Decoder, SeqStep};

use crate::scheduler::Event;
use crate::{Request, Result, Scheduler, SchedulerOptions, ServeError};

/// What runs a planned step: [`Decoder::step`] (loaded with [`Decoder::load_paged`]).
pub trait Engine {
    /// Runs one step; returns the sampled tokens in the order of `seqs`.
    fn step(&mut self, seqs: &[SeqStep<'_>]) -> pertoken_model::Result<Vec<u32>>;

    /// Bytes of device memory the engine holds now (0 if it cannot say).
    fn memory_in_use(&self) -> u64 {
        0
    }
}

impl Engine for Decoder {
    fn step(&mut self, seqs: &[SeqStep<'_>]) -> pertoken_model::Result<Vec<u32>> {
        Decoder::step(self, seqs)
    }

    fn memory_in_use(&self) -> u64 {
        self.gpu().memory_in_use()
    }
}

/// One request's timeline, in seconds from the run's start.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RequestRecord {
    /// Its index in the workload.
    pub id: usize,
    /// Prompt tokens.
    pub prompt_len: usize,
    /// When it arrived.
    pub arrival: f64,
    /// When each output token was chosen (the first is its time to first token).
    pub token_times: Vec<f64>,
    /// Its output tokens.
    pub output: Vec<u32>,
}

impl RequestRecord {
    /// Time to first token.
    pub fn ttft(&self) -> Option<f64> {
        self.token_times.first().map(|t| t - self.arrival)
    }

    /// Time per output token after the first (None with a single token).
    pub fn tpot(&self) -> Option<f64> {
        let n = self.token_times.len();
        (n > 1).then(|| (self.token_times[n - 1] - self.token_times[0]) / (n - 1) as f64)
    }
}

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepRecord {
    /// When it started and how long it took, seconds.
    pub start: f64,
    /// Its duration, seconds.
    pub seconds: f64,
    /// Rows: decode rows plus prompt (or recompute) rows.
    pub rows: usize,
    /// Decode rows.
    pub decode_rows: usize,
    /// Sequences it ran (a decode row or a prompt chunk each).
    pub sequences: usize,
    /// Sequences running after it was planned.
    pub running: usize,
    /// KV blocks handed out while it ran.
    pub blocks_in_use: usize,
    /// Sliding-window blocks handed out while it ran (0 without a window pool).
    pub window_blocks_in_use: usize,
    /// Keys its sequences attend, one pass each: the sum of their lengths after it (what a
    /// step reads of the KV cache).
    pub keys: usize,
}

/// Everything a serving run recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServeRun {
    /// Every request, in workload order.
    pub requests: Vec<RequestRecord>,
    /// Every step, in order.
    pub steps: Vec<StepRecord>,
    /// Preemptions (each a sequence recomputed later).
    pub preemptions: usize,
    /// Seconds from the first arrival to the last token.
    pub seconds: f64,
    /// Device memory the engine held before the first step.
    pub start_memory: u64,
    /// The most device memory the engine held at any step's end.
    pub peak_memory: u64,
    /// Device memory the engine held after the last step.
    pub end_memory: u64,
    /// The scheduler's limits.
    #[serde(skip)]
    pub options: SchedulerOptions,
}

/// Runs `requests` through `engine` with continuous batching under `options`; each request is
/// sent when the wall clock passes its arrival and, with `in_flight = Some(c)`, when fewer than
/// `c` are in flight (a client with `c` connections, as vLLM's `--max-concurrency`: its clock,
/// and so its time to first token, starts when it is sent). `progress(done, total)` after every
/// step.
pub fn serve(
    engine: &mut dyn Engine,
    requests: &[Request],
    options: SchedulerOptions,
    in_flight: Option<usize>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ServeRun> {
    let mut scheduler = Scheduler::new(options)?;
    // Every request is checked before anything runs.
    let mut check = Scheduler::new(options)?;
    for r in requests {
        check.add(r)?;
    }
    let mut order: Vec<&Request> = requests.iter().collect();
    order.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
    let mut records: Vec<RequestRecord> = order
        .iter()
        .map(|r| RequestRecord {
            id: r.id,
            prompt_len: r.prompt.len(),
            arrival: r.arrival,
            token_times: Vec::with_capacity(r.max_new),
            output: Vec::new(),
        })
        .collect();
    let start = Instant::now();
    let mut next = 0;
    let mut done = 0;
    let mut steps = Vec::new();
    let start_memory = engine.memory_in_use();
    let mut peak_memory = start_memory;
    while done < order.len() {
        let now = start.elapsed().as_secs_f64();
        while next < order.len()
            && order[next].arrival <= now
            && in_flight.is_none_or(|c| next - done < c)
        {
            scheduler.add(order[next])?;
            if in_flight.is_some() {
                records[next].arrival = now;
            }
            next += 1;
        }
        let plan = scheduler.plan();
        if plan.is_empty() {
            // Nothing running or waiting: sleep until the next arrival.
            let Some(r) = order.get(next) else {
                return Err(ServeError::Invalid(
                    "the scheduler stopped with requests unfinished".into(),
                ));
            };
            std::thread::sleep(Duration::from_secs_f64((r.arrival - now).max(0.0)));
            continue;
        }
        let rows = plan.iter().map(|p| p.rows).sum();
        let decode_rows = plan.iter().filter(|p| p.decode).count();
        let blocks_in_use = scheduler.blocks_in_use();
        let window_blocks_in_use = scheduler.window_blocks_in_use();
        let running = scheduler.running();
        let planned = scheduler.steps();
        let keys = planned.iter().map(|s| s.pos + s.rows()).sum();
        let sequences = planned.len();
        let t0 = start.elapsed().as_secs_f64();
        let tokens = engine.step(&planned)?;
        drop(planned);
        let t1 = start.elapsed().as_secs_f64();
        for event in scheduler.commit(&tokens)? {
            match event {
                Event::Token { req, .. } => records[req].token_times.push(t1),
                Event::Finished(req) => {
                    records[req].output = scheduler.output_of(req).unwrap_or_default().to_vec();
                    done += 1;
                }
            }
        }
        peak_memory = peak_memory.max(engine.memory_in_use());
        steps.push(StepRecord {
            start: t0,
            seconds: t1 - t0,
            rows,
            decode_rows,
            sequences,
            running,
            blocks_in_use,
            window_blocks_in_use,
            keys,
        });
        progress(done, order.len());
    }
    let seconds = start.elapsed().as_secs_f64() - order.first().map_or(0.0, |r| r.arrival);
    records.sort_by_key(|r| r.id);
    Ok(ServeRun {
        requests: records,
        steps,
        preemptions: scheduler.preemptions(),
        seconds,
        start_memory,
        peak_memory,
        end_memory: engine.memory_in_use(),
        options,
    })
}
