//! The validation set: published measurements (`data/validation.toml`, each with its source,
//! date and the quoted row) and the model's prediction of each, from the catalogs and the
//! stacks alone. Nothing is fitted to these points.

use serde::Deserialize;

use crate::account::{WeightFormat, decode_step};
use crate::estimate::{Deployment, Split};
use crate::latency::{interconnect, usual_link};
use crate::serving::{Batching, Load, serve};
use crate::{Catalog, CostError, Result, stack};

fn one() -> u64 {
    1
}

fn two() -> f64 {
    2.0
}

fn fp16() -> String {
    "fp16".into()
}

fn device() -> String {
    "device".into()
}

/// One published measurement.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// A short unique name.
    pub id: String,
    /// Where it was published.
    pub source: String,
    /// When.
    pub date: String,
    /// The row or sentence it was read from.
    pub quote: String,
    /// The software stack (data/stacks.toml).
    pub stack: String,
    /// The hardware (catalog name).
    pub hardware: String,
    /// Devices.
    #[serde(default = "one")]
    pub devices: u64,
    /// `tensor` (default), `layers` or `expert`.
    #[serde(default)]
    pub split: Option<String>,
    /// The link between devices (data/interconnects.toml).
    #[serde(default)]
    pub interconnect: Option<String>,
    /// The model (catalog name).
    pub model: String,
    /// Weight format.
    pub format: String,
    /// Which peak applies.
    #[serde(default = "fp16")]
    pub compute_dtype: String,
    /// Bytes per KV element.
    #[serde(default = "two")]
    pub kv_bytes: f64,
    /// `batch1`, `static` or `continuous`.
    pub mode: String,
    /// Batch (static mode).
    #[serde(default)]
    pub batch: Option<u64>,
    /// Mean context during decode (batch1 mode).
    #[serde(default)]
    pub context: Option<u64>,
    /// Input tokens per request (static, continuous).
    #[serde(default)]
    pub isl: Option<u64>,
    /// Output tokens per request (static, continuous).
    #[serde(default)]
    pub osl: Option<u64>,
    /// Requests in the run (continuous), where the source states them.
    #[serde(default)]
    pub requests: Option<u64>,
    /// The server's batch limit (continuous: `max_num_seqs`, or the benchmark's concurrency).
    #[serde(default)]
    pub max_batch: Option<u64>,
    /// The published value: tokens/s.
    pub measured: f64,
    /// `device` (per device) or `total` (the whole group).
    #[serde(default = "device")]
    pub per: String,
    /// How the point was read and what was assumed.
    #[serde(default)]
    pub notes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointFile {
    point: Vec<Point>,
}

const VALIDATION_TOML: &str = include_str!("../data/validation.toml");

/// The built-in validation set.
pub fn points() -> Result<Vec<Point>> {
    toml::from_str::<PointFile>(VALIDATION_TOML)
        .map(|f| f.point)
        .map_err(|e| CostError::Parse {
            file: "data/validation.toml".into(),
            line: 0,
            message: e.message().to_owned(),
        })
}

/// One point scored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    /// The point's id.
    pub id: String,
    /// Its hardware.
    pub hardware: String,
    /// Its mode.
    pub mode: String,
    /// Published tokens/s.
    pub measured: f64,
    /// Predicted tokens/s, in the same unit.
    pub predicted: f64,
    /// `(predicted − measured) / measured`.
    pub error: f64,
    /// What bounds the predicted step.
    pub bound: &'static str,
    /// The prediction is an upper bound (a format whose unpacking is not modelled).
    pub upper_bound: bool,
}

fn need<T>(v: Option<T>, id: &str, what: &str) -> Result<T> {
    v.ok_or_else(|| CostError::InvalidInput {
        what: "validation point",
        reason: format!("{id}: needs {what}"),
    })
}

/// The deployment a point describes, from the catalog and its stack's figures.
pub fn deployment(p: &Point, catalog: &Catalog) -> Result<Deployment> {
    let s = stack(&p.stack)?;
    let format = WeightFormat::parse(&p.format)?;
    let hardware = catalog.hardware(&p.hardware)?;
    let split = match p.split.as_deref() {
        None | Some("tensor") => Split::Tensor,
        Some("layers") => Split::Layers,
        Some("expert") => Split::Expert,
        Some(other) => {
            return Err(CostError::InvalidInput {
                what: "split",
                reason: format!("{}: {other:?}, expected tensor, layers or expert", p.id),
            });
        }
    };
    // A point that names no link runs over its part's usual one.
    let link = match &p.interconnect {
        Some(name) => Some(interconnect(name)?),
        None => usual_link(hardware, p.devices)?,
    };
    Ok(Deployment::with_stack(
        catalog.model(&p.model)?,
        hardware,
        &s,
        p.devices,
        split,
        link,
        format,
        &p.compute_dtype,
        p.kv_bytes,
    ))
}

