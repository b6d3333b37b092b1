//! `pertoken bench --serve`: a workload of requests under continuous batching at each load
//! (`--concurrency`, or a Poisson `--rate`), measured as vLLM's serving benchmark measures it,
//! verified, against the adapter's bound and priced. The engine is pertoken-bench's
//! [`pertoken_bench::serve`]; this file reads the options and prints.

use pertoken_bench::serve::{ServeBench, ServeConfig, load_name};
use pertoken_gpu::{DType, Gpu};
use pertoken_serve::{Arrival, Lengths};

use super::serve_report::{ServeRow, print_serve, write_csv, write_json};
use super::{ModelArgs, serve_plot, sources, tuner};
use crate::cli::model::Loaded;
use crate::cli::{CliError, open_gpu};
use pertoken_bench::model::{PowerMeter, Pricing};

/// The serving run's options (with `--serve`).
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Run a serving workload instead of llama-bench's tests: requests of --isl prompt and
    /// --osl output tokens under continuous batching, at each --concurrency (or --rate).
    #[arg(long, conflicts_with_all = ["prompt", "generate", "batch", "depth"])]
    pub serve: bool,
    /// Prompt tokens per request: a number, or a range drawn uniformly (`64-192`). Default 512
    /// on GPUs, 16 on CPU adapters.
    #[arg(long, requires = "serve")]
    pub isl: Option<String>,
    /// Output tokens per request, generated whatever they are (vLLM's --ignore-eos): a number
    /// or a range. Default 128 on GPUs, 32 on CPU adapters.
    #[arg(long, requires = "serve")]
    pub osl: Option<String>,
    /// Requests per run. Default: twice the run's concurrency (at least 8).
    #[arg(long, requires = "serve")]
    pub requests: Option<usize>,
    /// Runs with at most this many requests in flight, all queued at the start (vLLM's
    /// --max-concurrency). Default 1,8,32,128 on GPUs, 1,16 on CPU adapters.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "serve",
        conflicts_with = "rate"
    )]
    pub concurrency: Vec<usize>,
    /// Runs with requests arriving as a seeded Poisson process of this many per second.
    #[arg(long, value_delimiter = ',', requires = "serve")]
    pub rate: Vec<f64>,
    /// Sequences running at once in a --rate run (vLLM's --max-num-seqs).
    #[arg(long, default_value = "64", requires = "serve")]
    pub max_seqs: usize,
    /// Keys and values in the paged cache: f16 (llama.cpp's default) or f32.
    #[arg(long = "kv-type", default_value = "f16", value_parser = parse_kv, requires = "serve")]
    pub kv_type: DType,
    /// Positions per KV block.
    #[arg(long, default_value = "16", requires = "serve")]
    pub block_size: usize,
    /// KV blocks per layer (fewer than the workload needs at once makes the scheduler
    /// preempt). Default: every sequence in flight at its longest.
    #[arg(long, requires = "serve")]
    pub kv_blocks: Option<usize>,
    /// Rows of one step: decode rows and prompt chunks together (vLLM's
    /// --max-num-batched-tokens). Default 2048 on GPUs, 128 on CPU adapters.
    #[arg(long, requires = "serve")]
    pub max_batched_tokens: Option<usize>,
    /// Seed of the workload's lengths, prompts and arrivals.
    #[arg(long, default_value = "0", requires = "serve")]
    pub seed: u64,
}

fn parse_kv(s: &str) -> Result<DType, String> {
    match s.to_ascii_lowercase().as_str() {
        "f16" => Ok(DType::F16),
        "f32" => Ok(DType::F32),
        other => Err(format!("{other:?}: the paged cache holds f16 or f32")),
    }
}

/// The workload and the loads, with the adapter's defaults filled in.
fn config(args: &ModelArgs, cpu: bool) -> Result<ServeConfig, CliError> {
    let s = &args.serve;
    let (isl, osl, loads, budget) = if cpu {
        ("16", "32", vec![1, 16], 128)
    } else {
        ("512", "128", vec![1, 8, 32, 128], 2048)
    };
    let lengths = |v: &Option<String>, d: &str, what: &str| {
        Lengths::parse(v.as_deref().unwrap_or(d)).map_err(|e| format!("--{what}: {e}"))
    };
    let loads = if !s.rate.is_empty() {
        s.rate.iter().map(|&r| Arrival::Rate(r)).collect()
    } else if !s.concurrency.is_empty() {
        s.concurrency
            .iter()
            .map(|&c| Arrival::Concurrency(c))
            .collect()
    } else {
        loads.into_iter().map(Arrival::Concurrency).collect()
    };
    Ok(ServeConfig {
        isl: lengths(&s.isl, isl, "isl")?,
        osl: lengths(&s.osl, osl, "osl")?,
        requests: s.requests,
        loads,
        max_seqs: s.max_seqs,
        kv_dtype: s.kv_type,
        block: s.block_size,
        kv_blocks: s.kv_blocks,
        token_budget: s.max_batched_tokens.unwrap_or(budget),
        seed: s.seed,
        verify: !args.no_verify,
    })
}

