//! Which chip serves a model cheapest: for each part, every configuration its usual stack can
//! run (devices up to its platform, tensor / expert / layer split, each weight format the stack
//! serves there, the largest batch the limits allow), the cheapest one that meets the latency
//! limits, and why every other one lost.

use serde::Serialize;

use crate::account::WeightFormat;
use crate::estimate::{Deployment, Pricing, Split};
use crate::latency::usual_link;
use crate::serving::{Batching, Load, Serving, serve};
use crate::{Catalog, CostError, Hardware, Model, Price, Result, Stack, stack};

/// What is searched and the limits a winner must meet.
#[derive(Debug, Clone)]
pub struct Search {
    /// Input tokens per request.
    pub isl: u64,
    /// Output tokens per request.
    pub osl: u64,
    /// The largest time per output token allowed, seconds.
    pub max_tpot_s: Option<f64>,
    /// The largest time to first token allowed, seconds.
    pub max_ttft_s: Option<f64>,
    /// Weight formats allowed (`None`: [`default_formats`]).
    pub formats: Option<Vec<WeightFormat>>,
    /// The price kinds to use, first found first (`on-demand`, then the fallbacks).
    pub price_kinds: Vec<String>,
    /// Bytes per KV-cache element.
    pub kv_bytes: f64,
    /// A stack for every part instead of each part's usual one.
    pub stack: Option<String>,
}

/// The price kinds tried when the one asked for is not sourced, in this order.
pub const PRICE_FALLBACK: &[&str] = &[
    "on-demand",
    "capacity-block",
    "market",
    "reserved",
    "1-year",
    "3-year",
    "spot",
];

/// Why a configuration is not the part's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "why", rename_all = "snake_case")]
pub enum Outcome {
    /// The cheapest configuration that meets the limits.
    Winner,
    /// The weights (or a single sequence's KV cache) do not fit.
    Memory(String),
    /// It fits but misses a latency limit even at batch 1.
    Sla(String),
    /// It meets the limits but costs more than the winner.
    Cost(String),
    /// The split or format cannot run this way.
    Invalid(String),
}

/// One configuration and what it delivers at its best batch.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Devices one model instance spans.
    pub devices: u64,
    /// `tensor`, `expert` or `layers`.
    pub split: &'static str,
    /// Weight format (the experts' where they differ).
    pub format: String,
    /// The peak rate its matmuls run at.
    pub compute_dtype: String,
    /// The link between its devices.
    pub interconnect: Option<String>,
    /// Model instances (data-parallel replicas) one platform holds: `max_devices / devices`.
    pub replicas: u64,
    /// The serving figures at its best batch, where it runs.
    pub serving: Option<Serving>,
    /// USD per million output tokens, all the devices' time charged to output.
    pub usd_per_m_output: Option<f64>,
    /// USD per million tokens, input and output together.
    pub usd_per_m_blended: Option<f64>,
    /// Output tokens per second per chip.
    pub tokens_per_s_per_chip: Option<f64>,
    /// Output tokens per second one user sees (1 / TPOT).
    pub tokens_per_s_per_user: Option<f64>,
    /// The prediction is an upper bound (a format whose unpacking cost is not sourced).
    pub upper_bound: Option<String>,
    /// Why it is or is not the answer.
    pub outcome: Outcome,
}

/// One part's answer.
#[derive(Debug, Clone, Serialize)]
pub struct PartResult {
    /// Catalog name.
    pub hardware: String,
    /// The stack whose figures apply.
    pub stack: String,
    /// The price used, with its kind, source and date.
    pub price: Option<Price>,
    /// What was said of the price (a fallback kind, or none sourced).
    pub price_note: Option<String>,
    /// Joules per output token at the winner's TDP, where sourced.
    pub joules_per_output_token: Option<f64>,
    /// The winner's index in `considered`.
    pub winner: Option<usize>,
    /// Every configuration tried.
    pub considered: Vec<Config>,
    /// Cost against per-user speed: the cheapest configuration at each of a range of batch
    /// limits, `(tokens/s per user, USD per 1M output)`, fastest first; only points that meet
    /// the limits.
    pub curve: Vec<(f64, f64)>,
}

impl PartResult {
    /// The winning configuration.
    pub fn best(&self) -> Option<&Config> {
        self.winner.map(|i| &self.considered[i])
    }

    /// The winning configuration with its serving figures.
    pub fn best_serving(&self) -> Option<(&Config, &Serving)> {
        self.best().and_then(|c| c.serving.as_ref().map(|s| (c, s)))
    }
}

