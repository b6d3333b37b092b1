//! `pertoken cost`, `pertoken models`, `pertoken hardware`: the cost model on catalog hardware.

use std::path::PathBuf;

use pertoken_cost::account::WeightFormat;
use pertoken_cost::estimate::{Deployment, Efficiency, Estimate, Pricing, Split, estimate, pareto};
use pertoken_cost::latency::{Launches, interconnect};
use pertoken_cost::serving::{Batching, Load, Serving, serve};
use pertoken_cost::{Catalog, CostError, Model, stack};

use super::CliError;

mod compare;
mod listing;
mod print;
mod report;

pub(crate) use listing::{hardware, models};

#[derive(Debug, clap::Args)]
pub(crate) struct CatalogArgs {
    /// Extra hardware (TOML shaped like the built-in catalog); entries replace same-named ones.
    #[arg(long)]
    hardware_file: Option<PathBuf>,
    /// Extra models (TOML shaped like the built-in catalog).
    #[arg(long)]
    model_file: Option<PathBuf>,
}

impl CatalogArgs {
    fn load(&self) -> Result<Catalog, CostError> {
        let mut c = Catalog::builtin();
        if let Some(f) = &self.hardware_file {
            c.add_hardware_file(f)?;
        }
        if let Some(f) = &self.model_file {
            c.add_model_file(f)?;
        }
        Ok(c)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SplitArg {
    Tensor,
    Layers,
    Expert,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model name from `pertoken models`.
    #[arg(long, required_unless_present = "hf_config")]
    model: Option<String>,
    /// A Hugging Face config.json to use instead of a catalog model.
    #[arg(long)]
    hf_config: Option<PathBuf>,
    /// Hardware name from `pertoken hardware`; several, comma-separated, compare the parts
    /// side by side (with --isl/--osl): the cheapest configuration meeting the limits on each.
    #[arg(long)]
    hardware: String,
    /// Comparing parts: the limit on time to first token, ms.
    #[arg(long)]
    max_ttft_ms: Option<f64>,
    /// Comparing parts: the weight formats to try, comma-separated, where each part's stack
    /// serves them (default: bf16 and fp8, and MXFP4 experts for a mixture of experts).
    #[arg(long, value_delimiter = ',')]
    formats: Option<Vec<String>>,
    /// Comparing parts: which price to use: on-demand, 1-year, 3-year, reserved,
    /// capacity-block, spot or market; a part without it falls back (said so in the output).
    #[arg(long, default_value = "on-demand")]
    price_kind: String,
    /// Batch sizes (concurrent sequences), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    batch: Vec<u64>,
    /// Sweep batch sizes 1, 2, 4 … 1024 and print the Pareto front of cost against speed.
    #[arg(long)]
    sweep: bool,
    /// With --sweep, or serving with --isl/--osl: the latency limit on time per output token, ms.
    #[arg(long)]
    max_tpot_ms: Option<f64>,
    /// Mean context length during decode, tokens.
    #[arg(long, default_value_t = 2048)]
    context: u64,
    /// Prompt length, tokens.
    #[arg(long, default_value_t = 512)]
    prompt: u64,
    /// Weight format: f32, f16, bf16, fp8, int8, int4, mxfp4, nvfp4, q8_0, q4_0, q4_1, q5_0,
    /// q5_1, q4_k, q5_k, q6_k.
    #[arg(long, default_value = "bf16")]
    weights: String,
    /// Bytes per KV-cache element.
    #[arg(long, default_value_t = 2.0)]
    kv_bytes: f64,
    /// Which peak applies: fp32, bf16, fp16, fp8, fp4, int8.
    #[arg(long, default_value = "bf16")]
    compute_dtype: String,
    /// Devices the model is split over.
    #[arg(long, default_value_t = 1)]
    devices: u64,
    /// How several devices split the model: tensor (all-reduces), layers (llama.cpp's split), or
    /// expert (a mixture of experts' experts spread over the devices, attention data-parallel).
    #[arg(long, value_enum, default_value_t = SplitArg::Tensor)]
    split: SplitArg,
    /// The link between devices (for --devices > 1; default: the part's own): nvlink3,
    /// nvlink4, nvlink5, nvlink-bridge-h100, pcie4, pcie5, xgmi-mi300x, xgmi-mi355x,
    /// gaudi3-roce, neuronlink-v2/-v3/-v4, tpu-ici-v5e/-v5p/-v6e/-v7 (sourced latency and bus
    /// bandwidth each).
    #[arg(long)]
    interconnect: Option<String>,
    /// Override the interconnect's all-reduce bus bandwidth, GB/s.
    #[arg(long)]
    interconnect_gbs: Option<f64>,
    /// The serving stack whose sourced figures apply (launches per layer, launch cost,
    /// efficiencies, unpacking cost per format): llama.cpp-cuda, llama.cpp-metal, gpt-fast,
    /// tensorrt-llm, vllm, mlc, sglang, neuron, vllm-neuron, vllm-tpu, jetstream (default: the
    /// part's usual stack, else vllm).
    #[arg(long)]
    stack: Option<String>,
    /// Calibration from a `pertoken bench --json` report measured on this hardware: the model
    /// bench's whole steps set the efficiencies and the fixed time per step (per launch where
    /// the report counts launches); a serving report's (`bench --serve`) measured steps set the
    /// efficiencies and the fixed time per step of the serving mode (--isl/--osl); the kernels
    /// bench's rates set the efficiencies alone. --eff-* and --launch-us override it.
    #[arg(long)]
    bench_report: Option<PathBuf>,
    /// Achieved fraction of peak FLOP/s (default: the stack's, 0.5).
    #[arg(long)]
    eff_compute: Option<f64>,
    /// Achieved fraction of peak bandwidth (default: the stack's, 0.8).
    #[arg(long)]
    eff_bandwidth: Option<f64>,
    /// Fixed cost per kernel launch, µs (default: the stack's).
    #[arg(long)]
    launch_us: Option<f64>,
    /// Fixed overhead per step besides launches, ms.
    #[arg(long, default_value_t = 0.0)]
    overhead_ms: f64,
    /// Serving at full load: input tokens per request (with --osl).
    #[arg(long, requires = "osl")]
    isl: Option<u64>,
    /// Serving at full load: output tokens per request (with --isl).
    #[arg(long, requires = "isl")]
    osl: Option<u64>,
    /// Serving: a static batch of this many sequences instead of continuous batching.
    #[arg(long, requires = "isl")]
    static_batch: Option<u64>,
    /// Serving: the server's batch limit (max_num_seqs).
    #[arg(long, requires = "isl")]
    max_batch: Option<u64>,
    /// Serving with continuous batching: a finite run of this many requests, all queued at the
    /// start (trtllm-bench's --num_requests); throughput then includes the last, smaller wave.
    #[arg(long, requires = "isl", conflicts_with = "static_batch")]
    requests: Option<u64>,
    /// Rent: USD per device-hour (default: the catalog's on-demand price, if sourced).
    #[arg(long, conflicts_with = "owned")]
    rent: Option<f64>,
    /// Own the hardware instead of renting it (see the --purchase … options).
    #[arg(long)]
    owned: bool,
    /// Owned: purchase price per device, USD (default: the catalog's, if sourced).
    #[arg(long)]
    purchase: Option<f64>,
    /// Owned: years to amortize over.
    #[arg(long, default_value_t = 4.0)]
    lifetime_years: f64,
    /// Owned: average power per device, W (default: the catalog's TDP).
    #[arg(long)]
    power_w: Option<f64>,
    /// Owned: power usage effectiveness.
    #[arg(long, default_value_t = 1.3)]
    pue: f64,
    /// Owned: electricity, USD per kWh.
    #[arg(long, default_value_t = 0.10)]
    usd_per_kwh: f64,
    /// Owned: hosting, USD per kW-year.
    #[arg(long, default_value_t = 1500.0)]
    hosting_usd_per_kw_year: f64,
    /// Owned: fraction of hours doing paid work.
    #[arg(long, default_value_t = 0.6)]
    utilization: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write an SVG chart of cost per output token against per-user speed to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    catalog: CatalogArgs,
}

fn invalid(what: &'static str, reason: String) -> CostError {
    CostError::InvalidInput { what, reason }
}

fn model(args: &Args, catalog: &Catalog) -> Result<Model, CliError> {
    Ok(match (&args.hf_config, &args.model) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid("--hf-config", format!("{}: {e}", path.display())))?;
            let name = path
                .file_stem()
                .map_or("imported".into(), |s| s.to_string_lossy().into_owned());
            Model::from_hf_config(&name, &text)?
        }
        (None, Some(name)) => catalog.model(name)?.clone(),
        (None, None) => return Err("pass --model or --hf-config".into()),
    })
}

