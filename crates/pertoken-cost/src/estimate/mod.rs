//! From work to time, money and energy: a roofline per kind of kernel, the latency terms,
//! splits over several devices, and prices.

use crate::account::{
    Formats, WeightFormat, Work, decode_step, expert_weight_bytes, prefill, weight_bytes,
    weight_bytes_touched,
};
use crate::latency::{Interconnect, Launches, allreduce_bytes, allreduces_per_step, interconnects};
use crate::{CostError, Hardware, Model, Result, Stack};

/// Fractions of peak compute and bandwidth the kernels achieve.
///
/// The defaults, 0.5 of dense peak FLOP/s and 0.8 of bandwidth, are typical of well-tuned
/// inference kernels on datacenter GPUs; replace them with measured values (`pertoken bench`
/// reports both) wherever you have them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Efficiency {
    /// Achieved / peak FLOP/s.
    pub compute: f64,
    /// Achieved / peak bytes/s.
    pub bandwidth: f64,
}

impl Efficiency {
    /// Efficiencies from rates measured at the model's shapes (for example by `pertoken bench`):
    /// achieved FLOP/s over the hardware's dense `dtype` peak, achieved bytes/s over its
    /// bandwidth. Both must come out in (0, 1].
    pub fn from_rates(
        hw: &Hardware,
        dtype: &str,
        flops_per_s: f64,
        bytes_per_s: f64,
    ) -> Result<Efficiency> {
        let peak = hw
            .dense_peak(dtype)
            .ok_or_else(|| CostError::InvalidInput {
                what: "compute dtype",
                reason: format!("{} has no sourced dense {dtype} peak", hw.name),
            })?;
        let e = Efficiency {
            compute: flops_per_s / peak,
            bandwidth: bytes_per_s / (hw.bandwidth_gbs.value * 1e9),
        };
        for (what, v) in [
            ("measured FLOP/s", e.compute),
            ("measured bytes/s", e.bandwidth),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(CostError::InvalidInput {
                    what,
                    reason: format!("{v:.3} of {}'s peak: must be in (0, 1]", hw.name),
                });
            }
        }
        Ok(e)
    }
}

impl Default for Efficiency {
    fn default() -> Self {
        Efficiency {
            compute: 0.5,
            bandwidth: 0.8,
        }
    }
}

/// How a model is split over several devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Tensor parallel: every layer's matrices split over the devices, two all-reduces per layer.
    Tensor,
    /// Layer split (pipeline, llama.cpp's default): each device holds a run of whole layers; at
    /// batch 1 the devices take turns, so a step costs the sum of their parts plus a hop each.
    Layers,
    /// Expert parallel with data-parallel attention, as mixture-of-experts models are served
    /// (TensorRT-LLM's `--ep` with `enable_attention_dp`): each device holds `1/n` of the
    /// experts and a full copy of every other weight (attention, router, embeddings, head), and
    /// runs attention for its own `1/n` of the sequences over their own KV caches. Each MoE
    /// layer gathers the step's activations from every device before the experts and scatters
    /// the sums back after them: one all-reduce's traffic, two latencies. Expert load is taken
    /// as balanced.
    Expert,
}

/// How a model is served.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The accelerator.
    pub hardware: Hardware,
    /// Devices the model is split over (1 for one device).
    pub devices: u64,
    /// How the model is split over them.
    pub split: Split,
    /// The link between devices (needed when `devices > 1`).
    pub interconnect: Option<Interconnect>,
    /// Which peak rate applies (`bf16`, `fp16`, `fp8`, `fp32`).
    pub compute_dtype: String,
    /// Weight storage.
    pub format: WeightFormat,
    /// The experts' weight storage where it differs from `format` (gpt-oss's MXFP4 experts).
    pub expert_format: Option<WeightFormat>,
    /// Bytes per KV-cache element.
    pub kv_bytes: f64,
    /// Kernel efficiencies.
    pub efficiency: Efficiency,
    /// Kernel launches per step and their fixed cost.
    pub launches: Launches,
    /// ALU operations per weight a batch-1 GEMV spends (multiply-add and unpacking), charged at
    /// the device's FP32 rate; `None` where no figure is sourced for this format and stack.
    pub dequant_ops: Option<f64>,
    /// Fixed time per step besides launches (host scheduling, sampling), seconds.
    pub overhead_s: f64,
}

