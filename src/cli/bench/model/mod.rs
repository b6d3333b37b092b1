//! `pertoken bench` (the main job): a model's prompt and generation tokens/s on this adapter, as
//! llama-bench measures them, each configuration verified against the f64 reference, with the
//! adapter's bound and where a generation step's time goes.

use std::path::PathBuf;
use std::time::Instant;

use pertoken_gpu::{DType, Gpu};
use pertoken_model::{Decoder, DecoderOptions, WeightSource};
use pertoken_reference::random::uniform_f32_in;

use super::kernels::parse_dtype;
use crate::cli::model::{Loaded, Reference, by_op};
use crate::cli::{CliError, open_gpu};

mod bound;
mod plot;
mod power;
mod price;
mod report;
mod serve;
mod serve_plot;
mod serve_report;
mod source;
mod verify;

use bound::{Rates, prompt_linears_seconds};
use power::PowerMeter;
use price::Pricing;
use report::{Row, print_rows};
use verify::verify;

#[derive(Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// Catalog models with seeded random weights (`pertoken models` lists them); default per
    /// adapter: smollm2-135m on CPU adapters, llama-3.1-8b on GPUs.
    #[arg(short = 'm', long, value_delimiter = ',')]
    model: Vec<String>,
    /// A GGUF model file instead (its tensors as stored).
    #[arg(long, conflicts_with_all = ["model", "safetensors"])]
    gguf: Option<PathBuf>,
    /// A Hugging Face checkpoint folder (config.json + safetensors) instead.
    #[arg(long, conflicts_with_all = ["model", "gguf"])]
    safetensors: Option<PathBuf>,
    /// Weight formats of the catalog models: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1,
    /// q4_k, q5_k, q6_k.
    #[arg(long, value_delimiter = ',', default_value = "q4_0", value_parser = parse_dtype)]
    weights: Vec<DType>,
    /// Prompt-processing tests: tokens per prompt (`pp512`); 0 skips. Default 512 on GPUs, 64
    /// on CPU adapters.
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',')]
    prompt: Vec<usize>,
    /// Generation tests: tokens generated (`tg128`); 0 skips. Default 128 on GPUs, 16 on CPU
    /// adapters.
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',')]
    generate: Vec<usize>,
    /// Generation with this many sequences decoding together (`tg128 b8`): the linear layers
    /// at M = batch, attention over each sequence's own cache; t/s counts every sequence's
    /// tokens.
    #[arg(short = 'b', long = "batch", value_delimiter = ',', default_value = "1",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: Vec<u32>,
    /// Tokens already in the context before each test (`pp512 @ d4096`).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    depth: Vec<usize>,
    /// Repetitions of each test, reported as mean ± standard deviation. Default 5 on GPUs, 3
    /// on CPU adapters.
    #[arg(short = 'r', long)]
    repetitions: Option<usize>,
    /// The adapter's price in USD per hour, for $ per 1M tokens (else the catalog's price of
    /// --hardware, or of the entry the adapter's name matches).
    #[arg(long, value_name = "USD_PER_HOUR")]
    rent: Option<f64>,
    /// The catalog entry (`pertoken hardware` lists them) whose price and TDP to use.
    #[arg(long)]
    hardware: Option<String>,
    /// Use the shape heuristic for the linear layers: neither measure candidate kernels nor
    /// read or write the tuning cache (`PERTOKEN_CACHE_DIR`, else the user's cache directory).
    #[arg(long)]
    no_tune: bool,
    /// Skip the check against the CPU reference.
    #[arg(long)]
    no_verify: bool,
    /// Also write every row (with its samples) as JSON to this file (`pertoken cost
    /// --bench-report` reads it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write every row as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also draw generation tokens/s and $ per 1M tokens against batch size (`-b 1,8,32`) as
    /// an SVG to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run on the adapter whose name contains this (default: PERTOKEN_ADAPTER, else the best).
    #[arg(long)]
    adapter: Option<String>,
    #[command(flatten)]
    serve: serve::ServeArgs,
}

