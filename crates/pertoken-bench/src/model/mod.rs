//! The model bench: a model's prompt and generation tokens/s on this adapter, as llama-bench
//! measures them, each configuration verified against the f64 reference, with the adapter's
//! bound and where a generation step's time goes. The CLI (`pertoken bench`) chooses the
//! models and tests and prints the rows.

use std::time::Instant;

use pertoken_gpu::Gpu;
use pertoken_model::{Decoder, DecoderOptions, WeightSource};
use pertoken_reference::random::uniform_f32_in;

use crate::{BenchError, Reference, Result, by_op};

mod bound;
mod power;
mod price;
mod row;
mod source;
mod verify;

pub use bound::{Rates, prompt_linears_seconds, upload_weights};
pub use power::PowerMeter;
pub use price::Pricing;
pub use row::{Breakdown, Row, Work, csv, mean_sd};
pub use source::Truncated;
use verify::verify;

/// What a model bench runs: llama-bench's tests over each depth and batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Prompt lengths (`pp512`); 0 skips.
    pub prompt: Vec<usize>,
    /// Generation lengths (`tg128`); 0 skips.
    pub generate: Vec<usize>,
    /// Tokens in the context before each test.
    pub depth: Vec<usize>,
    /// Sequences decoding together.
    pub batch: Vec<usize>,
    /// Repetitions of each test.
    pub reps: usize,
}