/// The price, where there is one: `--owned` needs a purchase price and a power, renting a
/// price per hour (flag or catalog). `None` when renting hardware with no sourced price.
fn pricing(args: &Args, hardware: &pertoken_cost::Hardware) -> Result<Option<Pricing>, CliError> {
    if args.owned {
        let purchase = args
            .purchase
            .or(hardware.purchase_usd.as_ref().map(|f| f.value))
            .ok_or_else(|| {
                invalid(
                    "purchase price",
                    format!(
                        "{} has no sourced purchase price; pass --purchase",
                        hardware.name
                    ),
                )
            })?;
        let power = args
            .power_w
            .or(hardware.tdp_w.as_ref().map(|f| f.value))
            .ok_or_else(|| {
                invalid(
                    "power",
                    format!("{} has no sourced TDP; pass --power-w", hardware.name),
                )
            })?;
        return Ok(Some(Pricing::Owned {
            purchase_usd: purchase,
            lifetime_years: args.lifetime_years,
            power_w: power,
            pue: args.pue,
            usd_per_kwh: args.usd_per_kwh,
            hosting_usd_per_kw_year: args.hosting_usd_per_kw_year,
            utilization: args.utilization,
        }));
    }
    Ok(args
        .rent
        .or(hardware.price_per_hour.as_ref().map(|f| f.value))
        .map(|per_device_hour| Pricing::Rented { per_device_hour }))
}

