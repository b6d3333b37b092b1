//! `pertoken cost`, `pertoken models`, `pertoken hardware`: the cost model on catalog hardware.

use std::path::PathBuf;

use pertoken_cost::account::WeightFormat;
use pertoken_cost::estimate::{Deployment, Efficiency, Estimate, Pricing, estimate, pareto};
use pertoken_cost::{Catalog, CostError, Model};

use super::CliError;

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

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model name from `pertoken models`.
    #[arg(long, required_unless_present = "hf_config")]
    model: Option<String>,
    /// A Hugging Face config.json to use instead of a catalog model.
    #[arg(long)]
    hf_config: Option<PathBuf>,
    /// Hardware name from `pertoken hardware`.
    #[arg(long)]
    hardware: String,
    /// Batch sizes (concurrent sequences), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    batch: Vec<u64>,
    /// Sweep batch sizes 1, 2, 4 … 1024 and print the Pareto front of cost against speed.
    #[arg(long)]
    sweep: bool,
    /// With --sweep: drop batch sizes whose time per output token exceeds this, ms.
    #[arg(long)]
    max_tpot_ms: Option<f64>,
    /// Mean context length during decode, tokens.
    #[arg(long, default_value_t = 2048)]
    context: u64,
    /// Prompt length, tokens.
    #[arg(long, default_value_t = 512)]
    prompt: u64,
    /// Weight format: f32, f16, bf16, fp8, q8_0, q4_0.
    #[arg(long, default_value = "bf16")]
    weights: String,
    /// Bytes per KV-cache element.
    #[arg(long, default_value_t = 2.0)]
    kv_bytes: f64,
    /// Which peak applies: fp32, bf16, fp16, fp8, int8.
    #[arg(long, default_value = "bf16")]
    compute_dtype: String,
    /// Devices in tensor parallel.
    #[arg(long, default_value_t = 1)]
    devices: u64,
    /// Interconnect bandwidth per device, GB/s (for --devices > 1).
    #[arg(long)]
    interconnect_gbs: Option<f64>,
    /// Efficiencies from a `pertoken bench --json` report measured on this hardware: the best
    /// verified compute rate (matmul, or linear with M ≥ 64) over the dense peak, and the best
    /// verified decode rate (linear with M ≤ 16) over the bandwidth. --eff-* override it.
    #[arg(long)]
    bench_report: Option<PathBuf>,
    /// Achieved fraction of peak FLOP/s (default 0.5; measure with `pertoken bench`).
    #[arg(long)]
    eff_compute: Option<f64>,
    /// Achieved fraction of peak bandwidth (default 0.8).
    #[arg(long)]
    eff_bandwidth: Option<f64>,
    /// Fixed overhead per step, ms.
    #[arg(long, default_value_t = 0.0)]
    overhead_ms: f64,
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

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let catalog = args.catalog.load()?;
    let model: Model = match (&args.hf_config, &args.model) {
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
    };
    let hardware = catalog.hardware(&args.hardware)?.clone();
    let mut efficiency = match &args.bench_report {
        Some(path) => efficiency_from_report(path, &hardware, &args.compute_dtype)?,
        None => Efficiency::default(),
    };
    for (v, slot, what) in [
        (args.eff_compute, &mut efficiency.compute, "--eff-compute"),
        (
            args.eff_bandwidth,
            &mut efficiency.bandwidth,
            "--eff-bandwidth",
        ),
    ] {
        if let Some(v) = v {
            if !(v > 0.0 && v <= 1.0) {
                return Err(invalid("efficiency", format!("{what} {v} must be in (0, 1]")).into());
            }
            *slot = v;
        }
    }
    let pricing = if args.owned {
        Pricing::Owned {
            purchase_usd: args
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
                })?,
            lifetime_years: args.lifetime_years,
            power_w: args
                .power_w
                .or(hardware.tdp_w.as_ref().map(|f| f.value))
                .ok_or_else(|| {
                    invalid(
                        "power",
                        format!("{} has no sourced TDP; pass --power-w", hardware.name),
                    )
                })?,
            pue: args.pue,
            usd_per_kwh: args.usd_per_kwh,
            hosting_usd_per_kw_year: args.hosting_usd_per_kw_year,
            utilization: args.utilization,
        }
    } else {
        Pricing::Rented {
            per_device_hour: args
                .rent
                .or(hardware.price_per_hour.as_ref().map(|f| f.value))
                .ok_or_else(|| invalid("price", format!("{} has no sourced on-demand price; pass --rent USD_PER_HOUR or --owned", hardware.name)))?,
        }
    };
    let deployment = Deployment {
        hardware: hardware.clone(),
        devices: args.devices,
        interconnect_gbs: args.interconnect_gbs,
        compute_dtype: args.compute_dtype.to_ascii_lowercase(),
        format: WeightFormat::parse(&args.weights)?,
        kv_bytes: args.kv_bytes,
        efficiency,
        overhead_s: args.overhead_ms / 1e3,
    };
    let batches: Vec<u64> = if args.sweep {
        (0..=10).map(|i| 1u64 << i).collect()
    } else {
        args.batch.clone()
    };
    let estimates = batches
        .iter()
        .map(|&b| estimate(&model, &deployment, &pricing, b, args.context, args.prompt))
        .collect::<Result<Vec<Estimate>, CostError>>()?;
    let shown = if args.sweep {
        pareto(&estimates, args.max_tpot_ms.map(|t| t / 1e3))
    } else {
        estimates.clone()
    };

    if let Some(path) = &args.plot {
        plot(
            path,
            &format!("{} on {}× {}", model.name, args.devices, hardware.name),
            &estimates,
        )?;
    }

    match args.format {
        Format::Json => {
            let out = serde_json::json!({
                "model": model.name,
                "hardware": hardware.name,
                "devices": args.devices,
                "weights": args.weights,
                "context": args.context,
                "prompt": args.prompt,
                "efficiency": { "compute": efficiency.compute, "bandwidth": efficiency.bandwidth },
                "usd_per_device_hour": pricing.per_device_hour()?,
                "estimates": shown,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Csv => {
            println!(
                "batch,fits,ttft_s,tpot_s,decode_tokens_per_s,prefill_tokens_per_s,usd_per_m_input,usd_per_m_output,usd_per_m_blended,joules_per_output_token"
            );
            for e in &shown {
                println!(
                    "{},{},{},{},{},{},{},{},{},{}",
                    e.batch,
                    e.fits,
                    e.ttft_s,
                    e.tpot_s,
                    e.decode_tokens_per_s,
                    e.prefill_tokens_per_s,
                    e.usd_per_m_input,
                    e.usd_per_m_output,
                    e.usd_per_m_blended,
                    e.joules_per_output_token
                        .map_or(String::new(), |j| j.to_string())
                );
            }
        }
        Format::Table => {
            println!(
                "{} on {}× {} ({} weights, {}-token context, {}-token prompts), ${:.2}/device-hour, \
                 efficiency {:.2} compute / {:.2} bandwidth",
                model.name,
                args.devices,
                hardware.name,
                args.weights,
                args.context,
                args.prompt,
                pricing.per_device_hour()?,
                efficiency.compute,
                efficiency.bandwidth
            );
            if args.sweep {
                println!("Pareto front of cost per output token against time per output token:");
            }
            println!(
                "{:>6} {:>5} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>8}",
                "batch",
                "fits",
                "TTFT ms",
                "TPOT ms",
                "out tok/s",
                "in tok/s",
                "$/1M in",
                "$/1M out",
                "$/1M 3:1",
                "J/tok"
            );
            for e in &shown {
                println!(
                    "{:>6} {:>5} {:>9.2} {:>9.2} {:>11.1} {:>11.1} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                    e.batch,
                    if e.fits { "yes" } else { "NO" },
                    e.ttft_s * 1e3,
                    e.tpot_s * 1e3,
                    e.decode_tokens_per_s,
                    e.prefill_tokens_per_s,
                    e.usd_per_m_input,
                    e.usd_per_m_output,
                    e.usd_per_m_blended,
                    e.joules_per_output_token
                        .map_or("-".into(), |j| format!("{j:.3}"))
                );
            }
            if shown.iter().any(|e| !e.fits) {
                println!(
                    "NO = weights plus every sequence's KV cache exceed memory (less a 10% reserve)."
                );
            }
            let dropped = estimates.iter().filter(|e| !e.fits).count();
            if args.sweep && dropped > 0 {
                println!(
                    "{dropped} batch size(s) left out of the sweep: they do not fit in memory."
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn models(args: &CatalogArgs) -> Result<(), CliError> {
    let c = args.load()?;
    println!(
        "{:<16} {:>9} {:>9} {:>6} {:>7} {:>9} {:>12}  source",
        "name", "params B", "active B", "layers", "hidden", "heads/kv", "KV KiB/tok"
    );
    for m in &c.models {
        let p = m.params();
        println!(
            "{:<16} {:>9.3} {:>9.3} {:>6} {:>7} {:>9} {:>12.1}  {}",
            m.name,
            p.total as f64 / 1e9,
            p.active as f64 / 1e9,
            m.layers,
            m.hidden,
            format!("{}/{}", m.heads, m.kv_heads),
            m.kv_bytes_per_token(2.0) / 1024.0,
            m.source
        );
    }
    Ok(())
}

pub(crate) fn hardware(args: &CatalogArgs) -> Result<(), CliError> {
    let c = args.load()?;
    println!(
        "{:<10} {:>7} {:>8} {:>11} {:>11} {:>6} {:>8}  description",
        "name", "mem GB", "GB/s", "bf16 TFLOP", "fp32 TFLOP", "TDP W", "$/hour"
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    for h in &c.hardware {
        println!(
            "{:<10} {:>7} {:>8} {:>11} {:>11} {:>6} {:>8}  {}",
            h.name,
            h.memory_gb.value,
            h.bandwidth_gbs.value,
            opt(h.dense_peak("bf16").map(|v| v / 1e12), 1),
            opt(h.dense_peak("fp32").map(|v| v / 1e12), 1),
            opt(h.tdp_w.as_ref().map(|f| f.value), 0),
            opt(h.price_per_hour.as_ref().map(|f| f.value), 2),
            h.description
        );
    }
    println!(
        "Every figure's source and date: crates/pertoken-cost/data/hardware.toml. '-': not sourced."
    );
    Ok(())
}

/// Cost per million output tokens against tokens/s per user, one point per batch size that fits,
/// with the Pareto front drawn as a line.
fn plot(path: &std::path::Path, title: &str, estimates: &[Estimate]) -> Result<(), CliError> {
    use plotters::prelude::*;

    let fit: Vec<&Estimate> = estimates.iter().filter(|e| e.fits).collect();
    if fit.is_empty() {
        return Err("--plot: no batch size fits in memory, nothing to draw".into());
    }
    let xy = |e: &Estimate| (1.0 / e.tpot_s, e.usd_per_m_output);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for e in &fit {
        let (x, y) = xy(e);
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(
                (x0 * 0.8..x1 * 1.25).log_scale(),
                (y0 * 0.8..y1 * 1.25).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("tokens/s per user (1 / time per output token)")
            .y_desc("$ per 1M output tokens")
            .draw()?;
        let front = pareto(estimates, None);
        let mut line: Vec<(f64, f64)> = front.iter().map(xy).collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(LineSeries::new(line, &BLUE))?;
        chart.draw_series(fit.iter().map(|e| {
            let (x, y) = xy(e);
            EmptyElement::at((x, y))
                + Circle::new((0, 0), 4, BLUE.filled())
                + Text::new(format!("b={}", e.batch), (6, -14), ("sans-serif", 13))
        }))?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("--plot {}: {e}", path.display()).into())
}

/// Efficiencies from a `pertoken bench --json` report: the kernels bench's rows (matmul and
/// prefill linears for FLOP/s, decode linears for bytes/s) or the model bench's whole steps
/// (prompt rows for FLOP/s, generation rows for bytes/s).
fn efficiency_from_report(
    path: &std::path::Path,
    hw: &pertoken_cost::Hardware,
    dtype: &str,
) -> Result<Efficiency, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--bench-report {}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| CostError::Parse {
        file: path.display().to_string(),
        line: e.line(),
        message: e.to_string(),
    })?;
    if doc.get("pertoken_bench_report").and_then(|v| v.as_u64()) != Some(1) {
        return Err(format!(
            "--bench-report {}: not a pertoken bench report (version 1)",
            path.display()
        )
        .into());
    }
    let rows = doc
        .get("rows")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    // Verified GPU rows only (the bench also times the CPU's sgemm for scale).
    let verified = |r: &&serde_json::Value| {
        r.get("verified").and_then(|v| v.as_bool()) == Some(true)
            && r.get("device").and_then(|v| v.as_str()) == Some("gpu")
    };
    let num = |r: &serde_json::Value, k: &str| r.get(k).and_then(|v| v.as_f64());
    let m_of = |r: &serde_json::Value| r.get("m").and_then(|v| v.as_u64()).unwrap_or(0);
    let is = |r: &serde_json::Value, op: &str| r.get("op").and_then(|v| v.as_str()) == Some(op);
    let flops = rows
        .iter()
        .filter(verified)
        .filter(|r| is(r, "matmul") || is(r, "model_prompt") || (is(r, "linear") && m_of(r) >= 64))
        .filter_map(|r| num(r, "flops_per_s"))
        .fold(0.0f64, f64::max);
    let bytes = rows
        .iter()
        .filter(verified)
        .filter(|r| is(r, "model_generation") || (is(r, "linear") && m_of(r) <= 16))
        .filter_map(|r| num(r, "bytes_per_s"))
        .fold(0.0f64, f64::max);
    if flops <= 0.0 || bytes <= 0.0 {
        return Err(format!(
            "--bench-report {}: needs verified matmul or prefill rows and decode rows (M ≤ 16)",
            path.display()
        )
        .into());
    }
    Efficiency::from_rates(hw, dtype, flops, bytes).map_err(|e| {
        format!(
            "--bench-report {}: {e}; was the bench run on {}?",
            path.display(),
            hw.name
        )
        .into()
    })
}