/// How a long bench reports what it is doing (the CLI draws progress bars; the default does
/// nothing).
pub trait Progress {
    /// A new task of `total` units, named `what`.
    fn start(&mut self, _what: &str, _total: u64) {}
    /// `done` units of the task, and what is happening now.
    fn set(&mut self, _done: u64, _message: &str) {}
    /// The task is over.
    fn finish(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// Seeded prompt ids below `vocab` (random weights make any ids as good as any other).
pub(crate) fn ids(seed: u64, n: usize, vocab: u64) -> Vec<u32> {
    uniform_f32_in(seed, n, 0.0, vocab as f32)
        .into_iter()
        .map(|v| (v as u32).min(vocab as u32 - 1))
        .collect()
}

/// Every test of `plan` on `source`: loads it, chooses the linear kernels through `tuner`,
/// measures the prompt bound, then runs each test (verified unless `no_verify`); a test that
/// fails gets its reason in its own row.
pub fn bench_source(
    gpu: &Gpu,
    source: &dyn WeightSource,
    plan: &Plan,
    (no_verify, tuner): (bool, &mut pertoken_matmul::Tuner),
    (copy_rate, meter): (f64, &PowerMeter),
    progress: &mut dyn Progress,
) -> Result<Vec<Row>> {
    let m = &source.spec().shape;
    let max_depth = plan.depth.iter().copied().max().unwrap_or(0);
    let longest = plan
        .prompt
        .iter()
        .chain(&plan.generate)
        .copied()
        .max()
        .unwrap_or(1);
    let options = DecoderOptions {
        context: max_depth + longest + 4,
        max_tokens: plan.prompt.iter().copied().max().unwrap_or(1).clamp(1, 512),
        batch: 1,
    };
    eprintln!("loading {} ({})...", m.name, source.describe());
    let mut decoder = Decoder::load(gpu, source, options)?;
    let vocab = m.vocab;
    // The linear layers' kernels at every row count the tests run: the prompt lengths (in
    // chunks of max_tokens), one token, and each batch.
    let mut rows_of_x: Vec<usize> = plan
        .prompt
        .iter()
        .filter(|&&p| p > 0)
        .map(|&p| p.min(options.max_tokens))
        .chain(plan.batch.iter().copied())
        .chain([1])
        .collect();
    rows_of_x.sort_unstable();
    rows_of_x.dedup();
    let t0 = Instant::now();
    // Tuning measures each linear problem's candidates once per adapter (minutes on a CPU).
    progress.start("choosing linear kernels", 0);
    let how = decoder.tune_with_progress(tuner, &rows_of_x, &mut |done, total, problem| {
        progress.start("choosing linear kernels", total as u64);
        progress.set(done as u64, &format!("tuning linear {problem}"));
    });
    progress.finish();
    let how = how?;
    let tuned = how.iter().filter(|(_, h)| *h == "tuned").count();
    if tuned > 0 {
        eprintln!(
            "tuned {tuned} of {} linear problems in {:.1} s",
            how.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let mut rates = Rates {
        copy: copy_rate,
        prompt: Vec::new(),
    };
    for &p in plan.prompt.iter().filter(|&&p| p > 0) {
        if rates.prompt_bound(p).is_none() {
            let s = prompt_linears_seconds(gpu, tuner, source, (p, options.max_tokens))?;
            rates.prompt.push((p, s));
        }
    }
    if let Err(e) = tuner.save() {
        eprintln!("warning: could not save the tuning cache: {e}");
    }
    // Warm-up: compile every pipeline the tests use.
    decoder.prefill(&ids(7, options.max_tokens.min(8), vocab))?;
    decoder.decode()?;
    decoder.tokens()?;
    // The reference's weights, read once for every test's check.
    let reference = Reference::new(source);
    let bench = Bench {
        gpu,
        reference: &reference,
        reps: plan.reps,
        no_verify,
        rates: &rates,
        meter,
    };
    let mut rows = Vec::new();
    // Prompts run one sequence at a time.
    for &depth in &plan.depth {
        for &p in plan.prompt.iter().filter(|&&p| p > 0) {
            let row = run_test(&bench, &mut decoder, (Test::Prompt(p), depth), progress);
            rows.push(row.unwrap_or_else(|e| {
                Row::failed(source, &Test::Prompt(p).name(depth, 1), e.to_string())
            }));
        }
    }
    for &batch in &plan.batch {
        let mut ready = Ok(());
        if batch != decoder.options().batch {
            ready = (|| -> Result<()> {
                decoder.reshape(DecoderOptions { batch, ..options })?;
                // Compile the pipelines of the batched step.
                for b in 0..batch {
                    decoder.prefill_sequence(b, &ids(7 + b as u64, 1, vocab))?;
                }
                decoder.decode()?;
                decoder.tokens()?;
                Ok(())
            })();
        }
        for &depth in &plan.depth {
            for &n in plan.generate.iter().filter(|&&n| n > 0) {
                // A configuration that fails (memory, a limit) gets its reason in its own row;
                // the others run.
                let row = match &ready {
                    Ok(()) => run_test(&bench, &mut decoder, (Test::Gen(n), depth), progress),
                    Err(e) => Err(BenchError::Invalid(e.to_string())),
                };
                rows.push(row.unwrap_or_else(|e| {
                    Row::failed(source, &Test::Gen(n).name(depth, batch), e.to_string())
                }));
            }
        }
    }
    Ok(rows)
}

/// One llama-bench test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Process a prompt of this many tokens.
    Prompt(usize),
    /// Generate this many tokens, one step each.
    Gen(usize),
}

impl Test {
    fn name(self, depth: usize, batch: usize) -> String {
        let base = match self {
            Test::Prompt(p) => format!("pp{p}"),
            Test::Gen(n) if batch > 1 => format!("tg{n} b{batch}"),
            Test::Gen(n) => format!("tg{n}"),
        };
        if depth > 0 {
            format!("{base} @ d{depth}")
        } else {
            base
        }
    }

    fn tokens(self) -> usize {
        match self {
            Test::Prompt(n) | Test::Gen(n) => n,
        }
    }
}

/// Runs the tokens of one repetition: `depth` context tokens (untimed), then the test, timed
/// from a synced GPU to a synced GPU. Returns tokens per second, and the board's mean power
/// over the timed part where `meter` reads it.
fn repetition(
    gpu: &Gpu,
    decoder: &mut Decoder,
    (test, depth): (Test, usize),
    meter: &PowerMeter,
) -> Result<(f64, Option<f64>)> {
    let vocab = decoder.spec().shape.vocab;
    let batch = decoder.options().batch;
    decoder.reset()?;
    // Each sequence its own context (prompts run on sequence 0 alone).
    let sequences = if matches!(test, Test::Prompt(_)) {
        1
    } else {
        batch
    };
    for b in 0..sequences {
        if depth > 0 {
            decoder.prefill_sequence(b, &ids(11 + b as u64, depth, vocab))?;
        }
    }
    let (seconds, watts) = match test {
        Test::Prompt(p) => {
            let prompt = ids(13 + p as u64, p, vocab);
            gpu.sync()?;
            let (r, watts) = meter.measure(|| {
                let t0 = Instant::now();
                decoder.prefill(&prompt)?;
                gpu.sync()?;
                Ok::<f64, BenchError>(t0.elapsed().as_secs_f64())
            });
            (r?, watts)
        }
        Test::Gen(n) => {
            if depth == 0 {
                for b in 0..batch {
                    decoder.prefill_sequence(b, &ids(17 + b as u64, 1, vocab))?;
                }
            }
            gpu.sync()?;
            let (r, watts) = meter.measure(|| {
                // Steps queue back to back: each one's token stays on the GPU for the next.
                let t0 = Instant::now();
                for _ in 0..n {
                    decoder.decode()?;
                }
                gpu.sync()?;
                Ok::<f64, BenchError>(t0.elapsed().as_secs_f64())
            });
            (r?, watts)
        }
    };
    Ok(((test.tokens() * sequences) as f64 / seconds, watts))
}

/// What every test of one model shares.
struct Bench<'a> {
    gpu: &'a Gpu,
    reference: &'a Reference<'a>,
    reps: usize,
    no_verify: bool,
    rates: &'a Rates,
    meter: &'a PowerMeter,
}

fn run_test(
    bench: &Bench<'_>,
    decoder: &mut Decoder,
    (test, depth): (Test, usize),
    progress: &mut dyn Progress,
) -> Result<Row> {
    let Bench {
        gpu,
        reference,
        reps,
        no_verify,
        rates,
        meter,
    } = *bench;
    let batch = decoder.options().batch;
    let name = test.name(depth, batch);
    progress.start(&name, reps as u64);
    let mut samples = Vec::with_capacity(reps);
    let mut watts = Vec::new();
    let mut verified = None;
    for rep in 0..reps {
        let (rate, w) = repetition(gpu, decoder, (test, depth), meter)?;
        samples.push(rate);
        watts.extend(w.map(|w| w / rate));
        progress.set(rep as u64 + 1, &name);
        if rep == 0 && !no_verify {
            progress.set(
                rep as u64 + 1,
                &format!("{name}: checking against the CPU reference"),
            );
            verified = Some(verify(gpu, decoder, reference, test, depth)?);
            progress.set(rep as u64 + 1, &name);
        }
    }
    progress.finish();
    let m = &reference.source.spec().shape;
    let (work, bound) = match test {
        Test::Gen(n) => {
            // A layer's keys and values of one position, f32.
            let kv = (2 * m.kv_heads * m.head_dim * 4) as f64;
            // A step reads the weights once and every sequence's keys and values: each layer
            // the whole context, or its window (Gemma 3's local layers), at the mean position.
            let at = depth as f64 + n as f64 / 2.0;
            let keys: f64 = (0..m.layers)
                .map(|l| m.layer_window(l).map_or(at, |w| at.min(w as f64)))
                .sum();
            let step = decoder.weight_bytes() as f64 + batch as f64 * kv * keys;
            let per_token = step / batch as f64;
            (Work::Bytes(per_token), Some(rates.copy / per_token))
        }
        Test::Prompt(p) => {
            // Per prompt token: the layers' matmuls, attention over the keys before it (half
            // the prompt on average, plus the depth), and the head once per prompt.
            let (h, q) = (m.hidden as f64, (m.heads * m.head_dim) as f64);
            let kv = (m.kv_heads * m.head_dim) as f64;
            let layer = h * q + 2.0 * h * kv + q * h + 3.0 * h * m.ffn as f64;
            let keys = depth as f64 + p as f64 / 2.0;
            let flops = 2.0 * m.layers as f64 * layer
                + 4.0 * m.layers as f64 * q * keys
                + 2.0 * h * m.vocab as f64 / p as f64;
            (Work::Flops(flops), rates.prompt_bound(p))
        }
    };
    let breakdown = match test {
        Test::Gen(_) => Some(breakdown(gpu, decoder)?),
        Test::Prompt(_) => None,
    };
    let row = Row::new(
        reference.source,
        &name,
        samples,
        verified,
        (work, bound),
        breakdown,
    )
    .with_energy(watts);
    Ok(match test {
        Test::Gen(_) => row.with_batch(test.name(depth, 1), batch),
        Test::Prompt(_) => row,
    })
}

/// Where one generation step's time goes: each kernel submitted and timed alone, summed by
/// kind, with the whole step's time.
fn breakdown(gpu: &Gpu, decoder: &mut Decoder) -> Result<Breakdown> {
    let (r, whole) = gpu.time(|| Ok(decoder.decode()))?;
    r?;
    let (r, log) = gpu.time_each(|| Ok(decoder.decode()))?;
    r?;
    Ok(Breakdown {
        step_seconds: whole.seconds,
        by_op: by_op(&log),
    })
}
