//! linear (x·wᵀ + bias) in every weight format, batched and mixed-precision matmul, and weights
//! split over the storage-binding limit, all against the f64 reference.
//!
//! Quantized kernels are checked against the reference applied to the dequantized weights (the
//! same bytes the kernel reads): that isolates the kernel's error from the format's. f16 inputs
//! are rounded to f16 before the reference sees them, for the same reason.

use ndarray::ArrayView2;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, GpuOptions, Tensor};
use pertoken_matmul::{
    GEMV_CANDIDATES, GEMV_MAX_M, Kernel, TEAM_CANDIDATES, TeamConfig, TileConfig, check_linear,
    linear, linear_into, matmul, matmul_with, select_linear,
};
use pertoken_reference::{
    QuantFormat, Tolerance, compare, dequantize, quantize, random::uniform_f32,
};

/// Uploads `values` as `dtype`, returning the tensor and the values it actually holds.
fn upload(gpu: &Gpu, values: &[f32], shape: &[usize], dtype: DType) -> (Tensor, Vec<f32>) {
    match QuantFormat::from_name(dtype.name()) {
        Some(f) => {
            let bytes = quantize(f, values).unwrap();
            let back = dequantize(f, &bytes).unwrap();
            (
                Tensor::from_quantized(gpu, &bytes, shape, dtype).unwrap(),
                back,
            )
        }
        _ => Tensor::from_f32_as(gpu, values, shape, dtype).unwrap(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    x: DType,
    w: DType,
    bias: bool,
}

/// Runs one linear case with `kernel` (or the selected one); Err describes a mismatch.
fn run(gpu: &Gpu, c: Case, kernel: Option<Kernel>) -> Result<(), String> {
    let seed = (c.m * 7919 + c.k * 31 + c.n) as u64;
    let (x, xv) = upload(gpu, &uniform_f32(seed, c.m * c.k), &[c.m, c.k], c.x);
    let (w, wv) = upload(gpu, &uniform_f32(seed + 1, c.n * c.k), &[c.n, c.k], c.w);
    let bias_v = uniform_f32(seed + 2, c.n);
    let bias = c
        .bias
        .then(|| Tensor::from_slice(gpu, &bias_v, &[c.n]).unwrap());
    let out = Tensor::zeros(gpu, &[c.m, c.n], DType::F32).unwrap();
    out.fill(f32::NAN).unwrap();
    let p = check_linear(&x, &w, bias.as_ref()).map_err(|e| e.to_string())?;
    let kernel = kernel.unwrap_or_else(|| select_linear(gpu.capabilities(), &p));
    linear_into(gpu, &x, &w, bias.as_ref(), &out, kernel)
        .map_err(|e| format!("{c:?} {kernel}: {e}"))?;
    let got = out.to_vec::<f32>().unwrap();
    let xa = ArrayView2::from_shape((c.m, c.k), &xv[..]).unwrap();
    let wa = ArrayView2::from_shape((c.n, c.k), &wv[..]).unwrap();
    let want = pertoken_reference::linear(xa, wa, c.bias.then_some(&bias_v[..])).unwrap();
    let want: Vec<f64> = want.iter().copied().collect();
    let cmp = compare(&got, &want, Tolerance::F32.for_reduction(c.k, 1.0));
    if cmp.passed() {
        Ok(())
    } else {
        Err(format!("{c:?} kernel={kernel}: {cmp}"))
    }
}

const ALL_W: [DType; 10] = DType::WEIGHTS;

/// The formats every kernel configuration is checked in.
const EVERY_CONFIG_W: [DType; 5] = [
    DType::F32,
    DType::F16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
];

/// The formats added with the K-quants. A format's code (its unit, or q4_of) is the same in
/// every configuration of a kernel, so these run in a few configurations that between them take
/// each path (one row of w per invocation and several, split-K over few invocations and many):
/// on a software adapter each (configuration, format) pair is a pipeline to compile.
const NEWER_W: [DType; 5] = [
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Row lengths for weights of `w`: ragged ones for f32 and f16, whole blocks (one, an odd
/// number, several) for the quantized formats.
fn ks(w: DType) -> &'static [usize] {
    match w.block().0 {
        1 => &[1, 7, 32, 44, 63, 96],
        32 => &[32, 96, 160],
        _ => &[256, 768],
    }
}

fn cases(ms: &[usize]) -> Vec<Case> {
    cases_in(&ALL_W, &[DType::F32, DType::F16], ms)
}

fn cases_in(formats: &[DType], xs: &[DType], ms: &[usize]) -> Vec<Case> {
    let mut out = Vec::new();
    for &w in formats {
        for &x in xs {
            for &m in ms {
                for &k in ks(w) {
                    for &n in &[1usize, 5, 64, 129] {
                        out.push(Case {
                            m,
                            k,
                            n,
                            x,
                            w,
                            bias: (m + k + n) % 2 == 0,
                        });
                    }
                }
            }
        }
    }
    out
}

fn assert_all(gpu: &Gpu, cases: &[Case], kernel: Option<Kernel>) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&c| run(gpu, c, kernel).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn selected_kernels_match_reference_in_every_format() {
    let Some(gpu) = gpu_or_skip() else { return };
    let both = [DType::F32, DType::F16];
    assert_all(
        &gpu,
        &cases_in(&EVERY_CONFIG_W, &both, &[1, 2, 3, 16, 17, 40]),
        None,
    );
    assert_all(&gpu, &cases_in(&NEWER_W, &both, &[1, 3, 40]), None);
}

#[test]
fn every_gemv_config_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    for (i, cfg) in GEMV_CANDIDATES.iter().enumerate() {
        // 1, 5 and 16 rows of x where the configuration takes them, else its largest (with
        // several rows of w per invocation, fewer rows of x fit in registers).
        let most = (1..=GEMV_MAX_M).filter(|&m| cfg.is_valid(m)).max().unwrap();
        let ms: Vec<usize> = [1, 5, 16, most]
            .into_iter()
            .filter(|&m| cfg.is_valid(m))
            .collect();
        let gemv = Some(Kernel::Gemv(*cfg));
        let both = [DType::F32, DType::F16];
        assert_all(&gpu, &cases_in(&EVERY_CONFIG_W, &both, &ms), gemv);
        // The newer formats (f32 x: x's loads do not depend on w's format) in configurations
        // 0 (64 invocations a row, 1 row an invocation), 5 (256 a row) and 13 (16 rows an
        // invocation, 4 invocations a row), at 1 row of x and at the most.
        if [0, 5, 13].contains(&i) {
            let ends: Vec<usize> = [1, most].into_iter().filter(|&m| cfg.is_valid(m)).collect();
            assert_all(&gpu, &cases_in(&NEWER_W, &[DType::F32], &ends), gemv);
        }
    }
}

#[test]
fn tiled_kernel_matches_reference_for_small_and_large_m() {
    let Some(gpu) = gpu_or_skip() else { return };
    for (i, cfg) in [
        TileConfig {
            bm: 32,
            bn: 32,
            bk: 16,
            tm: 4,
            tn: 4,
        },
        TileConfig {
            bm: 64,
            bn: 64,
            bk: 32,
            tm: 8,
            tn: 8,
        },
        TileConfig {
            bm: 64,
            bn: 64,
            bk: 8,
            tm: 8,
            tn: 8,
        },
    ]
    .into_iter()
    .enumerate()
    {
        assert_all(
            &gpu,
            &cases_in(&EVERY_CONFIG_W, &[DType::F32, DType::F16], &[1, 33, 70]),
            Some(Kernel::Tiled(cfg)),
        );
        if i == 0 {
            let newer = cases_in(&NEWER_W, &[DType::F32], &[1, 70]);
            assert_all(&gpu, &newer, Some(Kernel::Tiled(cfg)));
        }
    }
}

#[test]
fn every_team_candidate_matches_reference_in_every_format() {
    let Some(gpu) = gpu_or_skip() else { return };
    for (i, cfg) in TEAM_CANDIDATES
        .iter()
        .filter(|c| c.fits(gpu.capabilities()))
        .enumerate()
    {
        let team = Some(Kernel::Team(*cfg));
        let both = [DType::F32, DType::F16];
        assert_all(
            &gpu,
            &cases_in(&EVERY_CONFIG_W, &both, &[1, 9, 33, 70]),
            team,
        );
        if i == 0 {
            assert_all(&gpu, &cases_in(&NEWER_W, &[DType::F32], &[1, 70]), team);
        }
    }
}

/// Both f16 paths on one adapter: packed u32 (adapters without shader-f16, and CPU adapters by
/// default) and f16 loads (where the adapter has shader-f16).
#[test]
fn f16_weights_with_and_without_shader_f16_match_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    drop(gpu);
    for shader_f16 in [false, true] {
        let g = Gpu::new(&GpuOptions {
            shader_f16: Some(shader_f16),
            ..GpuOptions::from_env().unwrap()
        })
        .unwrap();
        if g.capabilities().shader_f16 != shader_f16 {
            eprintln!("skipped shader_f16 = {shader_f16}: the adapter has no shader-f16");
            continue;
        }
        let f16_weights: Vec<Case> = cases(&[1, 5, 16, 33])
            .into_iter()
            .filter(|c| c.w == DType::F16)
            .collect();
        assert_all(&g, &f16_weights, None);
        for cfg in [GEMV_CANDIDATES[0], GEMV_CANDIDATES[12]] {
            let ms: Vec<usize> = [1, 2].into_iter().filter(|&m| cfg.is_valid(m)).collect();
            let cs: Vec<Case> = cases(&ms)
                .into_iter()
                .filter(|c| c.w == DType::F16)
                .collect();
            assert_all(&g, &cs, Some(Kernel::Gemv(cfg)));
        }
        // The tiled kernel's f16 B, as a weight [N, K] here and as [K, N] in matmul below.
        let tiled = Kernel::Tiled(TileConfig {
            bm: 32,
            bn: 32,
            bk: 16,
            tm: 4,
            tn: 4,
        });
        assert_all(&g, &f16_weights, Some(tiled));
        for (m, k, n) in [(33, 40, 21), (17, 64, 64), (5, 7, 3)] {
            let (a, av) = upload(&g, &uniform_f32(20, m * k), &[m, k], DType::F32);
            let (b, bv) = upload(&g, &uniform_f32(21, k * n), &[k, n], DType::F16);
            let got = matmul_with(&g, &a, &b, tiled)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let want = pertoken_reference::matmul_f32(&av, &bv, m, k, n);
            let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
            assert!(cmp.passed(), "shader_f16 {shader_f16} {m}x{k}x{n}: {cmp}");
        }
    }
}

#[test]
fn decode_shapes_at_realistic_k() {
    let Some(gpu) = gpu_or_skip() else { return };
    for w in ALL_W {
        for m in [1, 4, 16] {
            run(
                &gpu,
                Case {
                    m,
                    k: 4096,
                    n: 96,
                    x: DType::F32,
                    w,
                    bias: false,
                },
                None,
            )
            .unwrap();
        }
    }
}

#[test]
fn leading_dims_of_x_are_flattened() {
    let Some(gpu) = gpu_or_skip() else { return };
    let x = Tensor::from_slice(&gpu, &uniform_f32(1, 2 * 3 * 32), &[2, 3, 32]).unwrap();
    let (w, _) = upload(&gpu, &uniform_f32(2, 5 * 32), &[5, 32], DType::Q8_0);
    let y = linear(&gpu, &x, &w, None).unwrap();
    assert_eq!(y.shape(), &[2, 3, 5]);
    let flat = Tensor::from_slice(&gpu, &uniform_f32(1, 2 * 3 * 32), &[6, 32]).unwrap();
    let y2 = linear(&gpu, &flat, &w, None).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), y2.to_vec::<f32>().unwrap());
}