/// The formats tried unless the user names others: bf16 and fp8 (served at near-bf16 accuracy:
/// MLPerf's 99.9% tier admits fp8), and for a mixture of experts MXFP4 experts (gpt-oss's own
/// checkpoint format). Integer and NVFP4 weights change accuracy more and are tried only when
/// asked for.
pub fn default_formats(m: &Model) -> Vec<WeightFormat> {
    let mut f = vec![WeightFormat::F16, WeightFormat::Fp8];
    if m.experts > 1 {
        f.push(WeightFormat::Mxfp4);
    }
    f
}

/// The price of `hw` per device-hour: the first kind of `kinds` it has, and a note when that is
/// not the first asked for.
pub fn price_of(hw: &Hardware, kinds: &[String]) -> (Option<Price>, Option<String>) {
    for (i, k) in kinds.iter().enumerate() {
        if let Some(p) = hw.price(k) {
            let note = (i > 0).then(|| format!("no {} price sourced: {} used", kinds[0], p.kind));
            return (Some(p), note);
        }
    }
    (
        None,
        Some(format!(
            "no price sourced for {} (kinds tried: {}); pass a price to rank it",
            hw.name,
            kinds.join(", ")
        )),
    )
}

/// Device counts searched on `hw`: powers of two up to its platform (and the platform size
/// itself, such as an inf2.48xlarge's 12 chips).
pub fn device_counts(hw: &Hardware) -> Vec<u64> {
    let max = hw.max_devices.as_ref().map_or(8, |m| m.value);
    let mut n: Vec<u64> = (0..).map(|i| 1u64 << i).take_while(|&d| d <= max).collect();
    if !n.contains(&max) {
        n.push(max);
    }
    n
}

/// The peak a format's matmuls run at on `hw`: its native one where the part has it, else the
/// 16-bit one (bf16, or fp16 where the part lists no bf16); `None` where the stack cannot run
/// the format on this part (fp8 and NVFP4 need their own tensor cores).
fn compute_dtype(hw: &Hardware, f: WeightFormat) -> Option<String> {
    let half = if hw.dense_peak("bf16").is_some() {
        "bf16"
    } else {
        "fp16"
    };
    match f.native_peak() {
        Some(p) if hw.dense_peak(p).is_some() => Some(p.to_owned()),
        Some("fp8") | Some("fp32") => None,
        _ if f == WeightFormat::Nvfp4 => None,
        _ => Some(half.to_owned()),
    }
}

/// The formats to try on `hw` with stack `s`, each with its compute dtype, or why it is left out.
fn formats(
    hw: &Hardware,
    s: &Stack,
    allowed: &Option<Vec<WeightFormat>>,
) -> Vec<(WeightFormat, std::result::Result<String, String>)> {
    let mut out = Vec::new();
    for fs in &s.formats {
        let Ok(f) = WeightFormat::parse(&fs.name) else {
            continue;
        };
        if allowed.as_ref().is_some_and(|a| !a.contains(&f)) {
            continue;
        }
        let verdict = match &fs.only {
            Some(parts) if !parts.contains(&hw.name) => Err(format!(
                "{} runs {} only on {}",
                s.name,
                f.name(),
                parts.join(", ")
            )),
            _ => compute_dtype(hw, f).ok_or_else(|| {
                format!(
                    "{} weights need {} tensor cores, which {} lacks",
                    f.name(),
                    f.native_peak().unwrap_or("their own"),
                    hw.name
                )
            }),
        };
        out.push((f, verdict));
    }
    out
}

/// Why `split` over `devices` cannot hold `m`, if it cannot.
fn split_invalid(m: &Model, split: Split, devices: u64) -> Option<String> {
    match split {
        Split::Tensor if !m.heads.is_multiple_of(devices) => Some(format!(
            "tensor parallelism over {devices} devices needs the {} heads to divide evenly",
            m.heads
        )),
        Split::Expert if m.experts <= 1 => Some("a dense model has no experts to spread".into()),
        Split::Expert if !m.experts.is_multiple_of(devices) => Some(format!(
            "{} experts do not spread evenly over {devices} devices",
            m.experts
        )),
        Split::Layers if m.layers < devices => {
            Some(format!("{} layers cannot span {devices} devices", m.layers))
        }
        _ => None,
    }
}

fn split_name(s: Split) -> &'static str {
    match s {
        Split::Tensor => "tensor",
        Split::Expert => "expert",
        Split::Layers => "layers",
    }
}

