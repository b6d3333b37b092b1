//! A server at full load: many requests of `isl` input and `osl` output tokens in flight.
//!
//! Two schedules:
//! - **continuous batching** (vLLM, TensorRT-LLM's in-flight batching, SGLang): in steady state a
//!   step decodes one token for each of `B` sequences and prefills `B·isl/osl` prompt tokens in
//!   chunks that share the step (each finished sequence is replaced by a new one, whose prompt
//!   must be prefilled once per `osl` output tokens). `B` is the largest batch whose KV caches fit
//!   beside the weights, capped by a batch limit and by a latency limit on the step (TPOT);
//! - **static batching** (TensorRT-LLM's `gptSessionBenchmark`, vLLM's `benchmark_latency`): `B`
//!   prompts are prefilled together, then `osl` decode steps run with the context growing.
//!
//! At large batch the matmuls' FLOPs, not the weights' bytes, bound a step: the roofline's
//! compute side takes over, and the latency terms shrink next to it.

use crate::account::{
    Part, Work, decode_attention, decode_step, matmul_work, prefill_attention,
    prefill_attention_flops,
};
use crate::estimate::{Deployment, MEMORY_RESERVE, Pricing, StepTime};
use crate::{CostError, Model, Result};

/// How requests are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Continuous (in-flight) batching with chunked prefill.
    Continuous,
    /// A fixed batch: prefill all prompts, then decode them together.
    Static {
        /// Sequences in the batch.
        batch: u64,
    },
}

/// The load a server is held at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Input (prompt) tokens per request.
    pub isl: u64,
    /// Output tokens per request.
    pub osl: u64,
    /// The schedule.
    pub batching: Batching,
    /// The server's batch limit (`max_num_seqs`, `max_batch_size`), if any.
    pub max_batch: Option<u64>,
    /// A latency limit: the largest time per output token allowed, seconds.
    pub max_tpot_s: Option<f64>,
    /// A finite run (continuous batching): this many requests, all queued at the start, as
    /// `trtllm-bench --num_requests` runs them; throughput is their tokens over the time until
    /// the last finishes, tail included. `None`: the steady state of an endless queue.
    pub requests: Option<u64>,
}

/// What a server delivers at that load.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Serving {
    /// Sequences in flight.
    pub batch: u64,
    /// What bounds the batch: `KV memory`, `batch limit`, `latency limit` or `given`.
    pub limited_by: &'static str,
    /// A representative step (continuous: the steady-state step; static: the mean decode step).
    pub step: StepTime,
    /// Time per output token seen by one user, seconds.
    pub tpot_s: f64,
    /// Time to first token, seconds.
    pub ttft_s: f64,
    /// Output tokens per second, all devices together.
    pub output_tokens_per_s: f64,
    /// Input tokens per second prefilled at the same time.
    pub input_tokens_per_s: f64,
    /// USD per million output tokens, all the devices' time charged to output, where priced.
    pub usd_per_m_output: Option<f64>,
    /// Joules per output token at the devices' TDP, where known.
    pub joules_per_output_token: Option<f64>,
    /// The assumptions behind the figures, in words.
    pub assumptions: Vec<String>,
}

/// KV bytes each admitted sequence holds: its whole `isl + osl` tokens, reserved on admission
/// (TensorRT-LLM's default scheduler guarantees no eviction this way).
fn kv_per_sequence(m: &Model, d: &Deployment, load: &Load) -> f64 {
    m.kv_bytes_per_sequence(load.isl + load.osl, d.kv_bytes_held(m))
}

/// The largest batch whose KV caches fit beside the weights in all devices' memory, less the
/// reserve.
pub fn kv_bound(m: &Model, d: &Deployment, load: &Load) -> u64 {
    let memory = d.hardware.memory_gb.value * 1e9 * d.devices as f64 * (1.0 - MEMORY_RESERVE);
    let free = memory - d.weight_bytes_held(m);
    if free <= 0.0 {
        return 0;
    }
    (free / kv_per_sequence(m, d, load)).floor() as u64
}

/// Work of the steady-state continuous-batching step at batch `b`: `b` decode tokens at the
/// mean context `isl + osl/2`, and `b·isl/osl` prompt tokens prefilled in chunks, each attending
/// on average to half its prompt.
pub fn continuous_step_work(m: &Model, d: &Deployment, load: &Load, b: u64) -> (Work, u64) {
    let prefill_tokens = (b as f64 * load.isl as f64 / load.osl as f64).round() as u64;
    step_work(m, d, load, b, prefill_tokens, load.isl as f64 / 2.0)
}

