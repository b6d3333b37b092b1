//! What the GEMV kernel fuses, each against the f64 reference of the separate passes: the
//! SwiGLU gate (`silu(gate) · up` read from the fused gate/up output `[M, 2K]`) before the down
//! projection, an RMSNorm of x before any linear, and the residual add after it.

use ndarray::ArrayView2;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, Tensor};
use pertoken_matmul::{
    GEMV_CANDIDATES, GemvConfig, GemvFusion, Kernel, TeamConfig, linear_fused_into,
    linear_swiglu_into,
};
use pertoken_reference::{
    QuantFormat, Tolerance, compare, dequantize, quantize, random::uniform_f32_in,
};

/// Weights `[n, k]` in `dtype` and the values the kernel reads.
fn weights(gpu: &Gpu, n: usize, k: usize, dtype: DType, seed: u64) -> (Tensor, Vec<f32>) {
    let raw = uniform_f32_in(seed, n * k, -1.0, 1.0);
    match QuantFormat::from_name(dtype.name()) {
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

/// The output: poisoned when the kernel overwrites it, else a seeded residual it adds into
/// (returned, to add to the reference).
fn output(gpu: &Gpu, (m, n): (usize, usize), accumulate: bool, seed: u64) -> (Tensor, Vec<f32>) {
    if accumulate {
        let r = uniform_f32_in(seed ^ 0x5eed, m * n, -2.0, 2.0);
        (Tensor::from_slice(gpu, &r, &[m, n]).unwrap(), r)
    } else {
        let out = Tensor::zeros(gpu, &[m, n], DType::F32).unwrap();
        out.fill(f32::NAN).unwrap();
        (out, vec![0.0; m * n])
    }
}

fn plus(mut v: Vec<f64>, residual: &[f32]) -> Vec<f64> {
    for (a, &r) in v.iter_mut().zip(residual) {
        *a += f64::from(r);
    }
    v
}

/// The reference of a normed linear: rms_norm(x) (f64) · wᵀ.
fn normed_reference(
    x: &[f32],
    g: &[f32],
    eps: f64,
    w: &[f32],
    (m, k, n): (usize, usize, usize),
) -> Vec<f64> {
    let h: Vec<f64> = x
        .chunks(k)
        .flat_map(|row| {
            let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            pertoken_reference::decoder::rms_norm(&row, g, eps)
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

/// One case of a sweep: the weights and the values they hold, M and K, the configuration, and
/// a seed of the case's own.
struct Case<'a> {
    w: &'a Tensor,
    held: &'a [f32],
    m: usize,
    k: usize,
    cfg: GemvConfig,
    seed: u64,
}

/// Runs `check` for every GEMV candidate that fits, at M = 1 and 3, for each K with its formats;
/// seeds count up from `seed`.
fn each_case(
    gpu: &Gpu,
    n: usize,
    shapes: &[(usize, &[DType])],
    mut seed: u64,
    mut check: impl FnMut(Case<'_>),
) {
    for &(k, formats) in shapes {
        for &dtype in formats {
            let (w, held) = weights(gpu, n, k, dtype, seed);
            for cfg in GEMV_CANDIDATES {
                for m in [1usize, 3] {
                    if !cfg.fits(gpu.capabilities(), m) {
                        continue;
                    }
                    seed += 1;
                    check(Case {
                        w: &w,
                        held: &held,
                        m,
                        k,
                        cfg: *cfg,
                        seed,
                    });
                }
            }
        }
    }
}

const EVERY_FORMAT: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
];

#[test]
fn every_gemv_config_fuses_the_norm_and_the_residual_add_in_every_format() {
    let Some(gpu) = gpu_or_skip() else { return };
    let n = 40;
    let eps = 1e-5_f32;
    let shapes: &[(usize, &[DType])] = &[
        (64, EVERY_FORMAT),
        // Squares summed over more than one pass of the workgroup.
        (576, &[DType::Q4_1, DType::F16]),
        // K % 8 != 0: element by element.
        (44, &[DType::F32, DType::F16]),
    ];
    each_case(&gpu, n, shapes, 100, |c| {
        let (m, k, seed) = (c.m, c.k, c.seed);
        // A residual stream far from unit scale, so a missing norm shows.
        let xs = uniform_f32_in(seed, m * k, -8.0, 8.0);
        let gs = uniform_f32_in(seed + 7, k, 0.5, 1.5);
        let x = Tensor::from_slice(&gpu, &xs, &[m, k]).unwrap();
        let g = Tensor::from_slice(&gpu, &gs, &[k]).unwrap();
        let accumulate = seed % 2 == 0;
        let (out, residual) = output(&gpu, (m, n), accumulate, seed);
        let fusion = GemvFusion {
            norm: Some((&g, eps)),
            accumulate,
        };
        linear_fused_into(&gpu, &x, c.w, None, &out, Kernel::Gemv(c.cfg), fusion).unwrap();
        let want = plus(
            normed_reference(&xs, &gs, f64::from(eps), c.held, (m, k, n)),
            &residual,
        );
        let cmp = compare(
            &out.to_vec::<f32>().unwrap(),
            &want,
            Tolerance::F32.for_reduction(k, 2.0),
        );
        let (dtype, cfg) = (c.w.dtype(), c.cfg);
        assert!(
            cmp.passed(),
            "{m}x{k}x{n} {dtype} {cfg} +={accumulate}: {cmp}"
        );
    });
}

#[test]
fn a_residual_add_alone_keeps_x_as_it_is() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (m, k, n) = (2, 64, 24);
    let (w, held) = weights(&gpu, n, k, DType::Q4_0, 31);
    let xs = uniform_f32_in(32, m * k, -1.0, 1.0);
    let x = Tensor::from_slice(&gpu, &xs, &[m, k]).unwrap();
    let bs = uniform_f32_in(33, n, -1.0, 1.0);
    let bias = Tensor::from_slice(&gpu, &bs, &[n]).unwrap();
    let (out, residual) = output(&gpu, (m, n), true, 34);
    let fusion = GemvFusion {
        norm: None,
        accumulate: true,
    };
    linear_fused_into(
        &gpu,
        &x,
        &w,
        Some(&bias),
        &out,
        Kernel::Gemv(GEMV_CANDIDATES[0]),
        fusion,
    )
    .unwrap();
    let x64: Vec<f64> = xs.iter().map(|&v| f64::from(v)).collect();
    let w64: Vec<f64> = held.iter().map(|&v| f64::from(v)).collect();
    let b64: Vec<f64> = bs.iter().map(|&v| f64::from(v)).collect();
    let want = pertoken_reference::linear(
        ArrayView2::from_shape((m, k), &x64[..]).unwrap(),
        ArrayView2::from_shape((n, k), &w64[..]).unwrap(),
        Some(&b64),
    )
    .unwrap();
    let want = plus(want.iter().copied().collect(), &residual);
    let cmp = compare(
        &out.to_vec::<f32>().unwrap(),
        &want,
        Tolerance::F32.for_reduction(k, 1.0),
    );
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn norms_the_kernel_cannot_fuse_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (w, _) = weights(&gpu, 8, 32, DType::F32, 9);
    let x = Tensor::zeros(&gpu, &[2, 32], DType::F32).unwrap();
    let out = Tensor::zeros(&gpu, &[2, 8], DType::F32).unwrap();
    let gemv = Kernel::Gemv(GEMV_CANDIDATES[0]);
    let short = Tensor::zeros(&gpu, &[16], DType::F32).unwrap();
    let fusion = GemvFusion {
        norm: Some((&short, 1e-5)),
        accumulate: false,
    };
    let err = linear_fused_into(&gpu, &x, &w, None, &out, gemv, fusion).unwrap_err();
    assert!(err.to_string().contains("norm weight"), "{err}");
    let g = Tensor::zeros(&gpu, &[32], DType::F32).unwrap();
    let fusion = GemvFusion {
        norm: Some((&g, 1e-5)),
        accumulate: false,
    };
    let x16 = Tensor::zeros(&gpu, &[2, 32], DType::F16).unwrap();
    let err = linear_fused_into(&gpu, &x16, &w, None, &out, gemv, fusion).unwrap_err();
    assert!(err.to_string().contains("f32 x"), "{err}");
    let team = Kernel::Team(TeamConfig { tm: 16, tn: 8 });
    let err = linear_fused_into(&gpu, &x, &w, None, &out, team, fusion).unwrap_err();
    assert!(err.to_string().contains("only the GEMV kernel"), "{err}");
}

#[test]
fn every_gemv_config_fuses_the_gate_in_every_format() {
    let Some(gpu) = gpu_or_skip() else { return };
    let n = 40;
    let shapes: &[(usize, &[DType])] = &[
        // Vector loads of gate and up (K % 8 == 0), every format.
        (64, EVERY_FORMAT),
        (96, &[DType::F16, DType::Q4_1]),
        // K % 8 != 0: element by element.
        (44, &[DType::F32, DType::F16]),
    ];
    each_case(&gpu, n, shapes, 1, |c| {
        let (m, k, seed) = (c.m, c.k, c.seed);
        // Gates over [-6, 6): silu's whole range, not only its linear part.
        let gu = uniform_f32_in(seed, m * 2 * k, -6.0, 6.0);
        let x = Tensor::from_slice(&gpu, &gu, &[m, 2 * k]).unwrap();
        // Every other case adds into a residual; the rest overwrite a poisoned output.
        let accumulate = seed % 2 == 0;
        let (out, residual) = output(&gpu, (m, n), accumulate, seed);
        linear_swiglu_into(&gpu, &x, c.w, &out, Kernel::Gemv(c.cfg), accumulate).unwrap();
        let want = plus(reference(&gu, c.held, (m, k, n)), &residual);
        let cmp = compare(
            &out.to_vec::<f32>().unwrap(),
            &want,
            Tolerance::F32.for_reduction(k, 6.0),
        );
        let (dtype, cfg) = (c.w.dtype(), c.cfg);
        assert!(cmp.passed(), "{m}x{k}x{n} {dtype} {cfg}: {cmp}");
    });
}

#[test]
fn shapes_and_kernels_it_cannot_fuse_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (w, _) = weights(&gpu, 8, 32, DType::F32, 9);
    let gu = Tensor::zeros(&gpu, &[2, 48], DType::F32).unwrap();
    let out = Tensor::zeros(&gpu, &[2, 8], DType::F32).unwrap();
    let gemv = Kernel::Gemv(GEMV_CANDIDATES[0]);
    let err = linear_swiglu_into(&gpu, &gu, &w, &out, gemv, false).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let gu = Tensor::zeros(&gpu, &[2, 64], DType::F32).unwrap();
    let team = Kernel::Team(TeamConfig { tm: 16, tn: 8 });
    let err = linear_swiglu_into(&gpu, &gu, &w, &out, team, false).unwrap_err();
    assert!(err.to_string().contains("only the GEMV kernel"), "{err}");
}