/// Where one step's time goes, seconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepTime {
    /// The kernels' roofline: over each kind of kernel (shared matmuls, experts, attention),
    /// the slower of its compute and its memory time, summed. At least
    /// `max(compute_s, memory_s)`, at most their sum.
    pub roofline_s: f64,
    /// FLOPs over achieved FLOP/s, per device, all kinds of kernel.
    pub compute_s: f64,
    /// Bytes over achieved bandwidth, per device, all kinds of kernel.
    pub memory_s: f64,
    /// Unpacking quantized weights (ALU work per weight over the FP32 rate), per device.
    pub dequant_s: f64,
    /// Kernel launches.
    pub launch_s: f64,
    /// All-reduces (tensor parallel) or hops between devices (layer split).
    pub comm_s: f64,
    /// Fixed overhead.
    pub overhead_s: f64,
    /// `roofline + dequant + launch + comm + overhead`.
    pub total_s: f64,
}

impl StepTime {
    /// The largest term's name: `compute`, `memory`, `dequant`, `launch` or `comm`.
    pub fn bound(&self) -> &'static str {
        [
            ("compute", self.compute_s),
            ("memory", self.memory_s),
            ("dequant", self.dequant_s),
            ("launch", self.launch_s),
            ("comm", self.comm_s),
        ]
        .into_iter()
        .fold(("memory", f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
        .0
    }
}

impl Deployment {
    /// `m` served by stack `s` on `devices` of `hw` over `interconnect`, its matmuls at the
    /// `dtype` peak: the stack's efficiencies (its own for `dtype` where it has one) and
    /// launches, a checkpoint "in `format`" ([`Formats::of_checkpoint`]: 4-bit float experts
    /// beside 16-bit attention for a mixture of experts), and no unpacking cost for weights the
    /// tensor cores read natively.
    #[allow(clippy::too_many_arguments)]
    pub fn with_stack(
        m: &Model,
        hw: &Hardware,
        s: &Stack,
        devices: u64,
        split: Split,
        interconnect: Option<Interconnect>,
        format: WeightFormat,
        dtype: &str,
        kv_bytes: f64,
    ) -> Deployment {
        let f = Formats::of_checkpoint(m, format);
        let native = format.native_peak() == Some(dtype);
        Deployment {
            hardware: hw.clone(),
            devices,
            split,
            interconnect,
            compute_dtype: dtype.to_owned(),
            format: f.dense,
            expert_format: (f.experts != f.dense).then_some(f.experts),
            kv_bytes,
            efficiency: Efficiency {
                compute: s.compute_efficiency(dtype),
                bandwidth: s.bandwidth_efficiency.value,
            },
            launches: s.launches(),
            dequant_ops: s.dequant_ops(f.dense).or(native.then_some(0.0)),
            overhead_s: 0.0,
        }
    }

    /// The weights' formats: `format`, and `expert_format` for the experts where given.
    pub fn formats(&self) -> Formats {
        Formats {
            dense: self.format,
            experts: self.expert_format.unwrap_or(self.format),
        }
    }

    /// The dense peak FLOP/s of the compute dtype.
    pub fn peak_flops(&self) -> Result<f64> {
        self.hardware
            .dense_peak(&self.compute_dtype)
            .ok_or_else(|| CostError::InvalidInput {
                what: "compute dtype",
                reason: format!(
                    "{} has no sourced dense {} peak; it lists {:?}",
                    self.hardware.name,
                    self.compute_dtype,
                    self.hardware.peak_tflops.keys().collect::<Vec<_>>()
                ),
            })
    }

