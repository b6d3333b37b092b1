//! The serving runs' table, JSON and CSV.

use std::path::Path;

use pertoken_bench::serve::{Calibration, Measured, Prediction, ServeConfig};
use pertoken_gpu::Gpu;
use pertoken_model::WeightSource;

use crate::cli::CliError;
use pertoken_bench::model::Pricing;

/// One run: a model at one load.
pub(crate) struct ServeRow {
    pub model: String,
    pub load: String,
    pub result: Result<Measured, String>,
    /// Mean board power over the run, where NVML reads it.
    watts: Option<f64>,
    /// $ per 1M output tokens (all the time charged to them), $ per 1M tokens in and out
    /// together, J per output token.
    pub cost: (Option<f64>, Option<f64>, Option<f64>),
    /// What the cost model, calibrated from the runs, predicts at this load.
    pub predicted: Option<Prediction>,
    pub calibration: Option<Calibration>,
}

impl ServeRow {
    pub(crate) fn new(
        source: &dyn WeightSource,
        load: &str,
        result: Result<Measured, String>,
        watts: Option<f64>,
    ) -> ServeRow {
        ServeRow {
            model: source.spec().shape.name.clone(),
            load: load.to_owned(),
            result,
            watts,
            cost: (None, None, None),
            predicted: None,
            calibration: None,
        }
    }

    pub(crate) fn price(&mut self, pricing: &Pricing) {
        let Ok(m) = &self.result else { return };
        let r = &m.report;
        let measured = self.watts.map(|w| w / r.output_tps);
        let (out, joules) = pricing.at(r.output_tps, measured);
        let (total, _) = pricing.at(r.total_tps, None);
        self.cost = (out, total, joules);
    }

    /// Whether its check found a difference.
    pub(crate) fn differs(&self) -> bool {
        matches!(&self.result, Ok(m) if matches!(m.verified, Some(Err(_))))
    }
}