pub(super) fn run(args: &ModelArgs) -> Result<(), CliError> {
    let gpu = open_gpu(args.adapter.as_deref())?;
    let a = gpu.adapter();
    println!(
        "adapter: {} ({:?}, {:?}), driver {} {}",
        a.name, a.backend, a.device_type, a.driver, a.driver_info
    );
    let cpu = gpu.capabilities().cpu;
    let config = config(args, cpu)?;
    let setup = config.setup()?;
    let sources = sources(args, if cpu { "smollm2-135m" } else { "llama-3.1-8b" })?;
    let bw = pertoken_gpu::measure_bandwidth(&gpu, 64 << 20, 10)?;
    let copy_rate = bw.best_bytes_per_second();
    println!(
        "copy kernel: {:.2} GB/s (fastest of 10; the bandwidth bound)",
        copy_rate * 1e-9
    );
    let meter = PowerMeter::open(&a.name);
    let pricing = Pricing::new(args.rent, args.hardware.as_deref(), &a.name, &meter)?;
    println!("{}", pricing.describe());
    println!(
        "workload: --isl {} --osl {}, {} KV blocks of {} positions ({}), at most {} rows a step",
        config.isl, config.osl, setup.blocks, setup.block, config.kv_dtype, setup.token_budget
    );
    let mut tuner = tuner(args, &gpu);
    let mut rows = Vec::new();
    for loaded in &sources {
        rows.extend(bench_source(
            &gpu,
            loaded,
            (&config, &mut tuner),
            copy_rate,
            &meter,
        )?);
    }
    if let Err(e) = tuner.save() {
        eprintln!("warning: could not save the tuning cache: {e}");
    }
    for r in &mut rows {
        r.price(&pricing);
    }
    println!();
    print_serve(&rows);
    if let Some(path) = &args.json {
        write_json(path, &gpu, copy_rate, &config, &rows)?;
        println!("wrote {} runs to {}", rows.len(), path.display());
    }
    if let Some(path) = &args.csv {
        write_csv(path, &rows)?;
        println!("wrote {} runs to {}", rows.len(), path.display());
    }
    if let Some(path) = &args.plot {
        serve_plot::draw(path, &format!("{} ({:?})", a.name, a.backend), &rows)?;
        println!("drew {}", path.display());
    }
    if rows.iter().any(ServeRow::differs) {
        return Err("a served request differs from its check (verified column)".into());
    }
    Ok(())
}

fn bench_source(
    gpu: &Gpu,
    loaded: &Loaded,
    (config, tuner): (&ServeConfig, &mut pertoken_matmul::Tuner),
    copy_rate: f64,
    meter: &PowerMeter,
) -> Result<Vec<ServeRow>, CliError> {
    let source = loaded.source();
    let name = source.spec().shape.name.clone();
    eprintln!("loading {}...", source.describe());
    let bar = crate::cli::progress(0, "choosing linear kernels");
    bar.enable_steady_tick(std::time::Duration::from_millis(500));
    let bench = ServeBench::load(
        gpu,
        source,
        config,
        copy_rate,
        tuner,
        &mut |done, total, p| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("tuning linear {p}"));
        },
    );
    bar.finish_and_clear();
    let mut bench = bench?;
    if let Some((w, n)) = bench.setup().window {
        println!(
            "sliding-window layers: a pool of their own of {n} blocks (a window of {w} positions \
             and a step's chunk per sequence; blocks that slide out of the window go back)"
        );
    }
    let mut rows = Vec::new();
    for &load in &config.loads {
        let label = load_name(load);
        let bar = crate::cli::progress(0, &format!("{name} {label}"));
        let (result, watts) = meter.measure(|| {
            bench.run(load, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
        });
        bar.finish_and_clear();
        rows.push(ServeRow::new(
            source,
            &label,
            result.map_err(|e| e.to_string()),
            watts,
        ));
    }
    // The cost model, calibrated from every run's steps, at each run's load.
    let measured: Vec<(Arrival, &pertoken_bench::serve::Measured)> = config
        .loads
        .iter()
        .zip(&rows)
        .filter_map(|(&l, r)| r.result.as_ref().ok().map(|m| (l, m)))
        .collect();
    if measured.is_empty() {
        return Ok(rows);
    }
    let (cal, predicted) = bench.predictions(&measured)?;
    println!(
        "cost model for {name}, calibrated from these runs' {} steps: memory roofline {:.2} GB/s \
         (copy kernel), compute {:.1} GFLOP/s (median of steps of 32+ rows), {:.2} ms per step \
         beyond the roofline (median of decode steps), weights as {}",
        measured.iter().map(|m| m.1.run.steps.len()).sum::<usize>(),
        cal.bytes_per_s * 1e-9,
        cal.flops_per_s * 1e-9,
        cal.overhead_s * 1e3,
        cal.format.name()
    );
    let mut p = predicted.into_iter();
    for r in rows.iter_mut().filter(|r| r.result.is_ok()) {
        r.predicted = p.next().flatten();
        r.calibration = Some(cal);
    }
    Ok(rows)
}
