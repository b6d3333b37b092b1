//! Linear layers at decode and prefill rows: y = x·wᵀ in every weight format, from cache and from memory.

use ndarray::ArrayView2;
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_matmul::{
    GEMV_CANDIDATES, GEMV_MAX_M, Kernel, Tuner, check_linear, linear_into, linear_with,
};
use pertoken_reference::{Tolerance, compare};

use super::{Args, CliError, shown, verdict};

/// One measured linear shape.
pub(crate) struct LinearRow {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) dtype: DType,
    pub(crate) kernel: String,
    pub(crate) seconds: f64,
    /// Median seconds per call cycling through copies of w that together exceed the caches
    /// (each call's weights come from memory, as a model's do).
    pub(crate) cold_seconds: f64,
    /// Bytes the kernel must move: weights, x and y once each.
    pub(crate) bytes: f64,
    pub(crate) verified: Result<(), String>,
}

impl LinearRow {
    pub(crate) fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// Weights for one (K, N, dtype): the tensor and the values it holds, shared by every M, and
/// byte-for-byte copies for timing from memory rather than from a cache.
pub(crate) struct Weights {
    pub(crate) tensor: Tensor,
    pub(crate) values: Vec<f32>,
    cold: Vec<Tensor>,
}

pub(crate) fn weights(
    gpu: &Gpu,
    k: usize,
    n: usize,
    dtype: DType,
    seed: u64,
) -> Result<Weights, CliError> {
    // Scaled like a trained layer's weights (~1/√K), so outputs stay O(1).
    let scale = 1.0 / (k as f32).sqrt();
    let raw: Vec<f32> = pertoken_reference::random::uniform_f32(seed, n * k)
        .into_iter()
        .map(|v| v * scale)
        .collect();
    let (tensor, values) = pertoken_bench::model::upload_weights(gpu, &raw, (n, k), dtype)?;
    // Copies of w past the caches (pertoken_matmul::tune::COLD_BYTES), for timing from memory.
    let cold = pertoken_matmul::tune::cold_copies(gpu, &tensor)?;
    Ok(Weights {
        tensor,
        values,
        cold,
    })
}

pub(crate) fn bench_linear(
    gpu: &Gpu,
    tuner: &mut Tuner,
    w: &Weights,
    m: usize,
    repeats: u32,
    kernel: Option<Kernel>,
) -> Result<LinearRow, CliError> {
    let (n, k) = (w.tensor.shape()[0], w.tensor.shape()[1]);
    let xv = pertoken_reference::random::uniform_f32((m * 131 + k) as u64, m * k);
    let x = Tensor::from_slice(gpu, &xv, &[m, k])?;
    let p = check_linear(&x, &w.tensor, None)?;
    let kernel = match kernel {
        Some(k) => k,
        None => tuner.linear(&x, &w.tensor, None)?.kernel(),
    };
    let y = linear_with(gpu, &x, &w.tensor, None, kernel)?;
    let got = y.to_vec::<f32>()?;
    let want = pertoken_reference::linear(
        ArrayView2::from_shape((m, k), &xv[..])?,
        ArrayView2::from_shape((n, k), &w.values[..])?,
        None,
    )?;
    let want: Vec<f64> = want.iter().copied().collect();
    let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
    let verified = verdict(&cmp);
    let timed = gpu.measure(repeats, &mut || {
        linear_into(gpu, &x, &w.tensor, None, &y, kernel)
    })?;
    let mut next = 0;
    let cold = gpu.measure(repeats, &mut || {
        next = (next + 1) % w.cold.len();
        linear_into(gpu, &x, &w.cold[next], None, &y, kernel)
    })?;
    // The copies hold the same bytes: the same kernel must give the same result from them.
    let verified = match (verified, y.to_vec::<f32>()?) {
        (Ok(()), again) if again != got => {
            Err("a copy of the weights gave a different result".to_owned())
        }
        (v, _) => v,
    };
    Ok(LinearRow {
        m,
        k,
        n,
        dtype: w.tensor.dtype(),
        kernel: kernel.to_string(),
        seconds: timed.median,
        cold_seconds: cold.median,
        bytes: p.min_bytes(),
        verified,
    })
}

/// The linear table: every `--linear` shape in every `--dtypes` format at each `--rows` (and
/// the prefill rows on the first shape), tuned, verified, warm and cold; returns the failures.
pub(super) fn bench_linears(
    gpu: &Gpu,
    tuner: &mut Tuner,
    args: &Args,
    copy_rate: f64,
    report: &mut Vec<serde_json::Value>,
) -> Result<usize, CliError> {
    let shapes: Vec<(usize, usize)> = args.linear.iter().flatten().copied().collect();
    if shapes.is_empty() {
        return Ok(0);
    }
    println!();
    println!(
        "linear y = x·wᵀ, w [N,K], x and y f32. GB/s counts w, x and y once; % copy is against \
         the copy kernel. cold: each call reads one of copies of w that together exceed the \
         caches (256 MiB), as a model's layers do; the others repeat one w, which may sit in a \
         cache."
    );
    println!(
        "{:<6} {:<12} {:<6} {:<22} {:>10} {:>9} {:>7} {:>9} {:>9}  verified",
        "M", "KxN", "dtype", "kernel", "time (ms)", "GB/s", "% copy", "cold GB/s", "GFLOP/s"
    );
    let mut failures = 0;
    // Tuning measures every candidate of a shape the first time (minutes on a CPU adapter):
    // a bar over the rows to measure, naming the shape.
    let spinner = crate::cli::progress(0, "linear");
    spinner.enable_steady_tick(std::time::Duration::from_millis(500));
    for (i, &(k, n)) in shapes.iter().enumerate() {
        for &dtype in &args.dtypes {
            spinner.set_message(format!("linear {k}x{n} {dtype} (tuned once)"));
            let w = weights(gpu, k, n, dtype, (k * 7 + n) as u64)?;
            let mut rows: Vec<usize> = args.rows.iter().map(|&m| m as usize).collect();
            if i == 0 && args.prefill > 0 {
                rows.push(args.prefill);
            }
            for m in rows {
                let mut kernels = vec![None];
                if args.all_kernels && m <= GEMV_MAX_M {
                    let caps = gpu.capabilities();
                    kernels.extend(
                        GEMV_CANDIDATES
                            .iter()
                            .filter(|c| c.fits(caps, m))
                            .map(|c| Some(Kernel::Gemv(*c))),
                    );
                }
                spinner.inc_length(kernels.len() as u64);
                for kernel in kernels {
                    let r = bench_linear(gpu, tuner, &w, m, args.repeats, kernel)?;
                    spinner.inc(1);
                    let rate = r.bytes / r.seconds;
                    if r.verified.is_err() {
                        failures += 1;
                    }
                    report.push(serde_json::json!({
                        "op": "linear", "device": "gpu",
                        "m": r.m, "k": r.k, "n": r.n, "dtype": r.dtype.to_string(),
                        "kernel": r.kernel, "seconds": r.seconds, "bytes_per_s": rate,
                        "cold_seconds": r.cold_seconds, "cold_bytes_per_s": r.bytes / r.cold_seconds,
                        "flops_per_s": r.flops() / r.seconds, "verified": r.verified.is_ok(),
                    }));
                    spinner.suspend(|| {
                        println!(
                            "{:<6} {:<12} {:<6} {:<22} {:>10.3} {:>9.2} {:>6.1}% {:>9.2} {:>9.2}  {}",
                            r.m,
                            format!("{}x{}", r.k, r.n),
                            r.dtype.to_string(),
                            r.kernel,
                            r.seconds * 1e3,
                            rate * 1e-9,
                            100.0 * rate / copy_rate,
                            r.bytes / r.cold_seconds * 1e-9,
                            r.flops() / r.seconds * 1e-9,
                            shown(&r.verified)
                        )
                    });
                }
            }
        }
    }
    spinner.finish_and_clear();
    Ok(failures)
}
