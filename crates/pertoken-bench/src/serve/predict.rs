//! The cost model at the serving run's own load, on this adapter: calibrated from the measured
//! steps (the copy bandwidth as the memory roofline, the FLOP rate of steps with many rows, the
//! fixed time of decode steps beyond their bytes), then asked what each load delivers, to set
//! beside what was measured.

use std::collections::BTreeMap;

use pertoken_cost::account::{WeightFormat, matmul_work};
use pertoken_cost::estimate::{Deployment, Efficiency, MEMORY_RESERVE, Split};
use pertoken_cost::latency::Launches;
use pertoken_cost::serving::{Batching, Load, serve};
use pertoken_cost::{Figure, Hardware, Model, Peak};
use pertoken_gpu::DType;
use pertoken_model::{Role, WeightSource};
use pertoken_serve::{Arrival, ServeRun};

use crate::Result;

/// Rows from which a step is taken as compute-bound for the FLOP rate.
const MANY_ROWS: usize = 32;

/// What the measured steps say about this adapter, in the cost model's terms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Bytes/s of the memory roofline: the copy kernel's.
    pub bytes_per_s: f64,
    /// FLOP/s of the compute roofline: the median of steps of at least 32 rows (else the
    /// fastest step).
    pub flops_per_s: f64,
    /// Seconds per step beyond the roofline: the median of decode steps.
    pub overhead_s: f64,
    /// The weights' format as the cost model names it (the one holding the most bytes).
    #[serde(skip)]
    pub format: WeightFormat,
    /// Bytes per KV element.
    pub kv_bytes: f64,
    /// Bytes the pool and the weights take (the memory the model may plan with).
    pub memory_bytes: f64,
}

/// What the cost model predicts for one load.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Output tokens per second.
    pub output_tps: f64,
    /// Time per output token, seconds.
    pub tpot_s: f64,
    /// Time to first token, seconds.
    pub ttft_s: f64,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The cost model's name for the format holding the most of `source`'s weight bytes.
fn format_of(source: &dyn WeightSource) -> Result<WeightFormat> {
    let mut bytes: BTreeMap<&'static str, u64> = BTreeMap::new();
    for role in Role::all(source.spec()) {
        if role.is_vector() {
            continue;
        }
        if let Some((dtype, shape)) = source.stored(role)? {
            let (elems, block) = dtype.block();
            let n: u64 = shape.iter().map(|&d| d as u64).product();
            *bytes.entry(dtype.name()).or_default() += n / elems as u64 * block as u64;
        }
    }
    let name = bytes
        .iter()
        .max_by_key(|(_, b)| **b)
        .map_or("f16", |(n, _)| *n);
    Ok(WeightFormat::parse(name).unwrap_or(WeightFormat::F16))
}

impl Calibration {
    /// From every step of `runs` of `source` with `kv` keys and values, `copy_rate` bytes/s,
    /// and `memory_bytes` of weights and pool.
    pub fn from_runs(
        source: &dyn WeightSource,
        runs: &[&ServeRun],
        (kv, copy_rate, memory_bytes): (DType, f64, f64),
    ) -> Result<Calibration> {
        let m = &source.spec().shape;
        let format = format_of(source)?;
        let kv_bytes = kv.block().1 as f64;
        let steps = || runs.iter().flat_map(|r| &r.steps);
        let bytes = |rows: usize, keys: usize| {
            let (w, _) = matmul_work(m, format, rows as u64);
            w.bytes + keys as f64 * m.kv_bytes_per_token(kv_bytes)
        };
        let overhead = median(
            steps()
                .filter(|s| s.rows == s.decode_rows)
                .map(|s| (s.seconds - bytes(s.rows, s.keys) / copy_rate).max(0.0))
                .collect(),
        )
        .unwrap_or(0.0);
        // A step's FLOPs over its time less the fixed part (at least a quarter of it: a step
        // barely longer than the overhead says nothing of the FLOP rate).
        let rate = |s: &pertoken_serve::StepRecord| {
            let (w, _) = matmul_work(m, format, s.rows as u64);
            w.flops / (s.seconds - overhead).max(0.25 * s.seconds).max(1e-9)
        };
        let flops = median(steps().filter(|s| s.rows >= MANY_ROWS).map(rate).collect())
            .or_else(|| steps().map(rate).max_by(f64::total_cmp))
            .unwrap_or(1e9);
        Ok(Calibration {
            bytes_per_s: copy_rate,
            flops_per_s: flops,
            overhead_s: overhead,
            format,
            kv_bytes,
            memory_bytes,
        })
    }

    /// The adapter as a cost-model deployment: its rooflines at the measured rates (efficiency
    /// 1 of them), the fixed step time as overhead, its memory the weights and the pool.
    pub fn deployment(&self, adapter: &str) -> Deployment {
        let fig = |value: f64, source: &str| Figure {
            value,
            source: source.to_owned(),
            date: String::new(),
        };
        let mut peak = BTreeMap::new();
        peak.insert(
            "fp32".to_owned(),
            Peak {
                value: self.flops_per_s / 1e12,
                dense: true,
                source: "measured: steps of many rows".into(),
                date: String::new(),
            },
        );
        let gbs = self.bytes_per_s / 1e9;
        Deployment {
            hardware: Hardware {
                name: adapter.to_owned(),
                description: "this adapter, calibrated from a serving run".into(),
                memory_gb: fig(
                    self.memory_bytes / 1e9 / (1.0 - MEMORY_RESERVE),
                    "the weights and the KV pool",
                ),
                bandwidth_gbs: fig(gbs, "measured copy kernel"),
                measured_bandwidth_gbs: Some(fig(gbs, "measured copy kernel")),
                tdp_w: None,
                price_per_hour: None,
                purchase_usd: None,
                peak_tflops: peak,
                interconnect: None,
                prices: Vec::new(),
                max_devices: None,
                stack: None,
            },
            devices: 1,
            split: Split::Tensor,
            interconnect: None,
            compute_dtype: "fp32".into(),
            format: self.format,
            expert_format: None,
            kv_bytes: self.kv_bytes,
            efficiency: Efficiency {
                compute: 1.0,
                bandwidth: 1.0,
            },
            launches: Launches::NONE,
            dequant_ops: None,
            overhead_s: self.overhead_s,
        }
    }

    /// The cost model's continuous batching at `load` with `requests` of `isl` and `osl`
    /// tokens (means); `None` for a rate (the model assumes a full queue).
    pub fn predict(
        &self,
        model: &Model,
        adapter: &str,
        (load, requests, isl, osl): (Arrival, usize, f64, f64),
    ) -> Result<Option<Prediction>> {
        let Arrival::Concurrency(c) = load else {
            return Ok(None);
        };
        let load = Load {
            isl: isl.round().max(1.0) as u64,
            osl: osl.round().max(1.0) as u64,
            batching: Batching::Continuous,
            max_batch: Some(c as u64),
            max_tpot_s: None,
            requests: Some(requests as u64),
        };
        let s = serve(model, &self.deployment(adapter), &load, None)?;
        Ok(Some(Prediction {
            output_tps: s.output_tokens_per_s,
            tpot_s: s.tpot_s,
            ttft_s: s.ttft_s,
        }))
    }
}