fn check_fraction(v: f64, what: &str) -> Result<f64, CliError> {
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(invalid("efficiency", format!("{what} {v} must be in (0, 1]")).into())
    }
}

/// The stack named by --stack, else the part's usual one, else vLLM.
fn stack_name(args: &Args, hardware: &pertoken_cost::Hardware) -> String {
    args.stack
        .clone()
        .or(hardware.stack.as_ref().map(|s| s.name.clone()))
        .unwrap_or_else(|| "vllm".to_owned())
}

/// The deployment the flags describe, and a line saying where its figures come from.
fn deployment(
    args: &Args,
    hardware: &pertoken_cost::Hardware,
) -> Result<(Deployment, String), CliError> {
    let s = stack(&stack_name(args, hardware))?;
    let format = WeightFormat::parse(&args.weights)?;
    let dtype = args.compute_dtype.to_ascii_lowercase();
    let mut efficiency = Efficiency {
        compute: s.compute_efficiency(&dtype),
        bandwidth: s.bandwidth_efficiency.value,
    };
    let mut launches = s.launches();
    let mut overhead_s = args.overhead_ms / 1e3;
    let mut measured = false;
    let mut source = format!(
        "stack {}: {} kernels per layer + {} per step at {} us each",
        s.name, s.kernels_per_layer.value, s.kernels_per_step.value, s.launch_us.value
    );
    if let Some(path) = &args.bench_report {
        let c = report::calibration_from_report(path, hardware, &dtype)?;
        efficiency = c.efficiency;
        measured = true;
        match c.step_overhead {
            Some((over, Some(n))) if n > 0.0 => launches.per_kernel_s = over / n,
            Some((over, _)) => {
                launches = Launches::NONE;
                overhead_s += over;
            }
            None => {}
        }
        source = format!("measured: {}", c.describe);
    }
    if let Some(v) = args.eff_compute {
        efficiency.compute = check_fraction(v, "--eff-compute")?;
    }
    if let Some(v) = args.eff_bandwidth {
        efficiency.bandwidth = check_fraction(v, "--eff-bandwidth")?;
        measured = true;
    }
    if let Some(us) = args.launch_us {
        launches.per_kernel_s = us * 1e-6;
        source.push_str(&format!("; --launch-us {us}"));
    }
    let mut hardware = hardware.clone();
    if measured {
        // A measured or given bandwidth efficiency replaces the catalog's measured bandwidth.
        hardware.measured_bandwidth_gbs = None;
    }
    let mut link = args.interconnect.as_deref().map(interconnect).transpose()?;
    // Several devices and no --interconnect: the link this part's platform has, said so.
    if link.is_none()
        && args.devices > 1
        && let Some(usual) = &hardware.interconnect
    {
        link = Some(interconnect(&usual.name)?);
        source.push_str(&format!(
            "; interconnect {} (the catalog's usual link for {}: {}; --interconnect to change)",
            usual.name, hardware.name, usual.source
        ));
    }
    // A part with no usual link and only a bandwidth given: that bandwidth, with a PCIe ring's
    // measured latency.
    if link.is_none()
        && args.devices > 1
        && let Some(gbs) = args.interconnect_gbs
    {
        link = Some(pertoken_cost::latency::given_link(gbs)?);
        source.push_str(&format!(
            "; interconnect: --interconnect-gbs {gbs} with the PCIe 4 ring's measured latency \
             ({} has no usual link in the catalog)",
            hardware.name
        ));
    }
    if let (Some(l), Some(gbs)) = (&mut link, args.interconnect_gbs) {
        l.busbw_gbs.value = gbs;
        l.busbw_gbs.source = "--interconnect-gbs".into();
    }
    Ok((
        Deployment {
            hardware,
            devices: args.devices,
            split: match args.split {
                SplitArg::Tensor => Split::Tensor,
                SplitArg::Layers => Split::Layers,
                SplitArg::Expert => Split::Expert,
            },
            interconnect: link,
            compute_dtype: dtype,
            format,
            expert_format: None,
            kv_bytes: args.kv_bytes,
            efficiency,
            launches,
            dequant_ops: s.dequant_ops(format),
            overhead_s,
        },
        source,
    ))
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let catalog = args.catalog.load()?;
    let model = model(args, &catalog)?;
    if args.hardware.contains(',') {
        return compare::run(args, &model, &catalog);
    }
    if args.max_ttft_ms.is_some() || args.formats.is_some() {
        return Err(
            "--max-ttft-ms and --formats compare several parts: pass --hardware a,b,… \
                    with --isl and --osl"
                .into(),
        );
    }
    let hardware = catalog.hardware(&args.hardware)?.clone();
    let pricing = pricing(args, &hardware)?;
    let (d, source) = deployment(args, &hardware)?;
    let head = print::Head {
        model: &model,
        d: &d,
        args,
        pricing: pricing.as_ref(),
        source: &source,
    };
    if let (Some(isl), Some(osl)) = (args.isl, args.osl) {
        let load = Load {
            isl,
            osl,
            batching: args
                .static_batch
                .map_or(Batching::Continuous, |batch| Batching::Static { batch }),
            max_batch: args.max_batch,
            max_tpot_s: args.max_tpot_ms.map(|t| t / 1e3),
            requests: args.requests,
        };
        let s: Serving = serve(&model, &d, &load, pricing.as_ref())?;
        return print::serving(&head, &load, &s);
    }
    let batches: Vec<u64> = if args.sweep {
        (0..=10).map(|i| 1u64 << i).collect()
    } else {
        args.batch.clone()
    };
    let estimates = batches
        .iter()
        .map(|&b| estimate(&model, &d, pricing.as_ref(), b, args.context, args.prompt))
        .collect::<Result<Vec<Estimate>, CostError>>()?;
    let shown = if args.sweep {
        pareto(&estimates, args.max_tpot_ms.map(|t| t / 1e3))
    } else {
        estimates.clone()
    };
    if let Some(path) = &args.plot {
        listing::plot(
            path,
            &format!("{} on {}× {}", model.name, args.devices, hardware.name),
            &estimates,
        )?;
    }
    print::estimates(&head, &estimates, &shown)
}