/// Serving at the largest batch (at most `cap`) that meets the limits: continuous batching's
/// KV and TPOT bounds, then fewer sequences while the time to first token is over its limit.
fn best_batch(
    m: &Model,
    d: &Deployment,
    search: &Search,
    cap: Option<u64>,
    per_hour: Option<f64>,
) -> Result<std::result::Result<Serving, Outcome>> {
    let mut load = Load {
        isl: search.isl,
        osl: search.osl,
        batching: Batching::Continuous,
        max_batch: cap,
        max_tpot_s: search.max_tpot_s,
        requests: None,
    };
    let pricing = per_hour.map(|per_device_hour| Pricing::Rented { per_device_hour });
    let mut s = match serve(m, d, &load, pricing.as_ref()) {
        Ok(s) => s,
        Err(CostError::InvalidInput { reason, .. }) => {
            let memory = reason.contains("no memory") || reason.contains("fit");
            return Ok(Err(if memory {
                Outcome::Memory(reason)
            } else {
                Outcome::Sla(reason)
            }));
        }
        Err(e) => return Err(e),
    };
    if let Some(limit) = search.max_ttft_s {
        while s.ttft_s > limit {
            if s.batch == 1 {
                return Ok(Err(Outcome::Sla(format!(
                    "even one sequence waits {:.0} ms for its first token, over the {:.0} ms limit",
                    s.ttft_s * 1e3,
                    limit * 1e3
                ))));
            }
            load.max_batch = Some((s.batch * 4 / 5).max(1));
            s = serve(m, d, &load, pricing.as_ref())?;
        }
    }
    Ok(Ok(s))
}

