//! A serving run of a model on this adapter: a workload of requests under continuous batching
//! over a paged KV cache, at each load asked for (a concurrency, or a Poisson rate), each run
//! verified and set against the adapter's bandwidth bound.

mod bound;
mod predict;
mod verify;

pub use bound::Bound;
pub use predict::{Calibration, Prediction};

use pertoken_gpu::{DType, Gpu};
use pertoken_model::{Decoder, DecoderOptions, PagedKv, WeightSource};
use pertoken_serve::{
    Arrival, Lengths, Request, SchedulerOptions, ServeReport, ServeRun, Workload, serve,
};

use crate::{BenchError, Reference, Result};

/// What a serving bench runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Prompt tokens per request.
    pub isl: Lengths,
    /// Output tokens per request.
    pub osl: Lengths,
    /// Requests per run; `None`: twice the run's concurrency (at least 8).
    pub requests: Option<usize>,
    /// One run per load.
    pub loads: Vec<Arrival>,
    /// Sequences running at once in a rate run (a concurrency run: its concurrency).
    pub max_seqs: usize,
    /// Keys and values: f16 (the default) or f32.
    pub kv_dtype: DType,
    /// Positions per KV block.
    pub block: usize,
    /// KV blocks per layer; `None`: enough for every sequence in flight at its longest.
    pub kv_blocks: Option<usize>,
    /// Rows of one step (decode rows plus prompt chunks); raised to the most sequences.
    pub token_budget: usize,
    /// Seed of the workload.
    pub seed: u64,
    /// Whether to verify each run.
    pub verify: bool,
}

/// The decoder's shape a serving bench loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Setup {
    /// Sequences at once (slots).
    pub slots: usize,
    /// Positions of the longest request.
    pub context: usize,
    /// KV blocks per layer.
    pub blocks: usize,
    /// Positions per block.
    pub block: usize,
    /// Rows per step.
    pub token_budget: usize,
    /// The sliding-window layers' pool, where the model has such layers and their window is
    /// shorter than a request: the window in positions, and the pool's blocks (enough for every
    /// sequence's window and a step's chunk).
    pub window: Option<(usize, usize)>,
}

impl Setup {
    /// This setup with a sliding-window pool for `spec`'s window layers, where they have one
    /// that a request outgrows.
    fn with_window(mut self, spec: &pertoken_model::ModelSpec) -> Setup {
        let m = &spec.shape;
        let Some(w) = m.sliding_window.map(|w| w as usize) else {
            return self;
        };
        if !(0..m.layers).any(|l| m.layer_window(l).is_some()) {
            return self;
        }
        let per_seq = self.context.div_ceil(self.block);
        let held = (w - 1 + self.token_budget).div_ceil(self.block) + 1;
        if held < per_seq {
            self.window = Some((w, self.slots * held));
        }
        self
    }
}

impl ServeConfig {
    /// The most sequences one of the runs keeps in flight.
    fn slots(&self) -> usize {
        self.loads
            .iter()
            .map(|l| match *l {
                Arrival::Concurrency(c) => c,
                Arrival::Rate(_) => self.max_seqs,
            })
            .max()
            .unwrap_or(1)
    }

    /// The decoder's shape, checked: every option that cannot run is an error here, before
    /// anything is loaded.
    pub fn setup(&self) -> Result<Setup> {
        let bad = |s: String| Err(BenchError::Invalid(s));
        if self.loads.is_empty() {
            return bad("no load to run: give --concurrency or --rate".into());
        }
        for l in &self.loads {
            match *l {
                Arrival::Concurrency(0) => return bad("a concurrency of 0 runs nothing".into()),
                Arrival::Rate(r) if !(r.is_finite() && r > 0.0) => {
                    return bad(format!("--rate {r}: give a positive number of requests/s"));
                }
                _ => {}
            }
        }
        if self.requests == Some(0) {
            return bad("--requests 0 measures nothing: give at least 1".into());
        }
        if self.block == 0 || self.max_seqs == 0 || self.token_budget == 0 {
            return bad(
                "--block-size, --max-seqs and --max-batched-tokens must be at least 1".into(),
            );
        }
        if !matches!(self.kv_dtype, DType::F16 | DType::F32) {
            return bad(format!("KV type {}: f16 or f32", self.kv_dtype));
        }
        let slots = self.slots();
        let context = self.isl.max() + self.osl.max();
        let per_seq = context.div_ceil(self.block);
        let blocks = self.kv_blocks.unwrap_or(slots * per_seq);
        if blocks < per_seq {
            return bad(format!(
                "{blocks} KV blocks of {} positions cannot hold one request of {context} \
                 positions (--isl {} + --osl {}): give at least {per_seq} blocks",
                self.block, self.isl, self.osl
            ));
        }
        Ok(Setup {
            slots,
            context,
            blocks,
            block: self.block,
            token_budget: self.token_budget.max(slots),
            window: None,
        })
    }

    /// The requests of one run at `load`, with token ids below `vocab`.
    pub fn requests(&self, load: Arrival, vocab: u32) -> Result<Vec<Request>> {
        let n = self.requests.unwrap_or(match load {
            Arrival::Concurrency(c) => (2 * c).max(8),
            Arrival::Rate(_) => (2 * self.max_seqs).max(8),
        });
        Ok(Workload {
            isl: self.isl,
            osl: self.osl,
            requests: n,
            arrival: load,
            seed: self.seed,
        }
        .make(vocab)?)
    }
}

