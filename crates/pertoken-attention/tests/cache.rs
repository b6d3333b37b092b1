//! The KV cache: appends in place, decode over it equals attention over the same keys, overflow
//! is an error.

use pertoken_attention::{AttentionOptions, Kernel, KvCache, TeamKnobs};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, Tensor};
use pertoken_reference::{AttentionShape, random::uniform_f32};

mod common;
use common::{against_reference, per_key_tolerance};

fn tensor(gpu: &Gpu, v: &[f32], shape: &[usize], dtype: DType) -> (Tensor, Vec<f32>) {
    Tensor::from_f32_as(gpu, v, shape, dtype).unwrap()
}

/// A cache, and the host copy of everything appended to it, per KV head, for the reference.
struct Mirrored {
    cache: KvCache,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

impl Mirrored {
    fn new(gpu: &Gpu, (nkv, cap, d): (usize, usize, usize), dtype: DType) -> Mirrored {
        Mirrored {
            cache: KvCache::new(gpu, nkv, cap, d, dtype).unwrap(),
            keys: vec![Vec::new(); nkv],
            values: vec![Vec::new(); nkv],
        }
    }

    /// Appends `t` positions of seeded random keys and values.
    fn append(&mut self, gpu: &Gpu, t: usize, seed: u64) {
        let (nkv, d) = (self.keys.len(), self.cache.keys().shape()[2]);
        let dtype = self.cache.keys().dtype();
        let (k, kv) = tensor(gpu, &uniform_f32(seed, nkv * t * d), &[nkv, t, d], dtype);
        let (v, vv) = tensor(
            gpu,
            &uniform_f32(seed + 1, nkv * t * d),
            &[nkv, t, d],
            dtype,
        );
        self.cache.append(gpu, &k, &v).unwrap();
        for h in 0..nkv {
            self.keys[h].extend_from_slice(&kv[h * t * d..(h + 1) * t * d]);
            self.values[h].extend_from_slice(&vv[h * t * d..(h + 1) * t * d]);
        }
    }

    /// `q_len` seeded random queries of `nh` heads over the whole cache, causal, against the
    /// reference.
    fn check(&self, gpu: &Gpu, nh: usize, q_len: usize, seed: u64, kernel: Kernel) {
        let (nkv, d) = (self.keys.len(), self.cache.keys().shape()[2]);
        let dtype = self.cache.keys().dtype();
        let (q, qv) = tensor(
            gpu,
            &uniform_f32(seed, nh * q_len * d),
            &[nh, q_len, d],
            dtype,
        );
        let dims = (nh, nkv, d, q_len, self.cache.len());
        let host = (qv.as_slice(), self.keys.as_slice(), self.values.as_slice());
        out_matches(gpu, &self.cache, &q, host, dims, kernel);
    }
}

#[test]
fn decode_after_appends_equals_attention_over_the_same_keys() {
    let Some(gpu) = gpu_or_skip() else { return };
    // A narrow head, and the widest (the kernels' wide variants).
    for (d, dtype) in [
        (64usize, DType::F32),
        (64, DType::F16),
        (256, DType::F32),
        (256, DType::F16),
    ] {
        let mut m = Mirrored::new(&gpu, (2, 300, d), dtype);
        for (step, t) in [17usize, 1, 1, 64, 5, 1].into_iter().enumerate() {
            m.append(&gpu, t, step as u64 * 2);
            // Decode (q_len 1) and a speculative block (q_len up to 8), causal.
            for q_len in [1usize, m.cache.len().min(8)] {
                m.check(&gpu, 8, q_len, 100 + step as u64, Kernel::Flash);
            }
        }
        assert_eq!(m.cache.len(), 89);
    }
}

/// A cache keeps its split-KV partial results between calls: they grow when a longer context
/// or more queries need more splits or rows, and a later, smaller call reuses the larger buffers
/// (stale slots past its own are never read).
#[test]
fn partial_results_are_reused_as_calls_grow_and_shrink() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut m = Mirrored::new(&gpu, (2, 2200, 64), DType::F32);
    // 100 keys: one split; 2100: several (on every adapter's plan).
    for (step, t) in [100usize, 2000].into_iter().enumerate() {
        m.append(&gpu, t, 50 + 2 * step as u64);
        for q_len in [1usize, 8, 1] {
            m.check(
                &gpu,
                8,
                q_len,
                70 + (step * 10 + q_len) as u64,
                Kernel::Flash,
            );
        }
    }
    // The same cache through a GPU's knobs (eight teams splitting the keys, each loading its
    // next key ahead), whatever this adapter is, where the team kernel runs.
    let s = pertoken_attention::AttentionShape {
        n_heads: 8,
        n_kv_heads: 2,
        head_dim: 64,
        q_len: 1,
        kv_len: m.cache.len(),
    };
    if pertoken_attention::team_kernel_applies(&s, gpu.capabilities()) {
        let knobs = TeamKnobs::heuristic(&s, false);
        for q_len in [1usize, 8] {
            m.check(&gpu, 8, q_len, 90 + q_len as u64, Kernel::Team(knobs));
        }
    }
}