/// Batch limits the cost curve is drawn over.
const CURVE_BATCHES: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Searches every configuration of `m` on each part of `names` and ranks the parts by the
/// winner's $ per 1M output tokens (unpriced parts last).
pub fn compare(
    m: &Model,
    catalog: &Catalog,
    names: &[String],
    search: &Search,
) -> Result<Vec<PartResult>> {
    if search.isl == 0 || search.osl == 0 {
        return Err(CostError::InvalidInput {
            what: "load",
            reason: "input and output lengths must be at least 1".into(),
        });
    }
    let mut parts = Vec::new();
    for name in names {
        let hw = catalog.hardware(name)?;
        let stack_name = match (&search.stack, &hw.stack) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => s.name.clone(),
            (None, None) => "vllm".to_owned(),
        };
        let s = stack(&stack_name)?;
        parts.push(part(m, hw, &s, search)?);
    }
    parts.sort_by(|a, b| {
        let cost = |p: &PartResult| p.best().and_then(|c| c.usd_per_m_output);
        match (cost(a), cost(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
    Ok(parts)
}

fn part(m: &Model, hw: &Hardware, s: &Stack, search: &Search) -> Result<PartResult> {
    let (price, price_note) = price_of(hw, &search.price_kinds);
    let per_hour = price.as_ref().map(|p| p.value);
    let max = hw.max_devices.as_ref().map_or(8, |m| m.value);
    let mut considered = Vec::new();
    let mut curve_points: Vec<(f64, f64)> = Vec::new();
    let splits: &[Split] = if m.experts > 1 {
        &[Split::Tensor, Split::Expert, Split::Layers]
    } else {
        &[Split::Tensor, Split::Layers]
    };
    let allowed = Some(search.formats.clone().unwrap_or_else(|| default_formats(m)));
    for (format, verdict) in formats(hw, s, &allowed) {
        for &devices in &device_counts(hw) {
            for &split in splits {
                if devices == 1 && split != Split::Tensor {
                    continue;
                }
                let mut c = Config {
                    devices,
                    split: split_name(split),
                    format: format.name().to_owned(),
                    compute_dtype: String::new(),
                    interconnect: None,
                    replicas: max / devices,
                    serving: None,
                    usd_per_m_output: None,
                    usd_per_m_blended: None,
                    tokens_per_s_per_chip: None,
                    tokens_per_s_per_user: None,
                    upper_bound: None,
                    outcome: Outcome::Winner,
                };
                let dtype = match (&verdict, split_invalid(m, split, devices)) {
                    (Err(why), _) => Err(why.clone()),
                    (_, Some(why)) => Err(why),
                    (Ok(d), None) => Ok(d.clone()),
                };
                let dtype = match dtype {
                    Ok(d) => d,
                    Err(why) => {
                        c.outcome = Outcome::Invalid(why);
                        considered.push(c);
                        continue;
                    }
                };
                let d = Deployment::with_stack(
                    m,
                    hw,
                    s,
                    devices,
                    split,
                    usual_link(hw, devices)?,
                    format,
                    &dtype,
                    search.kv_bytes,
                );
                c.compute_dtype = dtype;
                c.interconnect = d.interconnect.as_ref().map(|i| i.name.clone());
                c.upper_bound = d.upper_bound_reason();
                match best_batch(m, &d, search, None, per_hour)? {
                    Err(o) => c.outcome = o,
                    Ok(sv) => {
                        let total = sv.output_tokens_per_s + sv.input_tokens_per_s;
                        c.tokens_per_s_per_chip = Some(sv.output_tokens_per_s / devices as f64);
                        c.tokens_per_s_per_user = Some(1.0 / sv.tpot_s);
                        c.usd_per_m_output = sv.usd_per_m_output;
                        c.usd_per_m_blended =
                            per_hour.map(|h| h * devices as f64 / (total * 3600.0) * 1e6);
                        c.serving = Some(sv);
                        for &cap in CURVE_BATCHES {
                            if let Ok(sv) = best_batch(m, &d, search, Some(cap), per_hour)? {
                                let cost = sv.usd_per_m_output.unwrap_or(
                                    1e6 * devices as f64 / sv.output_tokens_per_s / 3600.0,
                                );
                                curve_points.push((1.0 / sv.tpot_s, cost));
                            }
                        }
                    }
                }
                considered.push(c);
            }
        }
    }
    // The winner: the cheapest that runs (by device-hours per token where unpriced).
    let cost = |c: &Config| {
        c.usd_per_m_output
            .or(c.tokens_per_s_per_chip.map(|t| 1e6 / t / 3600.0))
    };
    let winner = considered
        .iter()
        .enumerate()
        .filter(|(_, c)| c.outcome == Outcome::Winner)
        .min_by(|a, b| {
            cost(a.1)
                .unwrap_or(f64::MAX)
                .total_cmp(&cost(b.1).unwrap_or(f64::MAX))
        })
        .map(|(i, _)| i);
    if let Some(w) = winner {
        let best = cost(&considered[w]).unwrap_or(f64::MAX);
        let unit = if per_hour.is_some() {
            "$ per 1M output tokens"
        } else {
            "device-hours per 1M output tokens"
        };
        for (i, c) in considered.iter_mut().enumerate() {
            if i != w && c.outcome == Outcome::Winner {
                let mine = cost(c).unwrap_or(f64::MAX);
                c.outcome = Outcome::Cost(format!(
                    "{mine:.4} {unit}, {:.2}x the winner's {best:.4}",
                    mine / best
                ));
            }
        }
    }
    let joules = winner.and_then(|w| {
        let c = &considered[w];
        let sv = c.serving.as_ref()?;
        hw.tdp_w
            .as_ref()
            .map(|t| t.value * c.devices as f64 / sv.output_tokens_per_s)
    });
    Ok(PartResult {
        hardware: hw.name.clone(),
        stack: s.name.clone(),
        price,
        price_note,
        joules_per_output_token: joules,
        winner,
        considered,
        curve: front(curve_points),
    })
}

/// The points no other point beats on both speed and cost, fastest first.
fn front(mut points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in points {
        if out.last().is_none_or(|l| p.1 < l.1) {
            out.push(p);
        }
    }
    out
}

/// One sentence on why the first part wins: its cost per token against the runner-up's, split
/// into price per chip-hour and tokens per chip.
pub fn why_the_winner_wins(parts: &[PartResult]) -> Option<String> {
    let ranked: Vec<(&PartResult, &Config)> = parts
        .iter()
        .filter_map(|p| {
            p.best()
                .filter(|c| c.usd_per_m_output.is_some())
                .map(|c| (p, c))
        })
        .collect();
    let (w, wc) = ranked.first()?;
    let Some((r, rc)) = ranked.get(1) else {
        return Some(format!(
            "{} is the only part priced that meets the limits",
            w.hardware
        ));
    };
    let (wp, rp) = (w.price.as_ref()?.value, r.price.as_ref()?.value);
    let (wt, rt) = (wc.tokens_per_s_per_chip?, rc.tokens_per_s_per_chip?);
    let (wu, ru) = (wc.usd_per_m_output?, rc.usd_per_m_output?);
    Some(format!(
        "{} wins at ${wu:.3} per 1M output tokens, {:.2}x cheaper than {} (${ru:.3}): its chip-hour \
         costs {:.2}x as much (${wp:.2} against ${rp:.2}, {}) and it delivers {:.2}x the output \
         tokens per chip ({wt:.0} against {rt:.0} tok/s, {}x {} {} at batch {})",
        w.hardware,
        ru / wu,
        r.hardware,
        wp / rp,
        w.price.as_ref()?.kind,
        wt / rt,
        wc.devices,
        w.hardware,
        wc.format,
        wc.serving.as_ref()?.batch,
    ))
}

#[cfg(test)]
mod tests;