/// A load's short name: `c16`, or `r2.5` (requests per second).
pub fn load_name(load: Arrival) -> String {
    match load {
        Arrival::Concurrency(c) => format!("c{c}"),
        Arrival::Rate(r) => format!("r{r}"),
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The summary.
    pub report: ServeReport,
    /// Every request and step.
    pub run: ServeRun,
    /// What was checked and whether it held (`None` when not verified).
    pub verified: Option<Result<String, String>>,
    /// The adapter's bandwidth bound on the same steps.
    pub bound: Bound,
    /// Kernel launches per step (the same at any batch).
    pub launches_per_step: f64,
}

/// A model loaded for serving runs on one adapter.
pub struct ServeBench<'a> {
    gpu: Gpu,
    source: &'a dyn WeightSource,
    decoder: Decoder,
    config: ServeConfig,
    setup: Setup,
    reference: Reference<'a>,
    copy_rate: f64,
}

impl std::fmt::Debug for ServeBench<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeBench")
            .field("model", &self.source.describe())
            .field("setup", &self.setup)
            .finish()
    }
}

impl<'a> ServeBench<'a> {
    /// Loads `source` on `gpu` with a paged cache sized by `config` (the memory plan checked
    /// first), chooses the linear kernels of decode steps (one row, and every load's
    /// concurrency) through `tuner`, and warms every kernel up with a short run. `copy_rate`:
    /// the adapter's measured copy bandwidth, bytes/s, for the bound.
    pub fn load(
        gpu: &Gpu,
        source: &'a dyn WeightSource,
        config: &ServeConfig,
        copy_rate: f64,
        tuner: &mut pertoken_matmul::Tuner,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<ServeBench<'a>> {
        let setup = config.setup()?.with_window(source.spec());
        let options = DecoderOptions {
            context: setup.context,
            max_tokens: setup.token_budget,
            batch: setup.slots,
        };
        let kv = PagedKv {
            blocks: setup.blocks,
            block: setup.block,
            dtype: config.kv_dtype,
            window_blocks: setup.window.map(|w| w.1),
        };
        let mut decoder = Decoder::load_paged(gpu, source, options, kv)?;
        // Steps mix any number of rows; those of decode alone are the most common.
        let mut rows: Vec<usize> = config
            .loads
            .iter()
            .map(|l| match *l {
                Arrival::Concurrency(c) => c,
                Arrival::Rate(_) => config.max_seqs,
            })
            .chain([1])
            .collect();
        rows.sort_unstable();
        rows.dedup();
        decoder.tune_with_progress(tuner, &rows, progress)?;
        let mut bench = ServeBench {
            gpu: gpu.clone(),
            source,
            decoder,
            config: config.clone(),
            setup,
            reference: Reference::new(source),
            copy_rate,
        };
        // Warm-up: compile the pipelines of prompt chunks and decode rows.
        let warm = Request {
            id: 0,
            prompt: vec![1; config.isl.max().min(setup.token_budget)],
            max_new: 2,
            arrival: 0.0,
        };
        let options = bench.scheduler_options(1);
        serve(&mut bench.decoder, &[warm], options, None, &mut |_, _| {})?;
        Ok(bench)
    }

    /// The decoder's shape.
    pub fn setup(&self) -> Setup {
        self.setup
    }

    /// Bytes of weights on the adapter.
    pub fn weight_bytes(&self) -> u64 {
        self.decoder.weight_bytes()
    }

    /// The cost model calibrated from the steps of `runs` (this bench's), and its prediction
    /// for each run's load (`None` for a rate).
    pub fn predictions(
        &self,
        runs: &[(Arrival, &Measured)],
    ) -> Result<(Calibration, Vec<Option<Prediction>>)> {
        let spec = self.source.spec();
        let kv = self.decoder.paged_kv().expect("paged");
        let memory = self.decoder.weight_bytes() as f64 + kv.bytes(spec) as f64;
        let all: Vec<&ServeRun> = runs.iter().map(|(_, m)| &m.run).collect();
        let cal = Calibration::from_runs(
            self.source,
            &all,
            (self.config.kv_dtype, self.copy_rate, memory),
        )?;
        let adapter = self.gpu.adapter().name.clone();
        let mut out = Vec::new();
        for (load, m) in runs {
            out.push(cal.predict(
                &spec.shape,
                &adapter,
                (
                    *load,
                    m.run.requests.len(),
                    self.config.isl.mean(),
                    self.config.osl.mean(),
                ),
            )?);
        }
        Ok((cal, out))
    }

    fn scheduler_options(&self, slots: usize) -> SchedulerOptions {
        SchedulerOptions {
            slots,
            token_budget: self.setup.token_budget,
            block: self.setup.block,
            blocks: self.setup.blocks,
            context: self.setup.context,
            window: self.setup.window,
        }
    }

    /// One run at `load`; `progress(done, total)` after each step.
    pub fn run(
        &mut self,
        load: Arrival,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Measured> {
        let vocab = u32::try_from(self.source.spec().shape.vocab).unwrap_or(u32::MAX);
        let requests = self.config.requests(load, vocab)?;
        let (slots, in_flight) = match load {
            Arrival::Concurrency(c) => (c, Some(c)),
            Arrival::Rate(_) => (self.config.max_seqs, None),
        };
        let options = self.scheduler_options(slots);
        let before = self.gpu.dispatches();
        let run = serve(&mut self.decoder, &requests, options, in_flight, progress)?;
        let launches = (self.gpu.dispatches() - before) as f64 / run.steps.len().max(1) as f64;
        let report = ServeReport::of(&run);
        let bound = Bound::of(
            &run,
            self.source.spec(),
            (self.decoder.weight_bytes(), self.config.kv_dtype),
            self.copy_rate,
        );
        let verified = if self.config.verify {
            Some(verify::verify(
                &mut self.decoder,
                &self.reference,
                (&requests, &run),
                self.config.kv_dtype,
            )?)
        } else {
            None
        };
        Ok(Measured {
            report,
            run,
            verified,
            bound,
            launches_per_step: launches,
        })
    }
}
