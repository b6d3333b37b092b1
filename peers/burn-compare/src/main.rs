//! burn-wgpu's f32 matmul beside pertoken's on the same adapter, in one run.
//!
//! Both are timed the same way, with the host wall clock around launch + a full device sync
//! (median of the repeats, after a warm-up that also lets burn autotune), and both results are
//! checked against the f64 reference. pertoken's GPU-timestamp time is printed too.
//!
//! Usage: `burn-compare [SIZES...]` (default 1024 2048). PERTOKEN_ADAPTER picks pertoken's
//! adapter; burn uses its default device: run on a machine with one adapter, or check that the
//! two names printed agree.

use std::time::Instant;

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor as BurnTensor, TensorData};
use pertoken::gpu::{Gpu, Tensor};
use pertoken::matmul::{Kernel, TuneMode, Tuner, matmul_with};
use pertoken::reference::{Tolerance, compare, matmul_f32, random::uniform_f32};

const REPEATS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() { vec![1024, 2048] } else { sizes };

    let gpu = Gpu::from_env()?;
    let device = WgpuDevice::default();
    println!("pertoken adapter: {}", gpu.adapter().summary());
    println!("burn device:      {device:?} (burn 0.20, burn-wgpu)");
    println!(
        "{:<8} {:>14} {:>14} {:>16} {:>9}  kernel",
        "N", "burn GFLOP/s", "ours GFLOP/s", "ours (GPU ts)", "ratio"
    );
    let mut tuner = Tuner::new(&gpu, TuneMode::Tune, None);

    for n in sizes {
        let a = uniform_f32(1, n * n);
        let b = uniform_f32(2, n * n);
        let want = matmul_f32(&a, &b, n, n, n);
        let tol = Tolerance::F32.for_reduction(n, 1.0);
        let flops = 2.0 * (n as f64).powi(3);

        // burn
        let ba = BurnTensor::<Wgpu, 2>::from_data(TensorData::new(a.clone(), [n, n]), &device);
        let bb = BurnTensor::<Wgpu, 2>::from_data(TensorData::new(b.clone(), [n, n]), &device);
        for _ in 0..3 {
            // Warm-up, several times: burn autotunes on first use.
            let c = ba.clone().matmul(bb.clone());
            <Wgpu as Backend>::sync(&device)?;
            drop(c);
        }
        let got: Vec<f32> = ba.clone().matmul(bb.clone()).into_data().to_vec()?;
        let cmp = compare(&got, &want, tol);
        assert!(cmp.passed(), "burn's result: {cmp}");
        let mut burn_times = Vec::new();
        for _ in 0..REPEATS {
            let t = Instant::now();
            let c = ba.clone().matmul(bb.clone());
            <Wgpu as Backend>::sync(&device)?;
            burn_times.push(t.elapsed().as_secs_f64());
            drop(c);
        }

        // pertoken
        let ta = Tensor::from_slice(&gpu, &a, &[n, n])?;
        let tb = Tensor::from_slice(&gpu, &b, &[n, n])?;
        let kernel: Kernel = tuner.matmul(&ta, &tb)?.kernel();
        let got = matmul_with(&gpu, &ta, &tb, kernel)?.to_vec::<f32>()?;
        let cmp = compare(&got, &want, tol);
        assert!(cmp.passed(), "pertoken's result: {cmp}");
        let mut ours = Vec::new();
        let mut ours_ts = Vec::new();
        for _ in 0..REPEATS {
            gpu.sync()?;
            let t = Instant::now();
            let c = matmul_with(&gpu, &ta, &tb, kernel)?;
            gpu.sync()?;
            ours.push(t.elapsed().as_secs_f64());
            drop(c);
            let (_, timing) = gpu.time(|| matmul_with(&gpu, &ta, &tb, kernel))?;
            ours_ts.push(timing.seconds);
        }

        let burn_rate = flops / median(burn_times) * 1e-9;
        let our_rate = flops / median(ours) * 1e-9;
        println!(
            "{n:<8} {burn_rate:>14.2} {our_rate:>14.2} {:>16.2} {:>8.2}x  {kernel}",
            flops / median(ours_ts) * 1e-9,
            our_rate / burn_rate
        );
    }
    tuner.save()?;
    Ok(())
}
