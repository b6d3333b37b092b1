//! `pertoken bench`: measure the kernels, verify each result, print rates.

use std::time::Instant;

use ndarray::Array2;
use pertoken_gpu::{Gpu, Tensor, Timing};
use pertoken_matmul::{Kernel, MatmulShape, TILE_CANDIDATES, matmul_with, select};
use pertoken_reference::{Comparison, Tolerance, compare, random::uniform_array2};

use super::{CliError, open_gpu};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run on the adapter whose name contains this (default: PERTOKEN_ADAPTER, else the best).
    #[arg(long)]
    adapter: Option<String>,
    /// Matmul sizes: `N` for N×N×N, or `MxKxN`; comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024", value_parser = parse_size)]
    sizes: Vec<MatmulShape>,
    /// Timed repetitions per kernel (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: u32,
    /// Also run every tiled configuration that fits the adapter, not only the selected one.
    #[arg(long)]
    all_kernels: bool,
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
        "f32 matmul C[M,N] = A[M,K]·B[K,N]; median of {} runs after 1 warm-up; inputs uniform in \
         [-1,1), seeded",
        args.repeats
    );
    println!();
    println!(
        "{:<16} {:<24} {:>11} {:>10} {:>12}  {:<10} verified",
        "shape MxKxN", "kernel", "time (ms)", "GFLOP/s", "max rel err", "timing"
    );

    let mut failures = 0;
    for &shape in &args.sizes {
        let rows = bench_shape(&gpu, shape, args.repeats, args.all_kernels)?;
        for r in rows {
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
                if r.cmp.passed() {
                    "yes".to_string()
                } else {
                    format!("NO: {}", r.cmp)
                }
            );
        }
    }
    println!();
    println!(
        "max rel err = max |C − C_ref| / max |C_ref|, against an f64 reference; verified = every \
         element within the f32 tolerance."
    );
    if failures > 0 {
        return Err(format!("{failures} result(s) did not match the CPU reference").into());
    }
    Ok(())
}

fn bench_shape(
    gpu: &Gpu,
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
    let selected = select(gpu.capabilities(), shape);
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
        let mut times = Vec::with_capacity(repeats as usize);
        let mut method = String::new();
        for _ in 0..repeats {
            let (_, t): (Tensor, Timing) = gpu.time(|| matmul_with(gpu, &ta, &tb, kernel))?;
            method = t.method.to_string();
            times.push(t.seconds);
        }
        rows.push(Row {
            shape,
            kernel: kernel.to_string(),
            seconds: median(&mut times),
            method,
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

fn median(v: &mut [f64]) -> f64 {
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
