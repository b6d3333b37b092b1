//! `pertoken cost`'s output: tables, JSON and CSV, with the latency terms and the assumptions.

use pertoken_cost::Model;
use pertoken_cost::estimate::{Deployment, Estimate, Pricing, StepTime};
use pertoken_cost::serving::{Batching, Load, Serving};

use super::{Args, Format};
use crate::cli::CliError;

/// What every output starts with.
pub(super) struct Head<'a> {
    pub model: &'a Model,
    pub d: &'a Deployment,
    pub args: &'a Args,
    pub pricing: Option<&'a Pricing>,
    pub source: &'a str,
}

const NO_PRICE: &str = "no price: speed and energy only. For $ per 1M tokens add --rent \
                        USD_PER_DEVICE_HOUR, or --owned with --purchase USD (or a price_per_hour \
                        in a --hardware-file).";

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.prec$}"))
}

impl Head<'_> {
    fn price(&self) -> Result<Option<f64>, CliError> {
        Ok(match self.pricing {
            Some(p) => Some(p.per_device_hour()?),
            None => None,
        })
    }

    fn json(&self) -> Result<serde_json::Value, CliError> {
        let d = self.d;
        Ok(serde_json::json!({
            "model": self.model.name,
            "hardware": d.hardware.name,
            "devices": d.devices,
            "interconnect": d.interconnect.as_ref().map(|i| i.name.clone()),
            "weights": self.args.weights,
            "stack": super::stack_name(self.args, &self.d.hardware),
            "figures": self.source,
            "efficiency": { "compute": d.efficiency.compute, "bandwidth": d.efficiency.bandwidth },
            "launch_us": d.launches.per_kernel_s * 1e6,
            "kernels_per_step": d.launches.kernels(self.model),
            "upper_bound": d.upper_bound_reason(),
            "usd_per_device_hour": self.price()?,
        }))
    }

    fn table(&self) -> Result<(), CliError> {
        let d = self.d;
        println!(
            "{} on {}× {}{} ({} weights), {}",
            self.model.name,
            d.devices,
            d.hardware.name,
            d.interconnect
                .as_ref()
                .map_or(String::new(), |i| format!(" over {}", i.name)),
            self.args.weights,
            match self.price()? {
                Some(p) => format!("${p:.2}/device-hour"),
                None => "no price".into(),
            }
        );
        println!(
            "efficiency {:.2} compute / {:.2} bandwidth{}; launches: {:.0} per step at {:.2} us \
             ({})",
            d.efficiency.compute,
            d.efficiency.bandwidth,
            d.hardware
                .measured_bandwidth_gbs
                .as_ref()
                .map_or(String::new(), |m| format!(
                    " (measured {} GB/s used)",
                    m.value
                )),
            d.launches.kernels(self.model),
            d.launches.per_kernel_s * 1e6,
            self.source
        );
        if let Some(why) = d.upper_bound_reason() {
            println!("upper bound: {why}");
        }
        Ok(())
    }

    fn footer(&self) {
        if self.pricing.is_none() {
            println!("{NO_PRICE}");
        }
        if self.d.hardware.tdp_w.is_none() {
            println!(
                "J/token needs a power figure: {} has no sourced TDP.",
                self.d.hardware.name
            );
        }
    }
}

fn terms(s: &StepTime) -> String {
    format!(
        "roofline {:.3} ms (compute {:.3}, memory {:.3}), dequant {:.3}, launches {:.3}, \
         communication {:.3} ms: {}-bound",
        s.roofline_s * 1e3,
        s.compute_s * 1e3,
        s.memory_s * 1e3,
        s.dequant_s * 1e3,
        s.launch_s * 1e3,
        s.comm_s * 1e3,
        s.bound()
    )
}

