//! Calibration from a `pertoken bench --json` report.

use pertoken_cost::CostError;
use pertoken_cost::estimate::Efficiency;

use crate::cli::CliError;

/// What a bench report measured: efficiencies, and from the model bench's whole steps the fixed
/// time a step spends beyond its bytes.
pub(super) struct Calibration {
    pub efficiency: Efficiency,
    /// Seconds per generation step beyond its bytes at the measured copy bandwidth, and the
    /// step's kernel launches where the report gives them.
    pub step_overhead: Option<(f64, Option<f64>)>,
    /// What was read, in words.
    pub describe: String,
}

/// Calibration from a `pertoken bench --json` report. The model bench's whole steps (rows
/// `model_prompt`, `model_generation`): FLOP/s of prompt steps over the dense peak; for
/// generation, the bandwidth its bound was computed at (`bound_tokens_per_second` × bytes per
/// token) over the datasheet's, and the rest of the step, `1/tokens_per_second −
/// 1/bound_tokens_per_second`, as fixed time, per kernel where the row has
/// `launches_per_step`. The kernels bench's rows (matmul and prefill linears for FLOP/s, decode
/// linears for bytes/s) give the efficiencies alone.
pub(super) fn calibration_from_report(
    path: &std::path::Path,
    hw: &pertoken_cost::Hardware,
    dtype: &str,
) -> Result<Calibration, CliError> {
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
    if doc.get("kind").and_then(|v| v.as_str()) == Some("serve") {
        return serving_calibration(path, &doc, hw, dtype);
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
        // A decode linear's rate from memory where the report has it (a model's weights do
        // not sit in a cache), else its rate over one repeated w.
        .filter_map(|r| num(r, "cold_bytes_per_s").or_else(|| num(r, "bytes_per_s")))
        .fold(0.0f64, f64::max);
    // The model bench's generation steps: the copy bandwidth behind their bound, and the fixed
    // time beyond it.
    let whole = rows
        .iter()
        .filter(verified)
        .filter(|r| is(r, "model_generation"))
        .filter_map(|r| {
            let tps = num(r, "tokens_per_second")?;
            let bound = num(r, "bound_tokens_per_second")?;
            let per_token = num(r, "bytes_per_s")? / tps;
            Some((
                bound * per_token,
                (1.0 / tps - 1.0 / bound).max(0.0),
                num(r, "launches_per_step"),
            ))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let bytes = whole.map_or(bytes, |w| w.0);
    if flops <= 0.0 || bytes <= 0.0 {
        return Err(format!(
            "--bench-report {}: needs verified matmul or prefill rows and decode rows (M ≤ 16)",
            path.display()
        )
        .into());
    }
    let efficiency = Efficiency::from_rates(hw, dtype, flops, bytes).map_err(|e| {
        CliError::from(format!(
            "--bench-report {}: {e}; was the bench run on {}?",
            path.display(),
            hw.name
        ))
    })?;
    let describe = match whole {
        Some((_, over, Some(n))) => format!(
            "{}: whole measured steps; {:.3} ms per step beyond the bytes over {n:.0} launches = \
             {:.2} us per launch",
            path.display(),
            over * 1e3,
            over / n * 1e6
        ),
        Some((_, over, None)) => format!(
            "{}: whole measured steps; {:.3} ms per step beyond the bytes, applied as a fixed \
             per-step overhead (the report has no launches_per_step, so it is not rescaled to \
             other models)",
            path.display(),
            over * 1e3
        ),
        None => format!("{}: kernel rates (no whole steps)", path.display()),
    };
    Ok(Calibration {
        efficiency,
        step_overhead: whole.map(|w| (w.1, w.2)),
        describe,
    })
}

/// Calibration from a `pertoken bench --serve --json` report: the cost model's calibration
/// that the serving bench fitted to its measured steps (the copy bandwidth, the FLOP rate of
/// steps of many rows, the fixed time of decode steps), as efficiencies of `hw` and a per-step
/// overhead.
fn serving_calibration(
    path: &std::path::Path,
    doc: &serde_json::Value,
    hw: &pertoken_cost::Hardware,
    dtype: &str,
) -> Result<Calibration, CliError> {
    let runs = doc
        .get("runs")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let verified =
        |r: &&serde_json::Value| r.get("verified").and_then(|v| v.as_bool()) == Some(true);
    let cal = runs
        .iter()
        .filter(verified)
        .find_map(|r| r.get("calibration").filter(|c| c.is_object()))
        .ok_or_else(|| {
            format!(
                "--bench-report {}: a serving report with no verified run to calibrate from",
                path.display()
            )
        })?;
    let num = |k: &str| {
        cal.get(k)
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("--bench-report {}: calibration has no {k}", path.display()))
    };
    let (flops, bytes, overhead) = (num("flops_per_s")?, num("bytes_per_s")?, num("overhead_s")?);
    let steps: usize = runs
        .iter()
        .filter(verified)
        .filter_map(|r| r.get("steps").and_then(|s| s.as_array()).map(Vec::len))
        .sum();
    let efficiency = Efficiency::from_rates(hw, dtype, flops, bytes).map_err(|e| {
        CliError::from(format!(
            "--bench-report {}: {e}; was the serving bench run on {}?",
            path.display(),
            hw.name
        ))
    })?;
    Ok(Calibration {
        efficiency,
        step_overhead: Some((overhead, None)),
        describe: format!(
            "{}: a serving run's {steps} measured steps ({:.1} GFLOP/s, {:.2} GB/s, {:.3} ms per \
             step beyond the roofline)",
            path.display(),
            flops * 1e-9,
            bytes * 1e-9,
            overhead * 1e3
        ),
    })
}