#[test]
fn batched_and_mixed_precision_matmul() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (bt, m, k, n) = (3, 19, 37, 21);
    for (a_dt, b_dt) in [
        (DType::F32, DType::F32),
        (DType::F16, DType::F32),
        (DType::F32, DType::F16),
        (DType::F16, DType::F16),
    ] {
        for (a_batched, b_batched) in [(true, true), (true, false), (false, true)] {
            let a_shape: Vec<usize> = if a_batched {
                vec![bt, m, k]
            } else {
                vec![m, k]
            };
            let b_shape: Vec<usize> = if b_batched {
                vec![bt, k, n]
            } else {
                vec![k, n]
            };
            let a_len: usize = a_shape.iter().product();
            let b_len: usize = b_shape.iter().product();
            let (a, av) = upload(&gpu, &uniform_f32(10, a_len), &a_shape, a_dt);
            let (b, bv) = upload(&gpu, &uniform_f32(11, b_len), &b_shape, b_dt);
            let c = matmul(&gpu, &a, &b).unwrap();
            assert_eq!(c.shape(), &[bt, m, n]);
            let got = c.to_vec::<f32>().unwrap();
            let mut want = Vec::new();
            for i in 0..bt {
                let ai = if a_batched {
                    &av[i * m * k..(i + 1) * m * k]
                } else {
                    &av[..]
                };
                let bi = if b_batched {
                    &bv[i * k * n..(i + 1) * k * n]
                } else {
                    &bv[..]
                };
                want.extend(pertoken_reference::matmul_f32(ai, bi, m, k, n));
            }
            let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
            assert!(
                cmp.passed(),
                "{a_dt}/{b_dt} batched {a_batched}/{b_batched}: {cmp}"
            );
        }
    }
}

