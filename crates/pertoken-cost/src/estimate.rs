//! From work to time, money and energy: a roofline per phase, tensor parallelism, and prices.

use crate::account::{WeightFormat, Work, decode_step, prefill, resident_bytes};
use crate::{CostError, Hardware, Model, Result};

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

/// How a model is served.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The accelerator.
    pub hardware: Hardware,
    /// Devices in tensor parallel (1 for one device).
    pub devices: u64,
    /// Interconnect bandwidth per device for all-reduces, GB/s (needed when `devices > 1`).
    pub interconnect_gbs: Option<f64>,
    /// Which peak rate applies (`bf16`, `fp16`, `fp8`, `fp32`).
    pub compute_dtype: String,
    /// Weight storage.
    pub format: WeightFormat,
    /// Bytes per KV-cache element.
    pub kv_bytes: f64,
    /// Kernel efficiencies.
    pub efficiency: Efficiency,
    /// Fixed time per step (launches, scheduling), seconds.
    pub overhead_s: f64,
}

impl Deployment {
    fn peak_flops(&self) -> Result<f64> {
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

    /// Seconds for `work` on this deployment, plus `allreduce_bytes` of all-reduce traffic:
    /// `max(FLOPs / (peak·η_f), bytes / (BW·η_bw)) / devices + all-reduce + overhead`.
    pub fn seconds(&self, work: Work, allreduce_bytes: f64) -> Result<f64> {
        if self.devices == 0 {
            return Err(CostError::InvalidInput {
                what: "devices",
                reason: "at least one device".into(),
            });
        }
        let n = self.devices as f64;
        let compute = work.flops / (self.peak_flops()? * self.efficiency.compute) / n;
        let memory =
            work.bytes / (self.hardware.bandwidth_gbs.value * 1e9 * self.efficiency.bandwidth) / n;
        let comm = if self.devices > 1 {
            let link = self
                .interconnect_gbs
                .ok_or_else(|| CostError::InvalidInput {
                    what: "interconnect",
                    reason:
                        "tensor parallelism over several devices needs the interconnect bandwidth"
                            .into(),
                })?;
            // Ring all-reduce: each device sends and receives 2·(n−1)/n of the data.
            2.0 * (n - 1.0) / n * allreduce_bytes / (link * 1e9)
        } else {
            0.0
        };
        Ok(compute.max(memory) + comm + self.overhead_s)
    }
}

/// Two all-reduces per layer (after attention and after the MLP) of `tokens` activations in f16.
fn allreduce_bytes(m: &Model, tokens: u64) -> f64 {
    2.0 * (m.layers * tokens * m.hidden) as f64 * 2.0
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
    /// USD per million input (prompt) tokens.
    pub usd_per_m_input: f64,
    /// USD per million output tokens.
    pub usd_per_m_output: f64,
    /// USD per million tokens at 3 input : 1 output.
    pub usd_per_m_blended: f64,
    /// Joules per output token (from TDP), when the TDP is known.
    pub joules_per_output_token: Option<f64>,
    /// Whether weights and every sequence's KV cache fit in memory (with a 10% reserve).
    pub fits: bool,
}

/// Fraction of device memory kept free for activations and fragmentation.
pub const MEMORY_RESERVE: f64 = 0.1;

/// Estimates serving `m` on `d` at `batch` sequences of `context` tokens (mean), prompts of
/// `prompt` tokens, priced by `pricing`.
pub fn estimate(
    m: &Model,
    d: &Deployment,
    pricing: &Pricing,
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
    let pre = prefill(m, d.format, d.kv_bytes, prompt);
    let ttft = d.seconds(pre, allreduce_bytes(m, prompt))?;
    let step = decode_step(m, d.format, d.kv_bytes, batch, context);
    let tpot = d.seconds(step, allreduce_bytes(m, batch))?;
    let decode_tps = batch as f64 / tpot;
    let prefill_tps = prompt as f64 / ttft;
    let usd_per_hour = pricing.per_device_hour()? * d.devices as f64;
    let per_m = |tps: f64| usd_per_hour / (tps * 3600.0) * 1e6;
    let (input, output) = (per_m(prefill_tps), per_m(decode_tps));
    let memory = d.hardware.memory_gb.value * 1e9 * d.devices as f64;
    Ok(Estimate {
        batch,
        prefill_tokens_per_s: prefill_tps,
        decode_tokens_per_s: decode_tps,
        ttft_s: ttft,
        tpot_s: tpot,
        usd_per_m_input: input,
        usd_per_m_output: output,
        usd_per_m_blended: (3.0 * input + output) / 4.0,
        joules_per_output_token: d
            .hardware
            .tdp_w
            .as_ref()
            .map(|p| p.value * d.devices as f64 / decode_tps),
        fits: resident_bytes(m, d.format, d.kv_bytes, batch, context)
            <= memory * (1.0 - MEMORY_RESERVE),
    })
}

/// The estimates on the Pareto front of cost per output token against per-user speed (1/TPOT):
/// no other estimate is both cheaper and faster. Estimates that do not fit, or whose TPOT exceeds
/// `max_tpot_s`, are left out first.
pub fn pareto(estimates: &[Estimate], max_tpot_s: Option<f64>) -> Vec<Estimate> {
    let ok: Vec<&Estimate> = estimates
        .iter()
        .filter(|e| e.fits && max_tpot_s.is_none_or(|t| e.tpot_s <= t))
        .collect();
    ok.iter()
        .filter(|e| {
            !ok.iter().any(|o| {
                o.usd_per_m_output <= e.usd_per_m_output
                    && o.tpot_s <= e.tpot_s
                    && (o.usd_per_m_output < e.usd_per_m_output || o.tpot_s < e.tpot_s)
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
mod tests {
    use super::*;
    use crate::Catalog;

    fn deployment(hw: &str) -> Deployment {
        Deployment {
            hardware: Catalog::builtin().hardware(hw).unwrap().clone(),
            devices: 1,
            interconnect_gbs: None,
            compute_dtype: "bf16".into(),
            format: WeightFormat::F16,
            kv_bytes: 2.0,
            efficiency: Efficiency::default(),
            overhead_s: 0.0,
        }
    }

    #[test]
    fn roofline_takes_the_slower_side() {
        let d = deployment("h100-sxm");
        // 1e12 FLOPs at 989.5e12 · 0.5 = 2.0212 ms; 1e9 bytes at 3350e9 · 0.8 = 0.3731 ms.
        let t = d
            .seconds(
                Work {
                    flops: 1e12,
                    bytes: 1e9,
                },
                0.0,
            )
            .unwrap();
        assert!((t - 1e12 / (989.5e12 * 0.5)).abs() < 1e-12);
        let t = d
            .seconds(
                Work {
                    flops: 1e9,
                    bytes: 1e10,
                },
                0.0,
            )
            .unwrap();
        assert!((t - 1e10 / (3350e9 * 0.8)).abs() < 1e-12);
    }

    #[test]
    fn tensor_parallel_divides_work_and_adds_all_reduce() {
        let mut d = deployment("h100-sxm");
        d.devices = 4;
        assert!(
            d.seconds(
                Work {
                    flops: 1.0,
                    bytes: 1.0
                },
                1.0
            )
            .is_err()
        );
        d.interconnect_gbs = Some(450.0);
        // Memory-bound 4e10 bytes over 4 devices: 1e10 / 2680e9; all-reduce 1e6 bytes:
        // 2 · 3/4 · 1e6 / 450e9.
        let t = d
            .seconds(
                Work {
                    flops: 0.0,
                    bytes: 4e10,
                },
                1e6,
            )
            .unwrap();
        let want = 1e10 / (3350e9 * 0.8) + 1.5 * 1e6 / 450e9;
        assert!((t - want).abs() < 1e-12, "{t} vs {want}");
    }

    #[test]
    fn owned_pricing_by_hand() {
        let p = Pricing::Owned {
            purchase_usd: 30_000.0,
            lifetime_years: 4.0,
            power_w: 700.0,
            pue: 1.25,
            usd_per_kwh: 0.10,
            hosting_usd_per_kw_year: 1_000.0,
            utilization: 0.5,
        };
        // 30000 / 35064 h = 0.855578; 0.7 kW · 1.25 · 0.10 = 0.0875; 0.7 · 1000 / 8766 = 0.079854.
        // Sum 1.022932 per hour; at half utilization, 2.045865 per busy hour.
        let h = p.per_device_hour().unwrap();
        assert!((h - 2.045865).abs() < 1e-5, "{h}");
        assert!(
            Pricing::Rented {
                per_device_hour: 0.0
            }
            .per_device_hour()
            .is_err()
        );
        assert!(
            Pricing::Rented {
                per_device_hour: -2.0
            }
            .per_device_hour()
            .is_err()
        );
    }

    #[test]
    fn efficiency_from_measured_rates() {
        let hw = Catalog::builtin().hardware("h100-sxm").unwrap().clone();
        let e = Efficiency::from_rates(&hw, "bf16", 494.75e12, 2680e9).unwrap();
        assert!((e.compute - 0.5).abs() < 1e-12 && (e.bandwidth - 0.8).abs() < 1e-12);
        assert!(Efficiency::from_rates(&hw, "bf16", 2e15, 1e12).is_err());
        assert!(Efficiency::from_rates(&hw, "int4", 1e12, 1e12).is_err());
    }

    #[test]
    fn from_measured_by_hand() {
        // 1000 tokens/s at $3.60/h: 3.6e6 tokens per hour → $1 per million.
        assert!((from_measured(1000.0, 3.6).unwrap() - 1.0).abs() < 1e-12);
        assert!(from_measured(0.0, 3.6).is_err());
    }

    #[test]
    fn batch_trades_speed_for_cost() {
        let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
        let d = deployment("h100-sxm");
        let price = Pricing::Rented {
            per_device_hour: 3.0,
        };
        let es: Vec<Estimate> = [1, 8, 64, 512]
            .iter()
            .map(|&b| estimate(&m, &d, &price, b, 2048, 512).unwrap())
            .collect();
        // Batch 1 is bandwidth-bound: about 16.1 GB of weights at 2680 GB/s → ~6 ms per token.
        assert!((es[0].tpot_s * 1e3 - 6.0).abs() < 0.3, "{}", es[0].tpot_s);
        for w in es.windows(2) {
            assert!(w[1].usd_per_m_output < w[0].usd_per_m_output);
            assert!(w[1].tpot_s >= w[0].tpot_s);
        }
        // 512 sequences of 2048 tokens need 137 GB of KV cache: does not fit in 80 GB.
        assert!(!es[3].fits);
        let front = pareto(&es, None);
        assert_eq!(front.len(), 3);
        assert_eq!(pareto(&es, Some(0.007)).len(), 2);
        assert!(es[0].joules_per_output_token.is_some());
    }
}
