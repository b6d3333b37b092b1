//! `pertoken bench kernels`: measure the kernels one at a time, verify each result, print rates.

mod attention;
mod decode;
mod linear;

use std::time::Instant;

use ndarray::Array2;
use pertoken_attention::AttentionTuner;
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_matmul::{
    Kernel, MatmulShape, TILE_CANDIDATES, TuneMode, Tuner, matmul_into, matmul_with,
};
use pertoken_reference::{Comparison, Tolerance, compare, random::uniform_array2};

use crate::cli::{CliError, open_gpu};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run on the adapter whose name contains this (default: PERTOKEN_ADAPTER, else the best).
    #[arg(long)]
    adapter: Option<String>,
    /// Matmul sizes: `N` for N×N×N, or `MxKxN`; comma-separated; `none` skips the matmul bench.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024", value_parser = parse_sizes)]
    sizes: Vec<Option<MatmulShape>>,
    /// Timed repetitions per kernel (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: u32,
    /// Also run every tiled configuration that fits the adapter, not only the selected one.
    #[arg(long)]
    all_kernels: bool,
    /// Linear-layer weight shapes `KxN` (in_features × out_features), comma-separated; `none`
    /// skips the linear benches.
    #[arg(long, value_delimiter = ',', default_value = "4096x4096,4096x14336,14336x4096",
          value_parser = parse_linear)]
    linear: Vec<Option<(usize, usize)>>,
    /// Rows of x for the decode benches (1–16 run the GEMV kernel).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    rows: Vec<u32>,
    /// Rows of x for the prefill bench, on the first linear shape; 0 skips it.
    #[arg(long, default_value_t = 512)]
    prefill: usize,
    /// Weight formats for the linear benches: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k,
    /// q5_k, q6_k.
    #[arg(long, value_delimiter = ',', default_value = "f16,q4_0", value_parser = parse_dtype)]
    dtypes: Vec<DType>,
    /// Bytes the copy kernel moves to measure bandwidth (clamped to the binding limit).
    #[arg(long, default_value_t = 64 << 20)]
    copy_bytes: u64,
    /// Causal prefill attention at these sequence lengths, flash against naive, and flash with
    /// f16 inputs (e.g. `512,1024,2048`); off by default.
    #[arg(long, value_delimiter = ',')]
    attention: Vec<usize>,
    /// Single-token decode over a KV cache of these lengths (e.g. `512,4096,8192`), in f32 and
    /// f16, reported as K/V bytes per second and as a fraction of the copy bandwidth.
    #[arg(long, value_delimiter = ',')]
    decode_context: Vec<usize>,
    /// With --decode-context: also time every candidate plan of the team kernel at each
    /// context, in f32 and f16, each verified; the heuristic's plan is marked `*`.
    #[arg(long)]
    decode_plans: bool,
    /// Query and KV heads for --attention and --decode-context.
    #[arg(long, value_delimiter = ',', default_value = "32,8", num_args = 1..)]
    attention_heads: Vec<usize>,
    /// Head dimension for --attention and --decode-context (up to 256).
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// Also write every measured row, verified or not, as JSON to this file (`pertoken cost
    /// --bench-report` reads it).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Use the shape heuristic only: neither measure candidate kernels nor read or write the
    /// tuning cache (`PERTOKEN_CACHE_DIR`, else the user's cache directory).
    #[arg(long)]
    no_tune: bool,
}

fn parse_linear(s: &str) -> Result<Option<(usize, usize)>, String> {
    if s.trim() == "none" {
        return Ok(None);
    }
    match parse_size(&format!("1x{s}"))? {
        MatmulShape { m: 1, k, n } => Ok(Some((k, n))),
        _ => Err(format!("linear shape {s:?}: expected KxN")),
    }
}

pub(crate) fn parse_dtype(s: &str) -> Result<DType, String> {
    let name = s.trim().to_ascii_lowercase();
    DType::weight_named(&name).ok_or_else(|| {
        let all: Vec<&str> = DType::WEIGHTS.iter().map(|d| d.name()).collect();
        format!("dtype {name:?}: expected one of {}", all.join(", "))
    })
}