/// Speculative decoding: a block of drafted positions is appended and checked with a q_len-8
/// query, the rejected ones are rolled back with truncate, and the accepted prefix plus new
/// positions decode exactly like a cache that never held the rejected ones.
#[test]
fn truncate_rolls_back_rejected_draft_positions() {
    let Some(gpu) = gpu_or_skip() else { return };
    for dtype in [DType::F32, DType::F16] {
        let mut m = Mirrored::new(&gpu, (2, 64, 32), dtype);
        m.append(&gpu, 20, 1);
        // Draft 8 positions, verify them in one call, then accept 3.
        m.append(&gpu, 8, 3);
        m.check(&gpu, 8, 8, 5, Kernel::Flash);
        m.cache.truncate(23).unwrap();
        for h in 0..2 {
            m.keys[h].truncate(23 * 32);
            m.values[h].truncate(23 * 32);
        }
        assert_eq!(m.cache.len(), 23);
        m.check(&gpu, 8, 1, 7, Kernel::Flash);
        // The next positions land where the rejected ones were.
        m.append(&gpu, 2, 9);
        assert_eq!(m.cache.len(), 25);
        m.check(&gpu, 8, 1, 11, Kernel::Flash);
        m.check(&gpu, 8, 4, 13, Kernel::Flash);
        let err = m.cache.truncate(26).unwrap_err();
        assert!(err.to_string().contains("only 25 are filled"), "{err}");
        m.cache.truncate(0).unwrap();
        assert!(m.cache.is_empty());
    }
}

fn out_matches(
    gpu: &Gpu,
    cache: &KvCache,
    q: &Tensor,
    (qv, keys, values): (&[f32], &[Vec<f32>], &[Vec<f32>]),
    (nh, nkv, d, q_len, len): (usize, usize, usize, usize, usize),
    kernel: Kernel,
) {
    let options = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    // Into a poisoned output, and (the heuristic's kernel) through the allocating call: the
    // same result.
    let out = Tensor::zeros(gpu, q.shape(), DType::F32).unwrap();
    out.fill(f32::NAN).unwrap();
    cache
        .attention_into_with(gpu, q, &out, options, kernel)
        .unwrap();
    let got = out.to_vec::<f32>().unwrap();
    if kernel == Kernel::Flash {
        let again = cache.attention(gpu, q, options).unwrap();
        assert!(again.to_vec::<f32>().unwrap() == got);
    }
    let k: Vec<f32> = keys.concat();
    let v: Vec<f32> = values.concat();
    let shape = AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len,
        kv_len: len,
        causal: true,
    };
    let cmp = against_reference(&got, (qv, &k, &v), shape, per_key_tolerance(len));
    assert!(cmp.passed(), "len {len} q_len {q_len}: {cmp}");
}

#[test]
fn long_context_decode_and_prefill_split_across_workgroups() {
    let Some(gpu) = gpu_or_skip() else { return };
    // 1500 keys at head_dim 128: several splits per head.
    let (nh, nkv, d, kv) = (4usize, 2usize, 128usize, 1500usize);
    let k = uniform_f32(1, nkv * kv * d);
    let v = uniform_f32(2, nkv * kv * d);
    let tk = Tensor::from_slice(&gpu, &k, &[nkv, kv, d]).unwrap();
    let tv = Tensor::from_slice(&gpu, &v, &[nkv, kv, d]).unwrap();
    for q_len in [1usize, 300] {
        let q: Vec<f32> = uniform_f32(3, nh * q_len * d)
            .iter()
            .map(|x| x * 2.0)
            .collect();
        let tq = Tensor::from_slice(&gpu, &q, &[nh, q_len, d]).unwrap();
        let options = AttentionOptions {
            causal: true,
            scale: None,
            window: None,
        };
        let got = pertoken_attention::attention(&gpu, &tq, &tk, &tv, options)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let shape = AttentionShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: d,
            q_len,
            kv_len: kv,
            causal: true,
        };
        let cmp = against_reference(&got, (&q, &k, &v), shape, per_key_tolerance(kv));
        assert!(cmp.passed(), "q_len {q_len}: {cmp}");
    }
}

