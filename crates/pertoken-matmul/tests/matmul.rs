//! GPU matmul == f64 reference, over the edge-case list and a seeded proptest sweep.
//!
//! Inputs are seeded uniform values in [-1, 1); every output is poisoned with NaN before the
//! kernel runs, so an element the kernel fails to write fails the comparison.

use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, Tensor};
use pertoken_matmul::{
    Kernel, TEAM_CANDIDATES, TILE_CANDIDATES, matmul, matmul_into, matmul_with, select,
};
use pertoken_reference::{Tolerance, compare, matmul_f32, random::uniform_f32};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const EDGES: [usize; 10] = [1, 2, 7, 63, 64, 65, 127, 128, 129, 255];

/// Runs `kernel` (or the selected one) on an m×k·k×n problem and checks it against the reference.
fn check_case(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n: usize,
    kernel: Option<Kernel>,
) -> Result<(), String> {
    let seed = (m * 1_000_003 + k * 1_009 + n) as u64;
    let a = uniform_f32(seed, m * k);
    let b = uniform_f32(seed ^ 0x9e37_79b9, k * n);
    let ta = Tensor::from_slice(gpu, &a, &[m, k]).map_err(|e| e.to_string())?;
    let tb = Tensor::from_slice(gpu, &b, &[k, n]).map_err(|e| e.to_string())?;
    let out = Tensor::zeros(gpu, &[m, n], DType::F32).map_err(|e| e.to_string())?;
    out.fill(f32::NAN).map_err(|e| e.to_string())?;
    let shape = pertoken_matmul::check(&ta, &tb).map_err(|e| e.to_string())?;
    let kernel = kernel.unwrap_or_else(|| select(gpu.capabilities(), shape));
    matmul_into(gpu, &ta, &tb, &out, kernel).map_err(|e| e.to_string())?;
    let got = out.to_vec::<f32>().map_err(|e| e.to_string())?;
    let want = matmul_f32(&a, &b, m, k, n);
    let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
    if cmp.passed() {
        Ok(())
    } else {
        Err(format!("m={m} k={k} n={n} kernel={kernel}: {cmp}"))
    }
}

fn edge_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes = Vec::new();
    for &e in &EDGES {
        shapes.push((e, 33, 65));
        shapes.push((65, e, 33));
        shapes.push((33, 65, e));
    }
    shapes.extend([
        (1, 1, 1),
        (1, 255, 1),
        (255, 1, 255),
        (1, 129, 255),
        (255, 7, 1),
        (127, 129, 128),
        (129, 255, 127),
        (64, 64, 64),
        (128, 128, 128),
        (2, 3, 5),
    ]);
    shapes
}