/// Tokens one step holds at most: a common `max_num_batched_tokens` (vLLM's and SGLang's
/// defaults vary by version and GPU). A new prompt is prefilled in chunks of what the decode
/// rows leave of it.
pub const STEP_TOKEN_BUDGET: u64 = 8192;

/// Work of a step of `b` decode rows and `prefill_tokens` prompt tokens whose keys average
/// `keys` each.
fn step_work(
    m: &Model,
    d: &Deployment,
    load: &Load,
    b: u64,
    prefill_tokens: u64,
    keys: f64,
) -> (Work, u64) {
    let ctx = load.isl + load.osl / 2;
    let kv_bytes = d.kv_bytes_held(m);
    // The matmuls run once over every token of the step (more experts touched); attention
    // reads the decode sequences' caches and writes the prompt tokens' keys and values.
    let (matmuls, experts) = matmul_work(m, d.formats(), b + prefill_tokens);
    let chunk = Part {
        flops: prefill_tokens as f64 * prefill_attention_flops(m, keys),
        bytes: prefill_tokens as f64 * m.kv_bytes_per_token(kv_bytes),
    };
    let work = Work {
        matmuls,
        experts,
        attention: decode_attention(m, kv_bytes, b, ctx).plus(chunk),
    };
    (work, b + prefill_tokens)
}

/// Time to first token at batch `b`: the prompt's chunks, each in a step beside the `b` decode
/// rows and at most [`STEP_TOKEN_BUDGET`] tokens in all.
fn ttft(m: &Model, d: &Deployment, load: &Load, b: u64) -> Result<f64> {
    let chunk = STEP_TOKEN_BUDGET.saturating_sub(b).max(1).min(load.isl);
    let steps = load.isl.div_ceil(chunk);
    let (w, tokens) = step_work(m, d, load, b, chunk, load.isl as f64 / 2.0);
    Ok(steps as f64 * d.step(m, w, tokens)?.total_s)
}

fn invalid(reason: String) -> CostError {
    CostError::InvalidInput {
        what: "load",
        reason,
    }
}

