//! The decode tables: one token over a KV cache at each `--decode-context`, in f32 and f16, as
//! K/V bytes per second against the copy bandwidth, and with `--decode-plans` every candidate
//! plan of the team kernel.

use pertoken_attention::{AttentionTuner, Kernel as AttentionKernel};
use pertoken_gpu::{DType, Error as GpuError, Gpu};

use super::{Args, CliError, attention, attention_heads, shown};

pub(super) fn bench_decode(
    gpu: &Gpu,
    args: &Args,
    copy_rate: f64,
    tuner: &mut AttentionTuner,
    report: &mut Vec<serde_json::Value>,
) -> Result<usize, CliError> {
    if args.decode_context.is_empty() {
        return Ok(0);
    }
    let (nh, nkv) = attention_heads(args)?;
    if args.decode_context.contains(&0) {
        return Err("--decode-context: lengths ≥ 1".into());
    }
    println!();
    println!(
        "decode attention (q_len 1) over a KV cache, {nh} heads / {nkv} KV heads, head_dim {}; \
         GB/s counts K and V read once; % copy: of the ceiling above; at size: of the copy \
         kernel moving as many bytes (one pass, with the same fixed cost and caches)",
        args.head_dim
    );
    println!(
        "{:>8} {:<6} {:>11} {:>9} {:>7} {:>8}  verified",
        "context", "dtype", "time (ms)", "GB/s", "% copy", "at size"
    );
    let mut failures = 0;
    let mut plans = Vec::new();
    for &ctx in &args.decode_context {
        for dtype in [DType::F32, DType::F16] {
            let r = match attention::bench_decode(
                gpu,
                ctx,
                (nh, nkv),
                args.head_dim,
                dtype,
                (args.repeats, attention::Pick::Tuned(&mut *tuner)),
            ) {
                Ok(mut rows) => rows.remove(0),
                // A cache over the binding limit (a long context on a small adapter): say so and
                // go on with the other rows.
                Err(e) if matches!(e.downcast_ref(), Some(GpuError::TooLarge { .. })) => {
                    println!("{ctx:>8} {:<6} cannot run: {e}", dtype.to_string());
                    report.push(serde_json::json!({
                        "op": "attention_decode", "device": "gpu", "context": ctx,
                        "n_heads": nh, "n_kv_heads": nkv, "head_dim": args.head_dim,
                        "dtype": dtype.to_string(), "seconds": null, "error": e.to_string(),
                        "verified": false,
                    }));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if r.verified.is_err() {
                failures += 1;
            }
            let rate = r.bytes / r.seconds;
            // The same bytes read and written by the copy kernel: half of them copied.
            let at_size =
                pertoken_gpu::measure_bandwidth(gpu, (r.bytes / 2.0) as u64, args.repeats.max(10))?
                    .best_bytes_per_second();
            report.push(serde_json::json!({
                "op": "attention_decode", "device": "gpu",
                "context": r.context, "n_heads": nh, "n_kv_heads": nkv, "head_dim": args.head_dim,
                "dtype": r.dtype.to_string(), "kernel": r.kernel, "choice": r.source,
                "seconds": r.seconds, "bytes_per_s": rate, "fraction_of_copy": rate / copy_rate,
                "copy_same_bytes_per_s": at_size, "fraction_of_copy_same_bytes": rate / at_size,
                "verified": r.verified.is_ok(),
            }));
            plans.push(format!("{ctx} {dtype}: {} ({})", r.kernel, r.source));
            println!(
                "{:>8} {:<6} {:>11.3} {:>9.2} {:>6.1}% {:>7.1}%  {}",
                r.context,
                r.dtype.to_string(),
                r.seconds * 1e3,
                rate * 1e-9,
                100.0 * rate / copy_rate,
                100.0 * rate / at_size,
                shown(&r.verified)
            );
        }
    }
    println!("decode kernels: {}", plans.join("; "));
    if args.decode_plans {
        failures += bench_decode_plans(gpu, args, (nh, nkv), copy_rate, report)?;
    }
    Ok(failures)
}

/// `--decode-plans`: every candidate plan of the team kernel at each decode context.
pub(super) fn bench_decode_plans(
    gpu: &Gpu,
    args: &Args,
    (nh, nkv): (usize, usize),
    copy_rate: f64,
    report: &mut Vec<serde_json::Value>,
) -> Result<usize, CliError> {
    let caps = gpu.capabilities();
    let mut failures = 0;
    for &ctx in &args.decode_context {
        let s = pertoken_attention::AttentionShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: args.head_dim,
            q_len: 1,
            kv_len: ctx,
        };
        if !pertoken_attention::team_kernel_applies(&s, caps) {
            println!("decode plans at {ctx} keys: the team kernel does not run here");
            continue;
        }
        let knobs = pertoken_attention::team_candidates(&s, caps.cpu);
        let kernels: Vec<AttentionKernel> =
            knobs.iter().map(|k| AttentionKernel::Team(*k)).collect();
        let mut by_dtype = Vec::new();
        for dtype in [DType::F32, DType::F16] {
            match attention::bench_decode(
                gpu,
                ctx,
                (nh, nkv),
                args.head_dim,
                dtype,
                (args.repeats, attention::Pick::Given(&kernels)),
            ) {
                Ok(rows) => by_dtype.push(Some(rows)),
                Err(e) if matches!(e.downcast_ref(), Some(GpuError::TooLarge { .. })) => {
                    by_dtype.push(None)
                }
                Err(e) => return Err(e),
            }
        }
        println!();
        println!(
            "decode plans at {ctx} keys: teams per workgroup t, rows per team r, workgroups aimed \
             at w, keys per team k, splits s (at most), prefetch pf, combine step c → the splits \
             × keys it ran; * the heuristic's"
        );
        println!(
            "  {:<34} {:>9} {:>7} {:>9} {:>7}  verified",
            "plan", "f32 (ms)", "% copy", "f16 (ms)", "% copy"
        );
        for (i, k) in knobs.iter().enumerate() {
            let p = pertoken_attention::team_plan_with(&s, k, caps.max_storage_binding);
            let label = format!("{k} → {}×{}", p.split.splits, p.split.chunk);
            let mut cells = Vec::new();
            let mut verified = Vec::new();
            for (dtype, rows) in [DType::F32, DType::F16].into_iter().zip(&by_dtype) {
                let Some(r) = rows.as_ref().map(|rows| &rows[i]) else {
                    cells.push(format!("{:>9} {:>7}", "-", "-"));
                    continue;
                };
                let rate = r.bytes / r.seconds;
                if r.verified.is_err() {
                    failures += 1;
                }
                verified.push(shown(&r.verified));
                cells.push(format!(
                    "{:>9.3} {:>6.1}%",
                    r.seconds * 1e3,
                    100.0 * rate / copy_rate
                ));
                report.push(serde_json::json!({
                    "op": "attention_decode_plan", "device": "gpu", "context": ctx,
                    "n_heads": nh, "n_kv_heads": nkv, "head_dim": args.head_dim,
                    "dtype": dtype.to_string(), "heuristic": i == 0,
                    "teams": k.teams, "max_rows": k.max_rows,
                    "target_workgroups": k.target_workgroups,
                    "min_keys_per_team": k.min_keys_per_team, "max_splits": k.max_splits,
                    "prefetch": k.prefetch, "combine_step": k.combine_step,
                    "splits": p.split.splits, "keys_per_split": p.split.chunk,
                    "seconds": r.seconds, "bytes_per_s": rate,
                    "fraction_of_copy": rate / copy_rate, "verified": r.verified.is_ok(),
                }));
            }
            println!(
                "{} {:<34} {}  {}",
                if i == 0 { "*" } else { " " },
                label,
                cells.join(" "),
                verified.join(" / ")
            );
        }
    }
    Ok(failures)
}