fn run_all(gpu: &Gpu, kernel: Option<Kernel>) {
    let failures: Vec<String> = edge_shapes()
        .into_iter()
        .filter_map(|(m, k, n)| check_case(gpu, m, k, n, kernel).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn selected_kernel_matches_reference_on_edge_cases() {
    let Some(gpu) = gpu_or_skip() else { return };
    run_all(&gpu, None);
}

#[test]
fn naive_kernel_matches_reference_on_edge_cases() {
    let Some(gpu) = gpu_or_skip() else { return };
    run_all(&gpu, Some(Kernel::Naive));
}

#[test]
fn every_tile_candidate_matches_reference_on_edge_cases() {
    let Some(gpu) = gpu_or_skip() else { return };
    for cfg in TILE_CANDIDATES
        .iter()
        .filter(|c| c.fits(gpu.capabilities()))
    {
        run_all(&gpu, Some(Kernel::Tiled(*cfg)));
    }
}

#[test]
fn every_team_candidate_matches_reference_on_edge_cases() {
    let Some(gpu) = gpu_or_skip() else { return };
    for cfg in TEAM_CANDIDATES
        .iter()
        .filter(|c| c.fits(gpu.capabilities()))
    {
        run_all(&gpu, Some(Kernel::Team(*cfg)));
    }
}

#[test]
fn proptest_sweep_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let config = Config {
        cases: 24,
        rng_seed: RngSeed::Fixed(0x7065_7274),
        failure_persistence: None,
        ..Config::default()
    };
    let kernels: Vec<Option<Kernel>> = std::iter::once(None)
        .chain(std::iter::once(Some(Kernel::Naive)))
        .chain(TILE_CANDIDATES.iter().map(|c| Some(Kernel::Tiled(*c))))
        .chain(TEAM_CANDIDATES.iter().map(|c| Some(Kernel::Team(*c))))
        .collect();
    let mut runner = TestRunner::new(config);
    runner
        .run(
            &(1usize..=200, 1usize..=200, 1usize..=200, 0..kernels.len()),
            |(m, k, n, ki)| {
                let kernel = kernels[ki].filter(|k| match k {
                    Kernel::Tiled(c) => c.fits(gpu.capabilities()),
                    Kernel::Team(c) => c.fits(gpu.capabilities()),
                    Kernel::Naive | Kernel::Gemv(_) => true,
                });
                check_case(&gpu, m, k, n, kernel).map_err(TestCaseError::fail)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn larger_problem_with_large_k() {
    let Some(gpu) = gpu_or_skip() else { return };
    check_case(&gpu, 96, 2051, 80, None).unwrap();
    check_case(&gpu, 33, 1027, 17, Some(Kernel::Naive)).unwrap();
}

#[test]
fn results_are_identical_across_launches() {
    let Some(gpu) = gpu_or_skip() else { return };
    let a = Tensor::from_slice(&gpu, &uniform_f32(1, 70 * 90), &[70, 90]).unwrap();
    let b = Tensor::from_slice(&gpu, &uniform_f32(2, 90 * 50), &[90, 50]).unwrap();
    let c1 = matmul(&gpu, &a, &b).unwrap().to_vec::<f32>().unwrap();
    let c2 = matmul(&gpu, &a, &b).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(c1, c2);
}

#[test]
fn chained_ops_share_one_submit_and_are_ordered() {
    let Some(gpu) = gpu_or_skip() else { return };
    // (A·B)·C recorded back to back, downloaded once.
    let (m, k, n, p) = (37, 45, 29, 53);
    let a = uniform_f32(11, m * k);
    let b = uniform_f32(12, k * n);
    let c = uniform_f32(13, n * p);
    let ta = Tensor::from_slice(&gpu, &a, &[m, k]).unwrap();
    let tb = Tensor::from_slice(&gpu, &b, &[k, n]).unwrap();
    let tc = Tensor::from_slice(&gpu, &c, &[n, p]).unwrap();
    let ab = matmul(&gpu, &ta, &tb).unwrap();
    let abc = matmul(&gpu, &ab, &tc).unwrap();
    let got = abc.to_vec::<f32>().unwrap();
    let ab_ref: Vec<f32> = matmul_f32(&a, &b, m, k, n)
        .iter()
        .map(|&x| x as f32)
        .collect();
    let want = matmul_f32(&ab_ref, &c, m, n, p);
    let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k * n, 1.0));
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some(gpu) = gpu_or_skip() else { return };
    let t = |shape: &[usize]| {
        let len = shape.iter().product();
        Tensor::from_slice(&gpu, &uniform_f32(5, len), shape).unwrap()
    };
    let a = t(&[4, 5]);
    let b = t(&[6, 3]);
    match matmul(&gpu, &a, &b) {
        Err(Error::ShapeMismatch { lhs, rhs, .. }) => {
            assert_eq!((lhs, rhs), (vec![4, 5], vec![6, 3]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let rank4 = t(&[2, 2, 2, 5]);
    assert!(matches!(
        matmul(&gpu, &rank4, &t(&[5, 2])),
        Err(Error::InvalidShape { .. })
    ));
    let batch2 = t(&[2, 3, 5]);
    let batch3 = t(&[3, 5, 4]);
    assert!(matches!(
        matmul(&gpu, &batch2, &batch3),
        Err(Error::ShapeMismatch { .. })
    ));
    let q = Tensor::from_quantized(&gpu, &[0u8; 34], &[1, 32], DType::Q8_0).unwrap();
    let x32 = t(&[2, 1]);
    assert!(matches!(
        matmul(&gpu, &x32, &q),
        Err(Error::Unsupported { .. })
    ));
    let rank1 = t(&[5]);
    assert!(matches!(
        matmul(&gpu, &a, &rank1),
        Err(Error::InvalidShape { .. })
    ));

    // Empty shapes cannot even be made into tensors.
    for shape in [[0usize, 5], [4, 0]] {
        let err = Tensor::zeros(&gpu, &shape, DType::F32).unwrap_err();
        assert!(matches!(err, Error::InvalidShape { .. }), "{err}");
        let err = Tensor::from_slice::<f32>(&gpu, &[], &shape).unwrap_err();
        assert!(err.to_string().contains("zero"), "{err}");
    }

    let b = t(&[5, 3]);
    let wrong_out = Tensor::zeros(&gpu, &[3, 4], DType::F32).unwrap();
    assert!(matches!(
        matmul_into(&gpu, &a, &b, &wrong_out, Kernel::Naive),
        Err(Error::ShapeMismatch { .. })
    ));
    let sq = t(&[5, 5]);
    assert!(matches!(
        matmul_into(&gpu, &sq, &sq, &sq, Kernel::Naive),
        Err(Error::InvalidShape { .. })
    ));
    let half_out = Tensor::from_slice(&gpu, &[half::f16::from_f32(1.5); 12], &[4, 3]).unwrap();
    assert!(matches!(
        matmul_into(&gpu, &a, &b, &half_out, Kernel::Naive),
        Err(Error::DTypeMismatch { .. })
    ));
    // The naive baseline is f32 only.
    let half_b = Tensor::from_slice(&gpu, &[half::f16::from_f32(1.5); 15], &[5, 3]).unwrap();
    assert!(matches!(
        matmul_with(&gpu, &a, &half_b, Kernel::Naive),
        Err(Error::Unsupported { .. })
    ));

    let bad_cfg = pertoken_matmul::TileConfig {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 3,
        tn: 4,
    };
    assert!(matches!(
        matmul_with(&gpu, &a, &b, Kernel::Tiled(bad_cfg)),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn concurrent_threads_on_one_gpu_each_get_their_own_results() {
    let Some(gpu) = gpu_or_skip() else { return };
    // Threads share the pending encoder; each one's download must include its own ops.
    std::thread::scope(|s| {
        for t in 0..4usize {
            let gpu = gpu.clone();
            s.spawn(move || {
                for i in 0..10usize {
                    let (m, k, n) = (17 + t, 31 + i, 23 + t * i);
                    check_case(&gpu, m, k, n, None).unwrap_or_else(|e| panic!("thread {t}: {e}"));
                }
            });
        }
    });
}