fn ms(s: f64) -> String {
    format!("{:.1}", s * 1e3)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

/// Two tables (throughput and cost; latency), then what each run verified.
pub(crate) fn print_serve(rows: &[ServeRow]) {
    println!(
        "| {:<20} | {:>5} | {:>5} | {:>9} | {:>16} | {:>9} | {:>9} | {:>11} | {:>7} | {:>7} | {:>9} | {:>9} | {:>8} | {:<8} |",
        "model",
        "load",
        "reqs",
        "out t/s",
        "predicted (Δ)",
        "total t/s",
        "occupancy",
        "KV blocks",
        "preempt",
        "% bound",
        "$/1M out",
        "$/1M tok",
        "J/tok",
        "verified"
    );
    println!("|{}|", ["---"; 14].join("|"));
    for r in rows {
        let m = match &r.result {
            Ok(m) => m,
            Err(why) => {
                println!("| {:<20} | {:>5} | FAILED: {why}", r.model, r.load);
                continue;
            }
        };
        let p = &m.report;
        let verified = match &m.verified {
            None => "no",
            Some(Ok(_)) => "yes",
            Some(Err(_)) => "NO",
        };
        let predicted = r.predicted.map_or_else(
            || "-".to_owned(),
            |x| {
                format!(
                    "{:.2} ({:+.0}%)",
                    x.output_tps,
                    100.0 * (x.output_tps / p.output_tps - 1.0)
                )
            },
        );
        println!(
            "| {:<20} | {:>5} | {:>5} | {:>9.2} | {:>16} | {:>9.2} | {:>9.2} | {:>11} | {:>7} | {:>6.1}% | {:>9} | {:>9} | {:>8} | {:<8} |",
            r.model,
            r.load,
            p.requests,
            p.output_tps,
            predicted,
            p.total_tps,
            p.occupancy,
            format!("{}/{}", p.blocks_peak, p.blocks_total),
            p.preemptions,
            100.0 * m.bound.share,
            opt(r.cost.0, 3),
            opt(r.cost.1, 3),
            opt(r.cost.2, 3),
            verified,
        );
    }
    println!();
    println!(
        "| {:<20} | {:>5} | {:>22} | {:>22} | {:>22} | {:>6} | {:>9} | {:>9} |",
        "model",
        "load",
        "TTFT ms mean/p50/p99",
        "TPOT ms mean/p50/p99",
        "ITL ms mean/p50/p99",
        "steps",
        "launches",
        "peak MiB"
    );
    println!("|{}|", ["---"; 8].join("|"));
    for r in rows {
        let Ok(m) = &r.result else { continue };
        let p = &m.report;
        let three =
            |l: &pertoken_serve::Latency| format!("{}/{}/{}", ms(l.mean), ms(l.p50), ms(l.p99));
        println!(
            "| {:<20} | {:>5} | {:>22} | {:>22} | {:>22} | {:>6} | {:>9.0} | {:>9.1} |",
            r.model,
            r.load,
            three(&p.ttft),
            three(&p.tpot),
            three(&p.itl),
            p.steps,
            m.launches_per_step,
            p.peak_memory as f64 / (1u64 << 20) as f64,
        );
    }
    println!();
    for r in rows {
        match &r.result {
            Ok(Measured {
                verified: Some(v), ..
            }) => match v {
                Ok(what) => println!("verified {} {}: {what}", r.model, r.load),
                Err(why) => println!("NOT verified {} {}: {why}", r.model, r.load),
            },
            Ok(_) => println!("{} {}: not verified (--no-verify)", r.model, r.load),
            Err(_) => {}
        }
    }
}

fn run_json(r: &ServeRow) -> serde_json::Value {
    match &r.result {
        Err(why) => serde_json::json!({ "model": r.model, "load": r.load, "error": why }),
        Ok(m) => serde_json::json!({
            "model": r.model,
            "load": r.load,
            "report": m.report,
            "bound": m.bound,
            "launches_per_step": m.launches_per_step,
            "verified": m.verified.as_ref().map(|v| v.is_ok()),
            "verification": m.verified.as_ref().map(|v| match v { Ok(s) | Err(s) => s.clone() }),
            "usd_per_m_output": r.cost.0,
            "usd_per_m_tokens": r.cost.1,
            "joules_per_output_token": r.cost.2,
            "predicted": r.predicted,
            "calibration": r.calibration,
            "steps": m.run.steps,
        }),
    }
}

/// `--json`: every run with its report and steps (`pertoken cost --bench-report` reads it).
pub(crate) fn write_json(
    path: &Path,
    gpu: &Gpu,
    copy_rate: f64,
    config: &ServeConfig,
    rows: &[ServeRow],
) -> Result<(), CliError> {
    let a = gpu.adapter();
    let json = serde_json::json!({
        "pertoken_bench_report": 1,
        "kind": "serve",
        "adapter": { "name": a.name, "backend": format!("{:?}", a.backend), "driver": a.driver_info },
        "copy_bytes_per_s": copy_rate,
        "workload": {
            "isl": config.isl.to_string(),
            "osl": config.osl.to_string(),
            "isl_mean": config.isl.mean(),
            "osl_mean": config.osl.mean(),
            "kv_type": config.kv_dtype.name(),
            "block": config.block,
            "max_batched_tokens": config.token_budget,
            "seed": config.seed,
        },
        "runs": rows.iter().map(run_json).collect::<Vec<_>>(),
    });
    std::fs::write(path, serde_json::to_string_pretty(&json)?)
        .map_err(|e| format!("writing {}: {e}", path.display()).into())
}

/// `--csv`: one line per run.
pub(crate) fn write_csv(path: &Path, rows: &[ServeRow]) -> Result<(), CliError> {
    let mut out = String::from(
        "model,load,requests,output_tps,total_tps,ttft_p50_s,ttft_p99_s,tpot_p50_s,tpot_p99_s,\
         itl_p50_s,itl_p99_s,occupancy,blocks_peak,blocks_total,preemptions,peak_memory_bytes,\
         bound_share,usd_per_m_output,usd_per_m_tokens,joules_per_output_token,verified,error\n",
    );
    let o = |v: Option<f64>| v.map_or_else(String::new, |x| x.to_string());
    for r in rows {
        match &r.result {
            Err(why) => out.push_str(&format!(
                "{},{},,,,,,,,,,,,,,,,,,,,\"{}\"\n",
                r.model,
                r.load,
                why.replace('"', "'")
            )),
            Ok(m) => {
                let p = &m.report;
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\n",
                    r.model,
                    r.load,
                    p.requests,
                    p.output_tps,
                    p.total_tps,
                    p.ttft.p50,
                    p.ttft.p99,
                    p.tpot.p50,
                    p.tpot.p99,
                    p.itl.p50,
                    p.itl.p99,
                    p.occupancy,
                    p.blocks_peak,
                    p.blocks_total,
                    p.preemptions,
                    p.peak_memory,
                    m.bound.share,
                    o(r.cost.0),
                    o(r.cost.1),
                    o(r.cost.2),
                    m.verified
                        .as_ref()
                        .map_or("", |v| if v.is_ok() { "true" } else { "false" }),
                ));
            }
        }
    }
    std::fs::write(path, out).map_err(|e| format!("writing {}: {e}", path.display()).into())
}