/// A second handle on the same adapter whose storage-binding limit is lowered to `limit`.
fn gpu_with_limit(limit: u64) -> Option<Gpu> {
    gpu_or_skip()?;
    let options = GpuOptions {
        max_storage_binding: Some(limit),
        ..GpuOptions::from_env().unwrap()
    };
    Some(Gpu::new(&options).unwrap())
}

#[test]
fn weights_over_the_binding_limit_are_split_along_n() {
    let Some(gpu) = gpu_with_limit(4096) else {
        return;
    };
    assert_eq!(gpu.capabilities().max_storage_binding, 4096);
    // GEMV: every format, weights of 10–77 KB through 4 KB windows; the K-quants' rows (2
    // super-blocks: 288–420 bytes) through 64 KiB ones, in which a window of Q6_K (blocks on 2-byte
    // boundaries) starts on 256 bytes only every 64 rows.
    let wide = gpu_with_limit(65536).unwrap();
    for w in ALL_W {
        let kquant = w.block().0 > 32;
        let c = Case {
            m: 3,
            k: if kquant { 512 } else { 64 },
            n: 300,
            x: DType::F32,
            w,
            bias: true,
        };
        run(if kquant { &wide } else { &gpu }, c, None).unwrap();
    }
    // Tiled: M over the GEMV range.
    let gpu = gpu_with_limit(8192).unwrap();
    for w in [DType::F32, DType::F16] {
        let c = Case {
            m: 20,
            k: 32,
            n: 100,
            x: DType::F32,
            w,
            bias: true,
        };
        run(&gpu, c, None).unwrap();
        run(
            &gpu,
            c,
            Some(Kernel::Tiled(TileConfig {
                bm: 32,
                bn: 32,
                bk: 16,
                tm: 4,
                tn: 4,
            })),
        )
        .unwrap();
    }
    // The team kernel, every format, through 8 KiB windows (64 KiB for the K-quants).
    let team = TeamConfig { tm: 16, tn: 8 };
    if team.fits(gpu.capabilities()) {
        for w in ALL_W {
            let kquant = w.block().0 > 32;
            let c = Case {
                m: 20,
                k: if kquant { 512 } else { 64 },
                n: if kquant { 300 } else { 100 },
                x: DType::F32,
                w,
                bias: true,
            };
            run(
                if kquant { &wide } else { &gpu },
                c,
                Some(Kernel::Team(team)),
            )
            .unwrap();
        }
    }
}