/// The tests, formats and models this run covers, with the defaults filled in for the adapter.
struct Plan {
    sources: Vec<Loaded>,
    prompt: Vec<usize>,
    generate: Vec<usize>,
    depth: Vec<usize>,
    batch: Vec<usize>,
    reps: usize,
}

fn plan(args: &ModelArgs, gpu: &Gpu) -> Result<Plan, CliError> {
    let cpu = gpu.capabilities().cpu;
    let (model, p, n, r) = if cpu {
        ("smollm2-135m", 64, 16, 3)
    } else {
        ("llama-3.1-8b", 512, 128, 5)
    };
    let sources = match Loaded::open_file(args.gguf.as_deref(), args.safetensors.as_deref())? {
        Some(file) => vec![file],
        None => {
            let names = if args.model.is_empty() {
                vec![model.to_owned()]
            } else {
                args.model.clone()
            };
            let mut out = Vec::new();
            for name in &names {
                for &w in &args.weights {
                    out.push(Loaded::synthetic(name, w, 1)?);
                }
            }
            out
        }
    };
    let or = |v: &[usize], d: usize| if v.is_empty() { vec![d] } else { v.to_vec() };
    if or(&args.prompt, p).iter().all(|&x| x == 0) && or(&args.generate, n).iter().all(|&x| x == 0)
    {
        return Err(
            "nothing to measure: every -p and -n is 0; give -p N (prompt processing) \
                    or -n N (generation), or leave them out for the defaults"
                .into(),
        );
    }
    let plan = Plan {
        sources,
        prompt: or(&args.prompt, p),
        generate: or(&args.generate, n),
        depth: args.depth.clone(),
        batch: args.batch.iter().map(|&b| b as usize).collect(),
        reps: args.repetitions.unwrap_or(r).max(1),
    };
    if args.model.is_empty() && args.gguf.is_none() && args.safetensors.is_none() {
        eprintln!(
            "defaults for {} adapter: -m {model} --weights {} -p {} -n {} -r {} (change with \
             -m NAME, --gguf FILE, --weights, -p, -n, -d, -r)",
            if cpu { "a CPU" } else { "a GPU" },
            args.weights
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(","),
            plan.prompt
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
            plan.generate
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
            plan.reps
        );
    }
    Ok(plan)
}

/// Seeded prompt ids below `vocab` (random weights make any ids as good as any other).
fn ids(seed: u64, n: usize, vocab: u64) -> Vec<u32> {
    uniform_f32_in(seed, n, 0.0, vocab as f32)
        .into_iter()
        .map(|v| (v as u32).min(vocab as u32 - 1))
        .collect()
}