    /// The dense peak the matmuls outside the experts run at: the compute dtype's, except where
    /// the experts alone are in a format of their own (gpt-oss's MXFP4 experts beside bf16
    /// attention), whose other matmuls run at their own format's 16-bit peak.
    pub fn shared_peak_flops(&self) -> Result<f64> {
        let h = &self.hardware;
        match self.expert_format {
            Some(e) if e != self.format && !self.format.is_quantized() => {
                let own = self.format.native_peak().and_then(|p| h.dense_peak(p));
                match own.or(h.dense_peak("bf16")).or(h.dense_peak("fp16")) {
                    Some(p) => Ok(p),
                    None => self.peak_flops(),
                }
            }
            _ => self.peak_flops(),
        }
    }

    /// The dense peak attention's matmuls run at: they multiply activations by the KV cache,
    /// not by the weights, so their type is the cache's: fp8 for one-byte KV where the part has
    /// fp8 tensor cores, else the 16-bit peak (bf16, or fp16), else the compute dtype's.
    pub fn attention_peak_flops(&self) -> Result<f64> {
        let h = &self.hardware;
        let fp8 = if self.kv_bytes <= 1.0 {
            h.dense_peak("fp8")
        } else {
            None
        };
        match fp8.or(h.dense_peak("bf16")).or(h.dense_peak("fp16")) {
            Some(p) => Ok(p),
            None => self.peak_flops(),
        }
    }

    /// Why a prediction is only an upper bound, if it is: a quantized format with no sourced
    /// unpacking cost, or one on a device with no sourced FP32 rate to charge it at.
    pub fn upper_bound_reason(&self) -> Option<String> {
        if !self.format.is_quantized() {
            return None;
        }
        match (self.dequant_ops, self.hardware.dense_peak("fp32")) {
            (None, _) => Some(format!(
                "no sourced unpacking cost for {} weights in this stack: dequantization is not \
                 modelled, so tokens/s is an upper bound",
                self.format.name()
            )),
            (Some(_), None) => Some(format!(
                "{} has no sourced FP32 rate to charge {} unpacking at: tokens/s is an upper bound",
                self.hardware.name,
                self.format.name()
            )),
            _ => None,
        }
    }

    /// How many copies of each KV head the devices hold together: tensor parallelism gives each
    /// device whole KV heads, so over more devices than `m` has KV heads each head is kept (and
    /// read) on `n / kv_heads` of them; in general `n·⌈kv_heads/n⌉ / kv_heads`. MLA's one latent
    /// is held on every device. 1 for one device or a layer split.
    pub fn kv_copies(&self, m: &Model) -> f64 {
        let heads = m.kv_cache_heads();
        match self.split {
            Split::Tensor if self.devices > 1 && heads > 0 => {
                (self.devices * heads.div_ceil(self.devices)) as f64 / heads as f64
            }
            _ => 1.0,
        }
    }

    /// Bytes the deployment stores and moves per logical KV element: [`Deployment::kv_bytes`]
    /// times [`Deployment::kv_copies`].
    pub fn kv_bytes_held(&self, m: &Model) -> f64 {
        self.kv_bytes * self.kv_copies(m)
    }

    /// Weight bytes the devices hold together: the model once, but with expert parallelism
    /// every device also keeps its own copy of the weights that are not experts.
    pub fn weight_bytes_held(&self, m: &Model) -> f64 {
        let all = weight_bytes(m, self.formats());
        match self.split {
            Split::Expert => {
                let shared = all - expert_weight_bytes(m, self.formats());
                all + (self.devices.saturating_sub(1)) as f64 * shared
            }
            _ => all,
        }
    }

    /// Bytes resident while serving `batch` sequences of `context` tokens: the weights the
    /// devices hold ([`Deployment::weight_bytes_held`]) and every sequence's KV cache, its heads
    /// as often as they are held ([`Deployment::kv_bytes_held`]), sliding-window layers only
    /// their window.
    pub fn resident_bytes(&self, m: &Model, batch: u64, context: u64) -> f64 {
        self.weight_bytes_held(m)
            + batch as f64 * m.kv_bytes_per_sequence(context, self.kv_bytes_held(m))
    }