#[test]
fn a_weight_that_cannot_be_split_is_an_error_naming_the_limit() {
    let Some(gpu) = gpu_with_limit(256) else {
        return;
    };
    let w = Tensor::from_slice(&gpu, &uniform_f32(1, 8 * 128), &[8, 128]).unwrap();
    let x = Tensor::from_slice(&gpu, &uniform_f32(2, 128), &[1, 128]).unwrap();
    let err = linear(&gpu, &x, &w, None).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("max_storage_buffer_binding_size"),
        "{err}"
    );
}

#[test]
fn bad_linear_inputs_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let x = Tensor::from_slice(&gpu, &uniform_f32(1, 2 * 32), &[2, 32]).unwrap();
    let w = Tensor::from_slice(&gpu, &uniform_f32(2, 4 * 16), &[4, 16]).unwrap();
    assert!(matches!(
        linear(&gpu, &x, &w, None),
        Err(Error::ShapeMismatch { .. })
    ));
    let w = Tensor::from_slice(&gpu, &uniform_f32(2, 4 * 32), &[4, 32]).unwrap();
    let bad_bias = Tensor::from_slice(&gpu, &uniform_f32(3, 3), &[3]).unwrap();
    assert!(matches!(
        linear(&gpu, &x, &w, Some(&bad_bias)),
        Err(Error::ShapeMismatch { .. })
    ));
    let w3 = Tensor::from_slice(&gpu, &uniform_f32(2, 2 * 4 * 32), &[2, 4, 32]).unwrap();
    assert!(matches!(
        linear(&gpu, &x, &w3, None),
        Err(Error::InvalidShape { .. })
    ));
    // Quantized weights need K % 32 == 0: such a tensor cannot even be made.
    let err = Tensor::from_quantized(&gpu, &[0u8; 18], &[1, 16], DType::Q4_0).unwrap_err();
    assert!(err.to_string().contains("blocks of 32"), "{err}");
    let err = Tensor::from_quantized(&gpu, &[0u8; 17], &[1, 32], DType::Q4_0).unwrap_err();
    assert!(matches!(err, Error::DataLength { .. }), "{err}");
    // GEMV refuses more rows than it holds.
    let x17 = Tensor::from_slice(&gpu, &uniform_f32(1, 17 * 32), &[17, 32]).unwrap();
    let gemv = Kernel::Gemv(GEMV_CANDIDATES[0]);
    assert!(matches!(
        pertoken_matmul::linear_with(&gpu, &x17, &w, None, gemv),
        Err(Error::Unsupported { .. })
    ));
}