fn parse_sizes(s: &str) -> Result<Option<MatmulShape>, String> {
    if s.trim() == "none" {
        return Ok(None);
    }
    parse_size(s).map(Some)
}

/// Parses `N` or `MxKxN`.
fn parse_size(s: &str) -> Result<MatmulShape, String> {
    let dims: Vec<&str> = s.trim().split(['x', 'X']).collect();
    let parse = |d: &str| -> Result<usize, String> {
        match d.trim().parse::<usize>() {
            Ok(0) => Err(format!("size {s:?}: dimensions must be at least 1")),
            Ok(v) if v > 1 << 16 => Err(format!("size {s:?}: {v} is larger than 65536")),
            Ok(v) => Ok(v),
            Err(_) => Err(format!(
                "size {s:?}: expected N or MxKxN with positive integers"
            )),
        }
    };
    match dims[..] {
        [n] => {
            let n = parse(n)?;
            Ok(MatmulShape { m: n, k: n, n })
        }
        [m, k, n] => Ok(MatmulShape {
            m: parse(m)?,
            k: parse(k)?,
            n: parse(n)?,
        }),
        _ => Err(format!("size {s:?}: expected N or MxKxN")),
    }
}

struct Row {
    shape: MatmulShape,
    kernel: String,
    seconds: f64,
    method: String,
    cmp: Comparison,
    max_ref: f64,
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let gpu = open_gpu(args.adapter.as_deref())?;
    let a = gpu.adapter();
    println!(
        "adapter: {} ({:?}, {:?}), driver {} {}",
        a.name, a.backend, a.device_type, a.driver, a.driver_info
    );
    println!(
        "times: median of {} timed batches after 1 warm-up, per call; a batch is one call, or \
         back-to-back calls adding up to {} ms (at most {}) where one call is shorter",
        args.repeats,
        pertoken_gpu::BATCH_SECONDS * 1e3,
        pertoken_gpu::MAX_BATCH_CALLS
    );
    println!("f32 matmul C[M,N] = A[M,K]·B[K,N]; inputs uniform in [-1,1), seeded");
    println!();

    // The ceiling is the fastest of at least ten copies: on a shared machine a median taken
    // during a busy moment would flatter every kernel measured against it.
    let bw = pertoken_gpu::measure_bandwidth(&gpu, args.copy_bytes, args.repeats.max(10))?;
    let copy_rate = bw.best_bytes_per_second();
    println!(
        "copy kernel: {:.1} MiB read + written in {:.3} ms (fastest of {} batches of {}; median \
         {:.3} ms) = {:.2} GB/s ({}); the bandwidth ceiling below",
        bw.bytes as f64 / (1u64 << 20) as f64,
        bw.best_seconds * 1e3,
        args.repeats.max(10),
        bw.calls,
        bw.seconds * 1e3,
        copy_rate * 1e-9,
        bw.method
    );
    println!();

    let mode = if args.no_tune {
        TuneMode::Off
    } else {
        TuneMode::Tune
    };
    let mut tuner = Tuner::new(&gpu, mode, None);
    let mut attention_tuner = AttentionTuner::new(&gpu, mode, None);

