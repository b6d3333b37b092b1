//! The attention tuner: it picks among the team kernel's candidate knobs, caches the winner,
//! reads it back, and never trusts a corrupt or stale file.

use pertoken_attention::{
    AttentionOptions, AttentionShape, AttentionTuner, CACHE_FILE, CACHE_VERSION, Kernel, KvCache,
    TeamKnobs, team_candidates, team_kernel_applies,
};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::tune::{Choice, TuneMode};
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_reference::random::uniform_f32;

mod common;
use common::{against_reference, per_key_tolerance};

const OPTS: AttentionOptions = AttentionOptions {
    causal: true,
    scale: None,
    window: None,
};

/// 8 / 2 heads, head_dim 64, 300 keys in a cache, one query; the host copies for the reference.
fn decode_problem(gpu: &Gpu) -> (KvCache, Tensor, [Vec<f32>; 3]) {
    let (nh, nkv, d, n) = (8, 2, 64, 300);
    let k = uniform_f32(1, nkv * n * d);
    let v = uniform_f32(2, nkv * n * d);
    let q = uniform_f32(3, nh * d);
    let mut cache = KvCache::new(gpu, nkv, n, d, DType::F32).unwrap();
    let up = |x: &[f32], shape: &[usize]| Tensor::from_slice(gpu, x, shape).unwrap();
    cache
        .append(gpu, &up(&k, &[nkv, n, d]), &up(&v, &[nkv, n, d]))
        .unwrap();
    (cache, up(&q, &[nh, 1, d]), [q, k, v])
}

fn shape(cache: &KvCache, q: &Tensor) -> AttentionShape {
    AttentionShape {
        n_heads: q.shape()[0],
        n_kv_heads: cache.keys().shape()[0],
        head_dim: cache.keys().shape()[2],
        q_len: q.shape()[1],
        kv_len: cache.len(),
    }
}

fn teams_run_here(gpu: &Gpu) -> bool {
    let probe = AttentionShape {
        n_heads: 1,
        n_kv_heads: 1,
        head_dim: 8,
        q_len: 1,
        kv_len: 1,
    };
    team_kernel_applies(&probe, gpu.capabilities())
}

#[test]
fn tuning_caches_the_winner_and_a_new_tuner_reads_it() {
    let Some(gpu) = gpu_or_skip() else { return };
    if !teams_run_here(&gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cache, q, [qv, kv, vv]) = decode_problem(&gpu);
    let mut tuner = AttentionTuner::new(&gpu, TuneMode::Tune, Some(dir.path()));
    let first = tuner.decode(&cache, &q, OPTS).unwrap();
    let Choice::Tuned(Kernel::Team(winner)) = first else {
        panic!("expected measured knobs, got {first:?}")
    };
    let candidates = team_candidates(&shape(&cache, &q), gpu.capabilities().cpu);
    assert!(candidates.contains(&winner), "{winner}");
    // The same problem again, and a context in the same power-of-two bucket: no measurement.
    assert_eq!(
        tuner.decode(&cache, &q, OPTS).unwrap(),
        Choice::Cached(Kernel::Team(winner))
    );
    tuner.save().unwrap();
    assert!(dir.path().join(CACHE_FILE).exists());

    let mut again = AttentionTuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    let choice = again.decode(&cache, &q, OPTS).unwrap();
    assert_eq!(choice, Choice::Cached(Kernel::Team(winner)));
    // The winner computes attention like every candidate (checked in attention.rs): run it
    // into a poisoned output.
    let out = Tensor::zeros(&gpu, q.shape(), DType::F32).unwrap();
    out.fill(f32::NAN).unwrap();
    cache
        .attention_into_with(&gpu, &q, &out, OPTS, choice.kernel())
        .unwrap();
    let shape = pertoken_reference::AttentionShape {
        n_heads: 8,
        n_kv_heads: 2,
        head_dim: 64,
        q_len: 1,
        kv_len: 300,
        causal: true,
    };
    let got = out.to_vec::<f32>().unwrap();
    let cmp = against_reference(&got, (&qv, &kv, &vv), shape, per_key_tolerance(300));
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn plain_attention_tunes_too_and_other_shapes_keep_the_heuristic() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut tuner = AttentionTuner::new(&gpu, TuneMode::Tune, Some(dir.path()));
    let t = |shape: &[usize], seed| {
        Tensor::from_slice(&gpu, &uniform_f32(seed, shape.iter().product()), shape).unwrap()
    };
    let (q, k) = (t(&[4, 16, 32], 1), t(&[2, 40, 32], 2));
    let choice = tuner.attention(&q, &k, &k, OPTS).unwrap();
    if teams_run_here(&gpu) {
        assert!(
            matches!(choice, Choice::Tuned(Kernel::Team(_))),
            "{choice:?}"
        );
    }
    // head_dim 36 is not the team kernel's: the heuristic (the tiled kernel), nothing tuned.
    let (q, k) = (t(&[2, 3, 36], 3), t(&[1, 9, 36], 4));
    assert_eq!(
        tuner.attention(&q, &k, &k, OPTS).unwrap(),
        Choice::Heuristic(Kernel::Flash)
    );
    // Bad input is the same error as without the tuner.
    let wrong = t(&[2, 9, 32], 5);
    assert!(tuner.attention(&q, &wrong, &wrong, OPTS).is_err());
}

#[test]
fn a_corrupt_or_stale_cache_is_ignored_with_a_warning() {
    let Some(gpu) = gpu_or_skip() else { return };
    if !teams_run_here(&gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE);
    let (cache, q, _) = decode_problem(&gpu);

    std::fs::write(&path, "{ not json").unwrap();
    let mut t = AttentionTuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(t.warnings[0].contains("corrupt"), "{:?}", t.warnings);
    assert_eq!(
        t.decode(&cache, &q, OPTS).unwrap(),
        Choice::Heuristic(Kernel::Flash)
    );

    std::fs::write(&path, r#"{"version": 99, "adapters": {}}"#).unwrap();
    let t = AttentionTuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(t.warnings[0].contains("version 99"), "{:?}", t.warnings);

    // An entry with knobs out of range (three teams) is not trusted.
    let s = shape(&cache, &q);
    let bad = TeamKnobs {
        teams: 3,
        ..TeamKnobs::heuristic(&s, gpu.capabilities().cpu)
    };
    let file = serde_json::json!({
        "version": CACHE_VERSION,
        "adapters": { gpu.fingerprint(): { "decode|f32|h8|kv2|d64|q1|k512|causal": bad } },
    });
    std::fs::write(&path, file.to_string()).unwrap();
    let mut t = AttentionTuner::new(&gpu, TuneMode::CacheOnly, Some(dir.path()));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("not a current candidate")),
        "{:?}",
        t.warnings
    );
    assert_eq!(
        t.decode(&cache, &q, OPTS).unwrap(),
        Choice::Heuristic(Kernel::Flash)
    );
}

#[test]
fn tuning_off_touches_no_file() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cache, q, _) = decode_problem(&gpu);
    let mut t = AttentionTuner::new(&gpu, TuneMode::Off, Some(dir.path()));
    assert!(t.path().is_none());
    assert_eq!(
        t.decode(&cache, &q, OPTS).unwrap(),
        Choice::Heuristic(Kernel::Flash)
    );
    t.save().unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