    /// Time of one step doing `work` over `tokens` tokens of `m`: for each kind of kernel
    /// (shared matmuls, experts, attention) `max(FLOPs / (peak·η_f), bytes / BW_achieved) / n`,
    /// summed, then `+ dequant + launches + communication + overhead`. Tensor parallelism
    /// divides the kernels' work by `n` devices and adds two all-reduces per layer; a layer
    /// split divides nothing and adds `n − 1` hops; expert parallelism divides the work by `n`
    /// but has every device read all the shared weights, and adds a gather and a scatter per
    /// MoE layer.
    pub fn step(&self, m: &Model, work: Work, tokens: u64) -> Result<StepTime> {
        if self.devices == 0 {
            return Err(CostError::InvalidInput {
                what: "devices",
                reason: "at least one device".into(),
            });
        }
        let link = match (&self.interconnect, self.devices) {
            (_, 1) => None,
            (Some(l), _) => Some(l),
            (None, _) => {
                return Err(CostError::InvalidInput {
                    what: "interconnect",
                    reason: format!(
                        "{} devices need an interconnect for their all-reduces; known: {}",
                        self.devices,
                        interconnects()
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        };
        let n = self.devices as f64;
        // How many ways each kind of work is divided: tensor parallelism divides all of it;
        // a layer split none (the devices take turns); expert parallelism divides the experts
        // and attention (each device its own sequences) and the shared matmuls' FLOPs, but
        // every device reads all the shared weights.
        let (share, shared_bytes_share) = match self.split {
            Split::Tensor => (n, n),
            Split::Layers => (1.0, 1.0),
            Split::Expert => {
                if m.experts <= 1 || m.experts < self.devices {
                    return Err(CostError::InvalidInput {
                        what: "split",
                        reason: format!(
                            "expert parallelism spreads a mixture-of-experts model's experts over \
                             the devices; {} has {} expert(s) for {} devices: use --split tensor",
                            m.name, m.experts, self.devices
                        ),
                    });
                }
                (n, 1.0)
            }
        };
        let flops_per_s = self.peak_flops()? * self.efficiency.compute;
        let shared_flops_per_s = self.shared_peak_flops()? * self.efficiency.compute;
        let attention_flops_per_s = self.attention_peak_flops()? * self.efficiency.compute;
        let bytes_per_s = self.hardware.achieved_bandwidth(self.efficiency.bandwidth);
        // Each kind of kernel meets its own roofline; the kinds run one after another.
        let roofs = [
            (work.matmuls, shared_bytes_share, shared_flops_per_s),
            (work.experts, share, flops_per_s),
            (work.attention, share, attention_flops_per_s),
        ]
        .map(|(p, bytes_share, rate)| {
            (p.flops / rate / share, p.bytes / bytes_share / bytes_per_s)
        });
        let compute: f64 = roofs.iter().map(|r| r.0).sum();
        let memory: f64 = roofs.iter().map(|r| r.1).sum();
        let roofline: f64 = roofs.iter().map(|r| r.0.max(r.1)).sum();
        let dequant = match (self.dequant_ops, self.hardware.dense_peak("fp32")) {
            (Some(ops), Some(fp32)) if ops > 0.0 => {
                let f = self.formats();
                let weights = weight_bytes_touched(m, f.dense, tokens) * 8.0 / f.dense.bits();
                weights * ops / fp32 / share
            }
            _ => 0.0,
        };
        let comm = match (link, self.split) {
            (None, _) => 0.0,
            (Some(l), Split::Tensor) => {
                allreduces_per_step(m) * l.allreduce_s(self.devices, allreduce_bytes(m, tokens))
            }
            (Some(l), Split::Layers) => {
                (self.devices - 1) as f64 * l.hop_s(allreduce_bytes(m, tokens))
            }
            (Some(l), Split::Expert) => {
                m.layers as f64
                    * (l.allreduce_s(self.devices, allreduce_bytes(m, tokens))
                        + l.alpha_s(self.devices))
            }
        };
        let launch = self.launches.seconds(m);
        Ok(StepTime {
            roofline_s: roofline,
            compute_s: compute,
            memory_s: memory,
            dequant_s: dequant,
            launch_s: launch,
            comm_s: comm,
            overhead_s: self.overhead_s,
            total_s: roofline + dequant + launch + comm + self.overhead_s,
        })
    }
}

/// What serving costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pricing {
    /// Rented by the hour.
    Rented {
        /// USD per device-hour.
        per_device_hour: f64,
    },
    /// Bought and run.
    Owned {
        /// Purchase price per device, USD.
        purchase_usd: f64,
        /// Years to amortize it over.
        lifetime_years: f64,
        /// Average power per device, W.
        power_w: f64,
        /// Data-center power usage effectiveness (≥ 1).
        pue: f64,
        /// Electricity, USD per kWh.
        usd_per_kwh: f64,
        /// Hosting, USD per kW of IT load per year.
        hosting_usd_per_kw_year: f64,
        /// Fraction of hours doing paid work (0 < u ≤ 1): idle hours are paid by the busy ones.
        utilization: f64,
    },
}

const HOURS_PER_YEAR: f64 = 365.25 * 24.0;

impl Pricing {
    /// USD per device per *busy* hour.
    pub fn per_device_hour(&self) -> Result<f64> {
        let positive = |what: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(CostError::InvalidInput {
                    what,
                    reason: format!("{v} must be positive"),
                })
            }
        };
        match *self {
            Pricing::Rented { per_device_hour } => positive("price per hour", per_device_hour),
            Pricing::Owned {
                purchase_usd,
                lifetime_years,
                power_w,
                pue,
                usd_per_kwh,
                hosting_usd_per_kw_year,
                utilization,
            } => {
                positive("purchase price", purchase_usd)?;
                positive("lifetime", lifetime_years)?;
                positive("power", power_w)?;
                positive("electricity price", usd_per_kwh)?;
                if !(pue.is_finite() && pue >= 1.0) {
                    return Err(CostError::InvalidInput {
                        what: "PUE",
                        reason: format!("{pue} must be at least 1"),
                    });
                }
                if !(utilization > 0.0 && utilization <= 1.0) {
                    return Err(CostError::InvalidInput {
                        what: "utilization",
                        reason: format!("{utilization} must be in (0, 1]"),
                    });
                }
                if !(hosting_usd_per_kw_year.is_finite() && hosting_usd_per_kw_year >= 0.0) {
                    return Err(CostError::InvalidInput {
                        what: "hosting",
                        reason: "must not be negative".into(),
                    });
                }
                let kw = power_w / 1000.0;
                let per_hour = purchase_usd / (lifetime_years * HOURS_PER_YEAR)
                    + kw * pue * usd_per_kwh
                    + kw * hosting_usd_per_kw_year / HOURS_PER_YEAR;
                Ok(per_hour / utilization)
            }
        }
    }
}

/// The outputs of the cost model for one batch size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Sequences decoded together.
    pub batch: u64,
    /// Prompt tokens per second (prefill of one prompt).
    pub prefill_tokens_per_s: f64,
    /// Output tokens per second, all sequences together.
    pub decode_tokens_per_s: f64,
    /// Time to first token: the prefill of one prompt, seconds.
    pub ttft_s: f64,
    /// Time per output token seen by one user, seconds.
    pub tpot_s: f64,
    /// Where a decode step's time goes.
    pub step: StepTime,
    /// USD per million input (prompt) tokens, where there is a price.
    pub usd_per_m_input: Option<f64>,
    /// USD per million output tokens, where there is a price.
    pub usd_per_m_output: Option<f64>,
    /// USD per million tokens at 3 input : 1 output, where there is a price.
    pub usd_per_m_blended: Option<f64>,
    /// Joules per output token (from TDP), when the TDP is known.
    pub joules_per_output_token: Option<f64>,
    /// Whether weights and every sequence's KV cache fit in memory (with a 10% reserve).
    pub fits: bool,
}

/// Fraction of device memory kept free for activations and fragmentation.
pub const MEMORY_RESERVE: f64 = 0.1;

/// Estimates serving `m` on `d` at `batch` sequences of `context` tokens (mean), prompts of
/// `prompt` tokens, priced by `pricing` where there is one (speed needs no price).
pub fn estimate(
    m: &Model,
    d: &Deployment,
    pricing: Option<&Pricing>,
    batch: u64,
    context: u64,
    prompt: u64,
) -> Result<Estimate> {
    if batch == 0 || prompt == 0 {
        return Err(CostError::InvalidInput {
            what: "batch and prompt",
            reason: "both must be at least 1".into(),
        });
    }
    let kv = d.kv_bytes_held(m);
    let pre = prefill(m, d.formats(), kv, prompt);
    let ttft = d.step(m, pre, prompt)?.total_s;
    let step = d.step(m, decode_step(m, d.formats(), kv, batch, context), batch)?;
    let tpot = step.total_s;
    let decode_tps = batch as f64 / tpot;
    let prefill_tps = prompt as f64 / ttft;
    let usd_per_hour = match pricing {
        Some(p) => Some(p.per_device_hour()? * d.devices as f64),
        None => None,
    };
    let per_m = |tps: f64| usd_per_hour.map(|h| h / (tps * 3600.0) * 1e6);
    let (input, output) = (per_m(prefill_tps), per_m(decode_tps));
    let memory = d.hardware.memory_gb.value * 1e9 * d.devices as f64;
    Ok(Estimate {
        batch,
        prefill_tokens_per_s: prefill_tps,
        decode_tokens_per_s: decode_tps,
        ttft_s: ttft,
        tpot_s: tpot,
        step,
        usd_per_m_input: input,
        usd_per_m_output: output,
        usd_per_m_blended: input.zip(output).map(|(i, o)| (3.0 * i + o) / 4.0),
        joules_per_output_token: d
            .hardware
            .tdp_w
            .as_ref()
            .map(|p| p.value * d.devices as f64 / decode_tps),
        fits: d.resident_bytes(m, batch, context) <= memory * (1.0 - MEMORY_RESERVE),
    })
}

/// The estimates on the Pareto front of cost per output token against per-user speed (1/TPOT):
/// no other estimate is both cheaper and faster. Estimates that do not fit, or whose TPOT exceeds
/// `max_tpot_s`, are left out first. Without a price, cost per token is the device time per
/// output token (1 / total tokens/s), which orders the same way.
pub fn pareto(estimates: &[Estimate], max_tpot_s: Option<f64>) -> Vec<Estimate> {
    let ok: Vec<&Estimate> = estimates
        .iter()
        .filter(|e| e.fits && max_tpot_s.is_none_or(|t| e.tpot_s <= t))
        .collect();
    let cost = |e: &Estimate| e.usd_per_m_output.unwrap_or(1.0 / e.decode_tokens_per_s);
    ok.iter()
        .filter(|e| {
            !ok.iter().any(|o| {
                cost(o) <= cost(e)
                    && o.tpot_s <= e.tpot_s
                    && (cost(o) < cost(e) || o.tpot_s < e.tpot_s)
            })
        })
        .map(|e| **e)
        .collect()
}

/// USD per million tokens from a measured rate: `price per hour / (tokens/s · 3600) · 10⁶`.
pub fn from_measured(tokens_per_s: f64, usd_per_hour: f64) -> Result<f64> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(tokens_per_s) || !positive(usd_per_hour) {
        return Err(CostError::InvalidInput {
            what: "measured rate or price",
            reason: format!("{tokens_per_s} tokens/s at ${usd_per_hour}/h: both must be positive"),
        });
    }
    Ok(usd_per_hour / (tokens_per_s * 3600.0) * 1e6)
}

#[cfg(test)]
pub(crate) mod tests;