pub(super) fn estimates(h: &Head, all: &[Estimate], shown: &[Estimate]) -> Result<(), CliError> {
    let args = h.args;
    match args.format {
        Format::Json => {
            let mut out = h.json()?;
            out["context"] = args.context.into();
            out["prompt"] = args.prompt.into();
            out["estimates"] = serde_json::to_value(shown)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Csv => {
            println!(
                "batch,fits,ttft_s,tpot_s,decode_tokens_per_s,prefill_tokens_per_s,usd_per_m_input,usd_per_m_output,usd_per_m_blended,joules_per_output_token,launch_s,comm_s,dequant_s"
            );
            let o = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
            for e in shown {
                println!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    e.batch,
                    e.fits,
                    e.ttft_s,
                    e.tpot_s,
                    e.decode_tokens_per_s,
                    e.prefill_tokens_per_s,
                    o(e.usd_per_m_input),
                    o(e.usd_per_m_output),
                    o(e.usd_per_m_blended),
                    o(e.joules_per_output_token),
                    e.step.launch_s,
                    e.step.comm_s,
                    e.step.dequant_s
                );
            }
        }
        Format::Table => {
            h.table()?;
            println!(
                "{}-token context, {}-token prompts",
                args.context, args.prompt
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
            for e in shown {
                println!(
                    "{:>6} {:>5} {:>9.2} {:>9.2} {:>11.1} {:>11.1} {:>9} {:>9} {:>9} {:>8}",
                    e.batch,
                    if e.fits { "yes" } else { "NO" },
                    e.ttft_s * 1e3,
                    e.tpot_s * 1e3,
                    e.decode_tokens_per_s,
                    e.prefill_tokens_per_s,
                    opt(e.usd_per_m_input, 4),
                    opt(e.usd_per_m_output, 4),
                    opt(e.usd_per_m_blended, 4),
                    opt(e.joules_per_output_token, 3)
                );
            }
            if let Some(first) = shown.first() {
                println!(
                    "decode step at batch {}: {}",
                    first.batch,
                    terms(&first.step)
                );
            }
            if shown.iter().any(|e| !e.fits) {
                println!(
                    "NO = weights plus every sequence's KV cache exceed memory (less a 10% reserve)."
                );
            }
            let dropped = all.iter().filter(|e| !e.fits).count();
            if args.sweep && dropped > 0 {
                println!(
                    "{dropped} batch size(s) left out of the sweep: they do not fit in memory."
                );
            }
            h.footer();
        }
    }
    Ok(())
}

pub(super) fn serving(h: &Head, load: &Load, s: &Serving) -> Result<(), CliError> {
    match h.args.format {
        Format::Json => {
            let mut out = h.json()?;
            out["isl"] = load.isl.into();
            out["osl"] = load.osl.into();
            out["serving"] = serde_json::to_value(s)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Csv => {
            println!(
                "isl,osl,batch,limited_by,output_tokens_per_s,input_tokens_per_s,ttft_s,tpot_s,usd_per_m_output,joules_per_output_token"
            );
            println!(
                "{},{},{},{},{},{},{},{},{},{}",
                load.isl,
                load.osl,
                s.batch,
                s.limited_by,
                s.output_tokens_per_s,
                s.input_tokens_per_s,
                s.ttft_s,
                s.tpot_s,
                s.usd_per_m_output.map_or(String::new(), |v| v.to_string()),
                s.joules_per_output_token
                    .map_or(String::new(), |v| v.to_string())
            );
        }
        Format::Table => {
            h.table()?;
            println!(
                "serving at full load, {} in / {} out per request, {}:",
                load.isl,
                load.osl,
                match load.batching {
                    Batching::Continuous => "continuous batching".to_owned(),
                    Batching::Static { batch } => format!("a static batch of {batch}"),
                }
            );
            println!(
                "  {} sequences in flight (bounded by {})",
                s.batch, s.limited_by
            );
            println!(
                "  output {:.1} tok/s total ({:.1} per device), input {:.1} tok/s",
                s.output_tokens_per_s,
                s.output_tokens_per_s / h.d.devices as f64,
                s.input_tokens_per_s
            );
            println!(
                "  TTFT {:.1} ms, TPOT {:.2} ms ({:.1} tok/s per user)",
                s.ttft_s * 1e3,
                s.tpot_s * 1e3,
                1.0 / s.tpot_s
            );
            println!(
                "  $/1M output tokens {}, J per output token {}",
                opt(s.usd_per_m_output, 4),
                opt(s.joules_per_output_token, 3)
            );
            println!("  step: {}", terms(&s.step));
            println!("assumptions:");
            for a in &s.assumptions {
                println!("  - {a}");
            }
            h.footer();
        }
    }
    Ok(())
}