#[test]
fn overflow_and_mismatches_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut cache = KvCache::new(&gpu, 2, 10, 32, DType::F32).unwrap();
    let t = |n: usize| {
        Tensor::from_slice(&gpu, &uniform_f32(n as u64, 2 * n * 32), &[2, n, 32]).unwrap()
    };
    cache.append(&gpu, &t(8), &t(8)).unwrap();
    let err = cache.append(&gpu, &t(3), &t(3)).unwrap_err();
    assert!(err.to_string().contains("overflow"), "{err}");
    assert_eq!(cache.len(), 8);
    let wrong = Tensor::from_slice(&gpu, &uniform_f32(1, 3 * 32), &[3, 1, 32]).unwrap();
    assert!(matches!(
        cache.append(&gpu, &wrong, &wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    let q = Tensor::from_slice(&gpu, &uniform_f32(1, 4 * 9 * 32), &[4, 9, 32]).unwrap();
    let causal = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    assert!(cache.attention(&gpu, &q, causal).is_err());
    assert!(KvCache::new(&gpu, 2, 10, 33, DType::F16).is_err());
    let err = KvCache::new(&gpu, 2, 10, 264, DType::F32).unwrap_err();
    assert!(err.to_string().contains("maximum of 256"), "{err}");
    // K and V are bound whole: a cache over the binding limit is refused when made, not at its
    // first append.
    let limit = gpu.capabilities().max_storage_binding as usize;
    let rows = limit / (2 * 128 * 4) + 1;
    let err = KvCache::new(&gpu, 2, rows, 128, DType::F32).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("f16"), "{err}");
    let q4 = Tensor::from_slice(&gpu, &uniform_f32(2, 4 * 32), &[4, 1, 32]).unwrap();
    let wrong_out = Tensor::zeros(&gpu, &[4, 2, 32], DType::F32).unwrap();
    assert!(matches!(
        cache.attention_into(&gpu, &q4, &wrong_out, causal),
        Err(Error::ShapeMismatch { .. })
    ));
    let err = cache
        .attention_into(&gpu, &q4, &q4, causal)
        .unwrap_err()
        .to_string();
    assert!(err.contains("also an input"), "{err}");
    let nan_scale = AttentionOptions {
        causal: true,
        scale: Some(f32::NAN),
        window: None,
    };
    assert!(matches!(
        cache.attention(&gpu, &q4, nan_scale),
        Err(Error::InvalidOption { .. })
    ));
    let out4 = Tensor::zeros(&gpu, &[4, 1, 32], DType::F32).unwrap();
    assert!(matches!(
        cache.attention_into_with(&gpu, &q4, &out4, causal, Kernel::Naive),
        Err(Error::Unsupported { .. })
    ));
    let empty = KvCache::new(&gpu, 2, 10, 32, DType::F32).unwrap();
    let q1 = Tensor::from_slice(&gpu, &uniform_f32(1, 4 * 32), &[4, 1, 32]).unwrap();
    assert!(empty.attention(&gpu, &q1, causal).is_err());
}

/// One append of more words than one dispatch has invocations in x (65535 workgroups of 64):
/// the append kernel strides over the rest, and decode over the cache matches the reference.
#[test]
fn an_append_longer_than_one_dispatch_lands_whole() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (nh, nkv, d) = (2usize, 1usize, 128usize);
    let limit = gpu.capabilities().max_workgroups_per_dimension as usize;
    let t = (limit * 64 / d + 100).min(200_000);
    let mut cache = KvCache::new(&gpu, nkv, t + 3, d, DType::F32).unwrap();
    let (k, kv) = tensor(&gpu, &uniform_f32(7, nkv * t * d), &[nkv, t, d], DType::F32);
    let (v, vv) = tensor(&gpu, &uniform_f32(8, nkv * t * d), &[nkv, t, d], DType::F32);
    cache.keys().fill(f32::NAN).unwrap();
    cache.values().fill(f32::NAN).unwrap();
    cache.append(&gpu, &k, &v).unwrap();
    let got = cache.keys().to_vec::<f32>().unwrap();
    assert!(
        got[..t * d] == kv[..],
        "keys differ after a {t}-position append"
    );
    assert!(
        got[t * d..].iter().all(|x| x.is_nan()),
        "rows past len written"
    );
    assert!(cache.values().to_vec::<f32>().unwrap()[..t * d] == vv[..]);
    let (q, qv) = tensor(&gpu, &uniform_f32(9, nh * d), &[nh, 1, d], DType::F32);
    let host = (qv.as_slice(), &[kv][..], &[vv][..]);
    out_matches(&gpu, &cache, &q, host, (nh, nkv, d, 1, t), Kernel::Flash);
}
