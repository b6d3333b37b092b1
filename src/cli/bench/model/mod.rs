//! `pertoken bench` (the main job): a model's prompt and generation tokens/s on this adapter, as
//! llama-bench measures them, each configuration verified against the f64 reference, with the
//! adapter's bound and where a generation step's time goes.

use std::path::PathBuf;

use pertoken_bench::model::{self as engine, PowerMeter, Pricing, Row};
use pertoken_gpu::{DType, Gpu};

use super::kernels::parse_dtype;
use crate::cli::model::Loaded;
use crate::cli::{CliError, open_gpu};

mod plot;
mod serve;
mod serve_plot;
mod serve_report;
mod table;

use table::print_rows;

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

/// The models this run covers and the tests, with the defaults filled in for the adapter.
fn plan(args: &ModelArgs, gpu: &Gpu) -> Result<(Vec<Loaded>, engine::Plan), CliError> {
    let cpu = gpu.capabilities().cpu;
    let (model, p, n, r) = if cpu {
        ("smollm2-135m", 64, 16, 3)
    } else {
        ("llama-3.1-8b", 512, 128, 5)
    };
    let sources = sources(args, model)?;
    let or = |v: &[usize], d: usize| if v.is_empty() { vec![d] } else { v.to_vec() };
    if or(&args.prompt, p).iter().all(|&x| x == 0) && or(&args.generate, n).iter().all(|&x| x == 0)
    {
        return Err(
            "nothing to measure: every -p and -n is 0; give -p N (prompt processing) \
                    or -n N (generation), or leave them out for the defaults"
                .into(),
        );
    }
    let plan = engine::Plan {
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
    Ok((sources, plan))
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
    let (sources, plan) = plan(args, &gpu)?;
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
    let mut tuner = tuner(args, &gpu);
    for loaded in &sources {
        rows.extend(engine::bench_source(
            &gpu,
            loaded.source(),
            &plan,
            (args.no_verify, &mut tuner),
            (copy_rate, &meter),
            &mut Bars::default(),
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
        std::fs::write(path, engine::csv(&rows))
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

/// The engine's progress as bars on the terminal.
#[derive(Default)]
struct Bars(Option<indicatif::ProgressBar>);

impl engine::Progress for Bars {
    fn start(&mut self, what: &str, total: u64) {
        match &self.0 {
            Some(bar) => bar.set_length(total),
            None => {
                let bar = crate::cli::progress(total, what);
                bar.enable_steady_tick(std::time::Duration::from_millis(500));
                self.0 = Some(bar);
            }
        }
    }

    fn set(&mut self, done: u64, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_position(done);
            bar.set_message(message.to_owned());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// The file given, else each catalog model (`default` when none is named) in each `--weights`
/// format with seeded random weights.
fn sources(args: &ModelArgs, default: &str) -> Result<Vec<Loaded>, CliError> {
    if let Some(file) = Loaded::open_file(args.gguf.as_deref(), args.safetensors.as_deref())? {
        return Ok(vec![file]);
    }
    let names = if args.model.is_empty() {
        vec![default.to_owned()]
    } else {
        args.model.clone()
    };
    let mut out = Vec::new();
    for name in &names {
        for &w in &args.weights {
            out.push(Loaded::synthetic(name, w, 1)?);
        }
    }
    Ok(out)
}

/// The linear kernels' tuner: measuring and caching, or the heuristic with `--no-tune`; its
/// warnings printed.
fn tuner(args: &ModelArgs, gpu: &Gpu) -> pertoken_matmul::Tuner {
    let mode = if args.no_tune {
        pertoken_matmul::TuneMode::Off
    } else {
        pertoken_matmul::TuneMode::Tune
    };
    let tuner = pertoken_matmul::Tuner::new(gpu, mode, None);
    for w in &tuner.warnings {
        eprintln!("warning: {w}");
    }
    tuner
}