/// The server's throughput and latency at `load`, priced by `pricing` where there is one.
pub fn serve(m: &Model, d: &Deployment, load: &Load, pricing: Option<&Pricing>) -> Result<Serving> {
    if load.isl == 0 || load.osl == 0 {
        return Err(invalid(
            "input and output lengths must be at least 1".into(),
        ));
    }
    let bound = kv_bound(m, d, load);
    let mut assumptions = vec![
        format!(
            "each sequence holds KV for its {} + {} tokens in {}-byte elements, reserved when it \
             is admitted; weights plus KV fill device memory less a {:.0}% reserve",
            load.isl,
            load.osl,
            d.kv_bytes,
            MEMORY_RESERVE * 100.0
        ),
        format!(
            "compute-bound steps reach {:.2} of the dense {} peak, memory-bound ones {:.2} of \
             bandwidth (or the part's measured bandwidth)",
            d.efficiency.compute, d.compute_dtype, d.efficiency.bandwidth
        ),
        "each kind of kernel (shared matmuls, experts, attention over the KV caches) meets its \
         own roofline, and the kinds run one after another: the step's roofline is their sum"
            .to_owned(),
        "requests never wait for admission: the queue is always full (offline, maximum load)"
            .to_owned(),
    ];
    if d.split == crate::estimate::Split::Expert {
        assumptions.push(format!(
            "expert parallel over {} devices with data-parallel attention: each holds 1/{} of \
             the experts and its own copy of the other weights, runs attention for its own \
             sequences, and gathers and scatters the step's activations around each MoE layer; \
             the experts' load is taken as balanced",
            d.devices, d.devices
        ));
    }
    if d.kv_copies(m) > 1.0 {
        assumptions.push(format!(
            "tensor parallel over {} devices with {} KV heads: each KV head's cache is held and \
             read on {:.0} devices",
            d.devices,
            m.kv_heads,
            d.kv_copies(m)
        ));
    }
    let (batch, limited_by, step, ttft, tpot, out_tps, in_tps) = match load.batching {
        Batching::Static { batch } => {
            if batch == 0 {
                return Err(invalid("a static batch of at least 1".into()));
            }
            if batch > bound {
                return Err(invalid(format!(
                    "{batch} sequences of {} tokens do not fit in memory (at most {bound})",
                    load.isl + load.osl
                )));
            }
            assumptions.push(format!(
                "static batch: {batch} prompts prefilled in one step, then {} decode steps with \
                 the context growing from {}",
                load.osl, load.isl
            ));
            let kv = d.kv_bytes_held(m);
            let one = prefill_attention(m, kv, load.isl);
            let tokens = batch * load.isl;
            let (matmuls, experts) = matmul_work(m, d.formats(), tokens);
            let pre = Work {
                matmuls,
                experts,
                attention: Part {
                    flops: one.flops * batch as f64,
                    bytes: one.bytes * batch as f64,
                },
            };
            let ttft = d.step(m, pre, tokens)?.total_s;
            let mut decode_s = 0.0;
            let mut mean = None;
            for k in 0..load.osl {
                let w = decode_step(m, d.formats(), kv, batch, load.isl + k);
                let s = d.step(m, w, batch)?;
                decode_s += s.total_s;
                if k == load.osl / 2 {
                    mean = Some(s);
                }
            }
            let total = ttft + decode_s;
            let out = (batch * load.osl) as f64 / total;
            let step = mean.ok_or_else(|| invalid("no decode step".into()))?;
            (
                batch,
                "given",
                step,
                ttft,
                decode_s / load.osl as f64,
                out,
                (batch * load.isl) as f64 / total,
            )
        }
        Batching::Continuous => {
            if bound == 0 {
                return Err(invalid(format!(
                    "the weights of {} leave no memory for KV caches on {}× {}",
                    m.name, d.devices, d.hardware.name
                )));
            }
            let (mut b, mut why) = (bound, "KV memory");
            if let Some(cap) = load.max_batch
                && cap < b
            {
                (b, why) = (cap.max(1), "batch limit");
            }
            let time = |b: u64| -> Result<StepTime> {
                let (w, tokens) = continuous_step_work(m, d, load, b);
                d.step(m, w, tokens)
            };
            if let Some(limit) = load.max_tpot_s
                && time(b)?.total_s > limit
            {
                if time(1)?.total_s > limit {
                    return Err(invalid(format!(
                        "even one sequence takes {:.2} ms per step, over the {:.2} ms limit",
                        time(1)?.total_s * 1e3,
                        limit * 1e3
                    )));
                }
                let (mut lo, mut hi) = (1, b);
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2;
                    if time(mid)?.total_s <= limit {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                (b, why) = (lo, "latency limit");
            }
            assumptions.push(format!(
                "continuous batching: each step decodes {b} sequences at a mean context of {} and \
                 prefills {:.0} prompt tokens in chunks that share it (one prompt per {} output \
                 tokens)",
                load.isl + load.osl / 2,
                b as f64 * load.isl as f64 / load.osl as f64,
                load.osl
            ));
            assumptions.push(format!(
                "time to first token: the prompt in chunks of what the {b} decode rows leave of a \
                 {STEP_TOKEN_BUDGET}-token step, one step each, without queueing"
            ));
            let step = time(b)?;
            let ttft = ttft(m, d, load, b)?;
            let mut out = b as f64 / step.total_s;
            if let Some(n) = load.requests {
                if n == 0 {
                    return Err(invalid("a finite run needs at least 1 request".into()));
                }
                // Requests of one length start and finish together: waves of b sequences, each
                // osl steps long, then a last wave of what is left, at a smaller batch.
                let (full, rest) = (n / b, n % b);
                let mut secs = full as f64 * load.osl as f64 * step.total_s;
                if rest > 0 {
                    secs += load.osl as f64 * time(rest)?.total_s;
                }
                out = (n * load.osl) as f64 / secs;
                assumptions.push(format!(
                    "a finite run of {n} requests of one length: {full} wave(s) of {b} \
                     sequences{}; throughput counts the time to the last token",
                    if rest > 0 {
                        format!(", then one of {rest}")
                    } else {
                        String::new()
                    }
                ));
            }
            (
                b,
                why,
                step,
                ttft,
                step.total_s,
                out,
                out * load.isl as f64 / load.osl as f64,
            )
        }
    };
    let per_hour = match pricing {
        Some(p) => Some(p.per_device_hour()? * d.devices as f64),
        None => None,
    };
    Ok(Serving {
        batch,
        limited_by,
        step,
        tpot_s: tpot,
        ttft_s: ttft,
        output_tokens_per_s: out_tps,
        input_tokens_per_s: in_tps,
        usd_per_m_output: per_hour.map(|h| h / (out_tps * 3600.0) * 1e6),
        joules_per_output_token: d
            .hardware
            .tdp_w
            .as_ref()
            .map(|p| p.value * d.devices as f64 / out_tps),
        assumptions,
    })
}

#[cfg(test)]
mod tests;