    let mut report: Vec<serde_json::Value> = Vec::new();
    let mut failures = 0;
    let sizes: Vec<MatmulShape> = args.sizes.iter().flatten().copied().collect();
    if !sizes.is_empty() {
        println!(
            "{:<16} {:<24} {:>11} {:>10} {:>12}  {:<10} verified",
            "shape MxKxN", "kernel", "time (ms)", "GFLOP/s", "max rel err", "timing"
        );
    }
    for &shape in &sizes {
        let rows = bench_shape(&gpu, &mut tuner, shape, args.repeats, args.all_kernels)?;
        for r in rows {
            let device = if r.kernel.starts_with("cpu") {
                "cpu"
            } else {
                "gpu"
            };
            report.push(serde_json::json!({
                "op": "matmul", "device": device,
                "m": r.shape.m, "k": r.shape.k, "n": r.shape.n, "dtype": "f32",
                "kernel": r.kernel, "seconds": r.seconds,
                "flops_per_s": r.shape.flops() / r.seconds, "verified": r.cmp.passed(),
            }));
            if !r.cmp.passed() {
                failures += 1;
            }
            println!(
                "{:<16} {:<24} {:>11.3} {:>10.2} {:>12.2e}  {:<10} {}",
                format!("{}x{}x{}", r.shape.m, r.shape.k, r.shape.n),
                r.kernel,
                r.seconds * 1e3,
                r.shape.flops() / r.seconds * 1e-9,
                r.cmp.max_abs / r.max_ref.max(f64::MIN_POSITIVE),
                r.method,
                shown(&verdict(&r.cmp))
            );
        }
    }
    println!();
    println!(
        "max rel err = max |C − C_ref| / max |C_ref|, against an f64 reference; verified = every \
         element within the f32 tolerance."
    );
    failures += linear::bench_linears(&gpu, &mut tuner, args, copy_rate, &mut report)?;
    failures += bench_attention(&gpu, args, &mut report)?;
    failures += decode::bench_decode(&gpu, args, copy_rate, &mut attention_tuner, &mut report)?;
    for saved in [tuner.save(), attention_tuner.save()] {
        if let Err(e) = saved {
            eprintln!("warning: could not write the tuning cache: {e}");
        }
    }
    match (tuner.path(), attention_tuner.path()) {
        (Some(p), Some(a)) => println!(
            "kernels: tuned on this adapter, cached in {} (decode attention plans: {})",
            p.display(),
            a.display()
        ),
        _ => println!("kernels: chosen by the shape heuristic (--no-tune)"),
    }
    if let Some(path) = &args.json {
        let a = gpu.adapter();
        let doc = serde_json::json!({
            "pertoken_bench_report": 1,
            "adapter": { "name": a.name, "backend": format!("{:?}", a.backend), "driver": a.driver_info },
            "copy_bytes_per_s": copy_rate,
            "rows": report,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| format!("--json {}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if failures > 0 {
        return Err(format!("{failures} result(s) did not match the CPU reference").into());
    }
    Ok(())
}

fn attention_heads(args: &Args) -> Result<(usize, usize), CliError> {
    match args.attention_heads[..] {
        [nh, nkv] if nh > 0 && nkv > 0 && nh % nkv == 0 => Ok((nh, nkv)),
        _ => Err("--attention-heads takes query heads, KV heads (a divisor of query heads)".into()),
    }
}

fn bench_attention(
    gpu: &Gpu,
    args: &Args,
    report: &mut Vec<serde_json::Value>,
) -> Result<usize, CliError> {
    if args.attention.is_empty() {
        return Ok(0);
    }
    let (nh, nkv) = attention_heads(args)?;
    if args.attention.contains(&0) {
        return Err("--attention: lengths ≥ 1".into());
    }
    println!();
    println!(
        "causal prefill attention, {nh} heads / {nkv} KV heads, head_dim {}, f32 (and f16 \
         inputs, f32 arithmetic: f16 rows); FLOPs count the unmasked half; verified on the first \
         KV head's group",
        args.head_dim
    );
    println!(
        "{:>6} {:<11} {:>11} {:>9} {:>9}  verified",
        "seq", "kernel", "time (ms)", "GFLOP/s", "speedup"
    );
    let mut failures = 0;
    for &seq in &args.attention {
        let rows = attention::bench(gpu, seq, (nh, nkv), args.head_dim, args.repeats)?;
        let naive = rows
            .iter()
            .find(|r| r.kernel == "naive")
            .and_then(|r| r.seconds.as_ref().ok().copied());
        for r in rows {
            if r.verified.is_err() && r.seconds.is_ok() {
                failures += 1;
            }
            let seconds = r.seconds.as_ref().ok();
            report.push(serde_json::json!({
                "op": "attention_prefill", "device": "gpu", "causal": true,
                "seq": r.seq, "n_heads": nh, "n_kv_heads": nkv, "head_dim": args.head_dim,
                "dtype": r.dtype.to_string(), "kernel": r.kernel, "seconds": seconds,
                "error": r.seconds.as_ref().err(),
                "flops_per_s": seconds.map(|t| r.flops / t),
                "speedup_vs_naive": seconds.zip(naive).map(|(t, n)| n / t),
                "verified": r.verified.is_ok(),
            }));
            match &r.seconds {
                Ok(t) => println!(
                    "{:>6} {:<11} {:>11.3} {:>9.2} {:>9}  {}",
                    r.seq,
                    r.kernel,
                    t * 1e3,
                    r.flops / t * 1e-9,
                    naive.map_or("-".into(), |n| format!("{:.2}x", n / t)),
                    shown(&r.verified)
                ),
                Err(e) => println!("{:>6} {:<11} {e}", r.seq, r.kernel),
            }
        }
    }
    Ok(failures)
}

fn bench_shape(
    gpu: &Gpu,
    tuner: &mut Tuner,
    shape: MatmulShape,
    repeats: u32,
    all_kernels: bool,
) -> Result<Vec<Row>, CliError> {
    let MatmulShape { m, k, n } = shape;
    let seed = (m * 31 + k * 17 + n) as u64;
    let a = uniform_array2(seed, m, k);
    let b = uniform_array2(seed + 1, k, n);
    let reference = pertoken_reference::matmul(a.view(), b.view())?;
    let expected: Vec<f64> = reference.iter().copied().collect();
    let max_ref = expected.iter().fold(0.0f64, |acc, x| acc.max(x.abs()));
    let tolerance = Tolerance::F32.for_reduction(k, 1.0);

    let ta = Tensor::from_array(gpu, a.view())?;
    let tb = Tensor::from_array(gpu, b.view())?;
    let mut rows = Vec::new();
    let selected = tuner.matmul(&ta, &tb)?.kernel();
    let mut kernels = vec![Kernel::Naive];
    if selected != Kernel::Naive {
        kernels.push(selected);
    }
    if all_kernels {
        let caps = gpu.capabilities();
        kernels.extend(
            TILE_CANDIDATES
                .iter()
                .filter(|c| c.fits(caps) && Kernel::Tiled(**c) != selected)
                .map(|c| Kernel::Tiled(*c)),
        );
    }
    for kernel in kernels {
        // Warm-up: compiles the pipeline, and its result is the one verified.
        let out = matmul_with(gpu, &ta, &tb, kernel)?;
        let got = out.to_vec::<f32>()?;
        let cmp = compare(&got, &expected, tolerance);
        let m = gpu.measure(repeats, &mut || matmul_into(gpu, &ta, &tb, &out, kernel))?;
        rows.push(Row {
            shape,
            kernel: kernel.to_string(),
            seconds: m.median,
            method: m.method.to_string(),
            cmp,
            max_ref,
        });
    }

    // The CPU's fast path for scale: matrixmultiply's sgemm through ndarray's `dot`.
    let c_cpu: Array2<f32> = a.dot(&b);
    let cmp = compare(c_cpu.as_slice().unwrap_or(&[]), &expected, tolerance);
    let mut times = Vec::with_capacity(repeats as usize);
    for _ in 0..repeats {
        let start = Instant::now();
        let c = a.dot(&b);
        times.push(start.elapsed().as_secs_f64());
        std::hint::black_box(c);
    }
    rows.push(Row {
        shape,
        kernel: "cpu ndarray dot".into(),
        seconds: median(&mut times),
        method: "wall clock".into(),
        cmp,
        max_ref,
    });
    Ok(rows)
}

/// A row's verdict from its comparison with the reference: the comparison's report when it failed.
pub(crate) fn verdict(cmp: &Comparison) -> Result<(), String> {
    if cmp.passed() {
        Ok(())
    } else {
        Err(cmp.to_string())
    }
}

/// The verified column: "yes", or "NO: " and why.
fn shown(verified: &Result<(), String>) -> String {
    match verified {
        Ok(()) => "yes".to_string(),
        Err(e) => format!("NO: {e}"),
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            parse_size("512").unwrap(),
            MatmulShape {
                m: 512,
                k: 512,
                n: 512
            }
        );
        assert_eq!(
            parse_size("1x4096x14336").unwrap(),
            MatmulShape {
                m: 1,
                k: 4096,
                n: 14336
            }
        );
        assert!(parse_size("0").unwrap_err().contains("at least 1"));
        assert!(parse_size("2x3").is_err());
        assert!(parse_size("abc").is_err());
        assert!(parse_size("100000").is_err());
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
