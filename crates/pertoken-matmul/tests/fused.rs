//! The down projection with the SwiGLU gate fused into its GEMV: `silu(gate) · up` read from the
//! fused gate/up output `[M, 2K]`, against the f64 reference of the gate then the linear.

use ndarray::ArrayView2;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, Tensor};
use pertoken_matmul::{GEMV_CANDIDATES, Kernel, TeamConfig, linear_swiglu_into};
use pertoken_reference::{
    QuantFormat, Tolerance, compare, dequantize, quantize, random::uniform_f32_in,
};

/// Weights `[n, k]` in `dtype` and the values the kernel reads.
fn weights(gpu: &Gpu, n: usize, k: usize, dtype: DType, seed: u64) -> (Tensor, Vec<f32>) {
    let raw = uniform_f32_in(seed, n * k, -1.0, 1.0);
    let quant = match dtype {
        DType::Q8_0 => Some(QuantFormat::Q8_0),
        DType::Q4_0 => Some(QuantFormat::Q4_0),
        DType::Q4_1 => Some(QuantFormat::Q4_1),
        _ => None,
    };
    match quant {
        Some(f) => {
            let bytes = quantize(f, &raw).unwrap();
            let held = dequantize(f, &bytes).unwrap();
            (
                Tensor::from_quantized(gpu, &bytes, &[n, k], dtype).unwrap(),
                held,
            )
        }
        None => Tensor::from_f32_as(gpu, &raw, &[n, k], dtype).unwrap(),
    }
}

/// The reference: h = silu(g) · u in f64, then h · wᵀ.
fn reference(gate_up: &[f32], w: &[f32], (m, k, n): (usize, usize, usize)) -> Vec<f64> {
    let h: Vec<f64> = (0..m * k)
        .map(|e| {
            let (i, j) = (e / k, e % k);
            let g = f64::from(gate_up[i * 2 * k + j]);
            let u = f64::from(gate_up[i * 2 * k + k + j]);
            g / (1.0 + (-g).exp()) * u
        })
        .collect();
    let w64: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    let h = ArrayView2::from_shape((m, k), &h[..]).unwrap();
    let w = ArrayView2::from_shape((n, k), &w64[..]).unwrap();
    pertoken_reference::linear(h, w, None)
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn every_gemv_config_fuses_the_gate_in_every_format() {
    let Some(gpu) = gpu_or_skip() else { return };
    let caps = gpu.capabilities();
    let n = 40;
    let mut seed = 1;
    for (k, formats) in [
        // Vector loads of gate and up (K % 8 == 0), every format.
        (
            64,
            &[
                DType::F32,
                DType::F16,
                DType::Q8_0,
                DType::Q4_0,
                DType::Q4_1,
            ][..],
        ),
        (96, &[DType::F16, DType::Q4_1][..]),
        // K % 8 != 0: element by element.
        (44, &[DType::F32, DType::F16][..]),
    ] {
        for &dtype in formats {
            let (w, held) = weights(&gpu, n, k, dtype, seed);
            for cfg in GEMV_CANDIDATES {
                for m in [1usize, 3] {
                    if !cfg.fits(caps, m) {
                        continue;
                    }
                    seed += 1;
                    // Gates over [-6, 6): silu's whole range, not only its linear part.
                    let gu = uniform_f32_in(seed, m * 2 * k, -6.0, 6.0);
                    let x = Tensor::from_slice(&gpu, &gu, &[m, 2 * k]).unwrap();
                    let out = Tensor::zeros(&gpu, &[m, n], DType::F32).unwrap();
                    out.fill(f32::NAN).unwrap();
                    linear_swiglu_into(&gpu, &x, &w, &out, Kernel::Gemv(*cfg)).unwrap();
                    let want = reference(&gu, &held, (m, k, n));
                    let cmp = compare(
                        &out.to_vec::<f32>().unwrap(),
                        &want,
                        Tolerance::F32.for_reduction(k, 6.0),
                    );
                    assert!(cmp.passed(), "{m}x{k}x{n} {dtype} {cfg}: {cmp}");
                }
            }
        }
    }
}

#[test]
fn shapes_and_kernels_it_cannot_fuse_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (w, _) = weights(&gpu, 8, 32, DType::F32, 9);
    let gu = Tensor::zeros(&gpu, &[2, 48], DType::F32).unwrap();
    let out = Tensor::zeros(&gpu, &[2, 8], DType::F32).unwrap();
    let gemv = Kernel::Gemv(GEMV_CANDIDATES[0]);
    let err = linear_swiglu_into(&gpu, &gu, &w, &out, gemv).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let gu = Tensor::zeros(&gpu, &[2, 64], DType::F32).unwrap();
    let team = Kernel::Team(TeamConfig { tm: 16, tn: 8 });
    let err = linear_swiglu_into(&gpu, &gu, &w, &out, team).unwrap_err();
    assert!(err.to_string().contains("only the GEMV kernel"), "{err}");
}