/// Predicts one point.
pub fn predict(p: &Point, catalog: &Catalog) -> Result<Scored> {
    let m = catalog.model(&p.model)?.clone();
    let d = deployment(p, catalog)?;
    let (total, bound) = match p.mode.as_str() {
        "batch1" => {
            let ctx = need(p.context, &p.id, "context")?;
            let t = d.step(
                &m,
                decode_step(&m, d.formats(), d.kv_bytes_held(&m), 1, ctx),
                1,
            )?;
            (1.0 / t.total_s, t.bound())
        }
        "static" | "continuous" => {
            let batching = if p.mode == "static" {
                Batching::Static {
                    batch: need(p.batch, &p.id, "batch")?,
                }
            } else {
                Batching::Continuous
            };
            let load = Load {
                isl: need(p.isl, &p.id, "isl")?,
                osl: need(p.osl, &p.id, "osl")?,
                batching,
                max_batch: p.max_batch,
                max_tpot_s: None,
                requests: p.requests,
            };
            let s = serve(&m, &d, &load, None)?;
            (s.output_tokens_per_s, s.step.bound())
        }
        other => {
            return Err(CostError::InvalidInput {
                what: "mode",
                reason: format!("{}: {other:?}, expected batch1, static or continuous", p.id),
            });
        }
    };
    // A batch-1 rate is the group's; a per-device figure divides the group's total.
    let predicted = match p.per.as_str() {
        "total" => total,
        "device" if p.mode == "batch1" => total,
        "device" => total / p.devices as f64,
        other => {
            return Err(CostError::InvalidInput {
                what: "per",
                reason: format!("{}: {other:?}, expected device or total", p.id),
            });
        }
    };
    Ok(Scored {
        id: p.id.clone(),
        hardware: p.hardware.clone(),
        mode: p.mode.clone(),
        measured: p.measured,
        predicted,
        error: (predicted - p.measured) / p.measured,
        bound,
        upper_bound: d.upper_bound_reason().is_some(),
    })
}

/// Every point of the built-in set, predicted.
pub fn score() -> Result<Vec<Scored>> {
    let catalog = Catalog::builtin();
    points()?.iter().map(|p| predict(p, &catalog)).collect()
}

/// The hardware family a catalog part belongs to, for accuracy per family.
pub fn family(hardware: &str) -> &'static str {
    let h = hardware.to_ascii_lowercase();
    if h == "rtx-5090" {
        "NVIDIA Blackwell"
    } else if h.starts_with("trn") || h.starts_with("inf") {
        "AWS Trainium/Inferentia"
    } else if h.starts_with("tpu") {
        "Google TPU"
    } else if h.starts_with("mi") {
        "AMD Instinct"
    } else if h.starts_with('b') || h.starts_with("gb") {
        "NVIDIA Blackwell"
    } else if h.starts_with('m') {
        "Apple"
    } else if h.starts_with("gaudi") {
        "Intel Gaudi"
    } else {
        "NVIDIA Ampere/Ada/Hopper"
    }
}

/// The set's error figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Points.
    pub points: usize,
    /// Points within ±15%.
    pub within_15: usize,
    /// Median absolute error (fraction).
    pub median_abs_error: f64,
    /// Largest absolute error (fraction) and its point.
    pub worst: (f64, String),
    /// Largest factor between prediction and measurement, either way.
    pub worst_factor: f64,
}

/// Summarizes scored points.
pub fn summarize(scored: &[Scored]) -> Summary {
    let mut abs: Vec<f64> = scored.iter().map(|s| s.error.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let median = match abs.len() {
        0 => 0.0,
        n if n % 2 == 1 => abs[n / 2],
        n => (abs[n / 2 - 1] + abs[n / 2]) / 2.0,
    };
    let worst = scored
        .iter()
        .max_by(|a, b| a.error.abs().total_cmp(&b.error.abs()))
        .map(|s| (s.error.abs(), s.id.clone()))
        .unwrap_or_default();
    let worst_factor = scored
        .iter()
        .map(|s| (s.predicted / s.measured).max(s.measured / s.predicted))
        .fold(1.0, f64::max);
    Summary {
        points: scored.len(),
        within_15: abs.iter().filter(|e| **e <= 0.15).count(),
        median_abs_error: median,
        worst,
        worst_factor,
    }
}
