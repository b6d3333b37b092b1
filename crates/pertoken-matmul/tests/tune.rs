//! The autotuner's cache: round trip, corrupt and stale files, and the off switch.

use pertoken_gpu::Tensor;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_matmul::tune::{CACHE_FILE, CACHE_VERSION, candidates};
use pertoken_matmul::{Choice, TuneMode, Tuner, check_linear, linear_with, select_linear};
use pertoken_reference::random::uniform_f32;

fn problem(gpu: &pertoken_gpu::Gpu) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(gpu, &uniform_f32(1, 2 * 64), &[2, 64]).unwrap();
    let w = Tensor::from_slice(gpu, &uniform_f32(2, 96 * 64), &[96, 64]).unwrap();
    (x, w)
}

#[test]
fn tuning_caches_the_winner_and_a_new_tuner_reads_it() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (x, w) = problem(&gpu);
    let mut tuner = Tuner::new(&gpu, TuneMode::Tune, Some(dir.path()));
    let first = tuner.linear(&x, &w, None).unwrap();
    let Choice::Tuned(winner) = first else {
        panic!("expected a measured choice, got {first:?}")
    };
    let p = check_linear(&x, &w, None).unwrap();
    assert!(candidates(&gpu, &p).contains(&winner));
    // The same problem again: no measurement.
    assert_eq!(tuner.linear(&x, &w, None).unwrap(), Choice::Cached(winner));
    tuner.save().unwrap();
    assert!(dir.path().join(CACHE_FILE).exists());

    let mut again = Tuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.linear(&x, &w, None).unwrap(), Choice::Cached(winner));
    // The winner computes the right thing like any kernel (checked in linear.rs); here, that it runs.
    linear_with(&gpu, &x, &w, None, winner)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
}

#[test]
fn a_corrupt_cache_is_ignored_with_a_warning_and_rewritten() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE);
    std::fs::write(&path, "{ this is not json").unwrap();
    let (x, w) = problem(&gpu);
    let mut tuner = Tuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert_eq!(tuner.warnings.len(), 1);
    assert!(
        tuner.warnings[0].contains("corrupt"),
        "{:?}",
        tuner.warnings
    );
    let p = check_linear(&x, &w, None).unwrap();
    let heuristic = select_linear(gpu.capabilities(), &p);
    assert_eq!(
        tuner.linear(&x, &w, None).unwrap(),
        Choice::Heuristic(heuristic)
    );

    let mut tuner = Tuner::new(&gpu, TuneMode::Tune, Some(dir.path()));
    assert!(matches!(
        tuner.linear(&x, &w, None).unwrap(),
        Choice::Tuned(_)
    ));
    tuner.save().unwrap();
    let reread = Tuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(reread.warnings.is_empty(), "{:?}", reread.warnings);
}

#[test]
fn stale_versions_and_unknown_kernels_are_not_trusted() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE);
    std::fs::write(&path, r#"{"version": 0, "adapters": {}}"#).unwrap();
    let t = Tuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(t.warnings[0].contains("version"), "{:?}", t.warnings);

    let (x, w) = problem(&gpu);
    let p = check_linear(&x, &w, None).unwrap();
    let key = "linear|f32|f32|b1|m2|k64|n128";
    let file = format!(
        r#"{{"version": {CACHE_VERSION}, "adapters": {{ {fp:?}: {{ {key:?}: {{"gemv": {{"wg": 7, "rows": 7}}}} }} }} }}"#,
        fp = gpu.fingerprint()
    );
    std::fs::write(&path, file).unwrap();
    let mut t = Tuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("not a current candidate")),
        "{:?}",
        t.warnings
    );
    let heuristic = select_linear(gpu.capabilities(), &p);
    assert_eq!(
        t.linear(&x, &w, None).unwrap(),
        Choice::Heuristic(heuristic)
    );
}

#[test]
fn tuning_off_touches_no_file() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (x, w) = problem(&gpu);
    let mut t = Tuner::new(&gpu, TuneMode::Off, Some(dir.path()));
    assert!(t.path().is_none());
    assert!(matches!(
        t.linear(&x, &w, None).unwrap(),
        Choice::Heuristic(_)
    ));
    t.save().unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn cold_copies_hold_the_same_bytes_and_pass_the_caches() {
    let Some(gpu) = gpu_or_skip() else { return };
    use pertoken_matmul::tune::{COLD_BYTES, cold_copies};
    // 1 MiB of f32: 256 copies (w itself the first) make 256 MiB.
    let values = pertoken_reference::random::uniform_f32(5, 1 << 18);
    let w = Tensor::from_slice(&gpu, &values, &[512, 512]).unwrap();
    let copies = cold_copies(&gpu, &w).unwrap();
    assert_eq!(copies.len() as u64, COLD_BYTES / (1 << 20));
    for c in [&copies[1], &copies[255]] {
        assert_eq!(c.to_vec::<f32>().unwrap(), values);
    }
    // A small w: at most 1024 copies.
    let small = Tensor::from_slice(&gpu, &values[..64], &[8, 8]).unwrap();
    assert_eq!(cold_copies(&gpu, &small).unwrap().len(), 1024);
}