pub(crate) fn run(args: &ModelArgs) -> Result<(), CliError> {
    if args.serve.serve {
        return serve::run(args);
    }
    let gpu = open_gpu(args.adapter.as_deref())?;
    let a = gpu.adapter();
    println!(
        "adapter: {} ({:?}, {:?}), driver {} {}",
        a.name, a.backend, a.device_type, a.driver, a.driver_info
    );
    let plan = plan(args, &gpu)?;
    let bw = pertoken_gpu::measure_bandwidth(&gpu, 64 << 20, 10)?;
    let copy_rate = bw.best_bytes_per_second();
    println!(
        "copy kernel: {:.2} GB/s (fastest of 10; the bandwidth bound of generation)",
        copy_rate * 1e-9
    );
    let meter = PowerMeter::open(&a.name);
    let pricing = Pricing::new(args.rent, args.hardware.as_deref(), &a.name, &meter)?;
    println!("{}", pricing.describe());
    let mut rows = Vec::new();
    let mode = if args.no_tune {
        pertoken_matmul::TuneMode::Off
    } else {
        pertoken_matmul::TuneMode::Tune
    };
    let mut tuner = pertoken_matmul::Tuner::new(&gpu, mode, None);
    for w in &tuner.warnings {
        eprintln!("warning: {w}");
    }
    for loaded in &plan.sources {
        rows.extend(bench_source(
            &gpu,
            loaded.source(),
            &plan,
            (args.no_verify, &mut tuner),
            (copy_rate, &meter),
        )?);
    }
    if let Some(path) = tuner.path() {
        println!(
            "linear kernels: tuned on this adapter, cached in {}",
            path.display()
        );
    }
    for r in &mut rows {
        r.price(&pricing);
    }
    println!();
    print_rows(&rows);
    if let Some(path) = &args.json {
        // The kernels bench's report format, so `pertoken cost --bench-report` reads both.
        let json = serde_json::json!({
            "pertoken_bench_report": 1,
            "kind": "model",
            "adapter": { "name": a.name, "backend": format!("{:?}", a.backend), "driver": a.driver_info },
            "copy_bytes_per_s": copy_rate,
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {} rows to {}", rows.len(), path.display());
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, report::csv(&rows))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {} rows to {}", rows.len(), path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!("{} ({:?})", a.name, a.backend);
        plot::draw(path, &title, &rows)?;
        println!("drew {}", path.display());
    }
    if rows
        .iter()
        .any(|r| r.verified.as_ref().is_some_and(|v| v.is_err()))
    {
        return Err("a result differs from the CPU reference (verified column)".into());
    }
    Ok(())
}

fn bench_source(
    gpu: &Gpu,
    source: &dyn WeightSource,
    plan: &Plan,
    (no_verify, tuner): (bool, &mut pertoken_matmul::Tuner),
    (copy_rate, meter): (f64, &PowerMeter),
) -> Result<Vec<Row>, CliError> {
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
    let bar = crate::cli::progress(0, "choosing linear kernels");
    bar.enable_steady_tick(std::time::Duration::from_millis(500));
    let how = decoder.tune_with_progress(tuner, &rows_of_x, &mut |done, total, problem| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("tuning linear {problem}"));
    });
    bar.finish_and_clear();
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
            let row = run_test(&bench, &mut decoder, Test::Prompt(p), depth);
            rows.push(row.unwrap_or_else(|e| {
                Row::failed(source, &Test::Prompt(p).name(depth, 1), e.to_string())
            }));
        }
    }
    for &batch in &plan.batch {
        let mut ready = Ok(());
        if batch != decoder.options().batch {
            ready = (|| -> Result<(), CliError> {
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
                    Ok(()) => run_test(&bench, &mut decoder, Test::Gen(n), depth),
                    Err(e) => Err(e.to_string().into()),
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
pub(crate) enum Test {
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
) -> Result<(f64, Option<f64>), CliError> {
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
                Ok::<f64, CliError>(t0.elapsed().as_secs_f64())
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
                Ok::<f64, CliError>(t0.elapsed().as_secs_f64())
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
    test: Test,
    depth: usize,
) -> Result<Row, CliError> {
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
    let bar = crate::cli::progress(reps as u64, &name);
    let mut samples = Vec::with_capacity(reps);
    let mut watts = Vec::new();
    let mut verified = None;
    for rep in 0..reps {
        let (rate, w) = repetition(gpu, decoder, (test, depth), meter)?;
        samples.push(rate);
        watts.extend(w.map(|w| w / rate));
        bar.inc(1);
        if rep == 0 && !no_verify {
            bar.set_message(format!("{name}: checking against the CPU reference"));
            verified = Some(verify(gpu, decoder, reference, test, depth)?);
            bar.set_message(name.clone());
        }
    }
    bar.finish_and_clear();
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
            (report::Work::Bytes(per_token), Some(rates.copy / per_token))
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
            (report::Work::Flops(flops), rates.prompt_bound(p))
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
fn breakdown(gpu: &Gpu, decoder: &mut Decoder) -> Result<report::Breakdown, CliError> {
    let (r, whole) = gpu.time(|| Ok(decoder.decode()))?;
    r?;
    let (r, log) = gpu.time_each(|| Ok(decoder.decode()))?;
    r?;
    Ok(report::Breakdown {
        step_seconds: whole.seconds,
        by_op: by_op(&log),
    })
}
