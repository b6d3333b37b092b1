//! Autotuning the team kernel's plan: time [`team_candidates`] on this adapter and remember the
//! fastest knobs per problem, in `tune-attention-v1.json` beside the matmul tuner's cache
//! ([`pertoken_gpu::tune`]: same directory, same handling of stale or corrupt files).
//!
//! Every candidate computes the same attention (the knobs only divide the work), so the tuner
//! picks by speed alone; the tests check every candidate against the reference.

use std::path::Path;

use pertoken_gpu::tune::{Choice, TuneCache, TuneMode, fastest};
use pertoken_gpu::{DType, Gpu, Result, Tensor};

use crate::{
    AttentionOptions, AttentionShape, Kernel, KvCache, TeamKnobs, attention_into, check,
    team_candidates, team_kernel_applies,
};

/// Version of the cache file's format and of the candidate knobs its winners were chosen from.
pub const CACHE_VERSION: u32 = 1;
/// The attention tuner's cache file inside the cache directory.
pub const CACHE_FILE: &str = "tune-attention-v1.json";

/// Chooses the team kernel's knobs per attention problem, by cache, measurement or heuristic.
/// Problems are keyed by dtype, heads, head_dim, q_len, causality and the key count rounded up
/// to a power of two (a decode loop re-tunes as its context passes one).
#[derive(Debug)]
pub struct AttentionTuner {
    gpu: Gpu,
    cache: TuneCache<TeamKnobs>,
    /// Warnings about the cache file (corrupt, stale), for the caller to show.
    pub warnings: Vec<String>,
}

fn key(op: &str, s: &AttentionShape, dtype: DType, causal: bool) -> String {
    format!(
        "{op}|{dtype}|h{}|kv{}|d{}|q{}|k{}|{}",
        s.n_heads,
        s.n_kv_heads,
        s.head_dim,
        s.q_len,
        s.kv_len.max(1).next_power_of_two(),
        if causal { "causal" } else { "full" }
    )
}

impl AttentionTuner {
    /// A tuner for `gpu` whose cache lives in `dir` (`None`: the default cache directory).
    pub fn new(gpu: &Gpu, mode: TuneMode, dir: Option<&Path>) -> AttentionTuner {
        let cache = TuneCache::open(
            gpu,
            (mode, dir),
            (CACHE_FILE, CACHE_VERSION),
            |k: &TeamKnobs| k.check().is_ok(),
        );
        AttentionTuner {
            gpu: gpu.clone(),
            warnings: cache.warnings.clone(),
            cache,
        }
    }

    /// The cache file, if tuning uses one.
    pub fn path(&self) -> Option<&Path> {
        self.cache.path()
    }

    /// Writes the cache file if anything was tuned, keeping other adapters' entries.
    pub fn save(&mut self) -> std::io::Result<()> {
        self.cache.save()
    }

    /// The kernel for [`KvCache::attention_into_with`] of `q` over `cache`: [`Kernel::Team`]
    /// with the chosen knobs, or [`Kernel::Flash`] (as a heuristic choice) where the team kernel
    /// does not run. Tuning runs each candidate over the cache into a scratch output.
    pub fn decode(
        &mut self,
        cache: &KvCache,
        q: &Tensor,
        options: AttentionOptions,
    ) -> Result<Choice<Kernel>> {
        let s = cache.shape_for(q, options.causal)?;
        options.scale_for(s.head_dim)?;
        let gpu = self.gpu.clone();
        self.choose(("decode", &s, q.dtype(), options.causal), |k, out| {
            cache.attention_into_with(&gpu, q, out, options, k)
        })
    }

    /// The kernel for [`crate::attention_into`] of q, k and v (prefill, or any attention on
    /// plain tensors), as for [`AttentionTuner::decode`].
    pub fn attention(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        options: AttentionOptions,
    ) -> Result<Choice<Kernel>> {
        let s = check(q, k, v, options.causal)?;
        options.scale_for(s.head_dim)?;
        let gpu = self.gpu.clone();
        self.choose(
            ("attention", &s, q.dtype(), options.causal),
            |kernel, out| attention_into(&gpu, q, k, v, out, options, kernel),
        )
    }

    /// `run(kernel, out)` computes the problem with `kernel` into `out`, an f32 tensor shaped
    /// like q (made here, only when tuning).
    fn choose(
        &mut self,
        (op, s, dtype, causal): (&str, &AttentionShape, DType, bool),
        run: impl Fn(Kernel, &Tensor) -> Result<()>,
    ) -> Result<Choice<Kernel>> {
        let caps = self.gpu.capabilities();
        if !team_kernel_applies(s, caps) {
            return Ok(Choice::Heuristic(Kernel::Flash));
        }
        let candidates = team_candidates(s, caps.cpu);
        let gpu = self.gpu.clone();
        let choice = self
            .cache
            .choose(key(op, s, dtype, causal), candidates[0], || {
                let out = Tensor::zeros(&gpu, &[s.n_heads, s.q_len, s.head_dim], DType::F32)?;
                let best = fastest(&gpu, candidates.iter().copied(), |k| {
                    run(Kernel::Team(k), &out)
                })?;
                Ok(best.map(|(_, k)| k))
            })?;
        Ok(match choice {
            Choice::Heuristic(_) => Choice::Heuristic(Kernel::Flash),
            Choice::Cached(k) => Choice::Cached(Kernel::Team(k)),
            Choice::Tuned(k) => Choice::Tuned(Kernel::Team(k)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_bucket_the_context_only() {
        let s = |kv_len| AttentionShape {
            n_heads: 32,
            n_kv_heads: 8,
            head_dim: 128,
            q_len: 1,
            kv_len,
        };
        assert_eq!(
            key("decode", &s(3000), DType::F16, true),
            "decode|f16|h32|kv8|d128|q1|k4096|causal"
        );
        assert_eq!(
            key("decode", &s(4096), DType::F16, true),
            key("decode", &s(2049), DType::F16, true)
        );
        assert_ne!(
            key("decode", &s(4097), DType::F16, true),
            key("decode", &s(4096), DType::F16, true)
        );
        assert_ne!(
            key("decode", &s(4096), DType::F32, true),
            key("decode", &s(4096), DType::F16, true)
        );
    }

    #[test]
    fn knobs_round_trip_through_json() {
        let s = AttentionShape {
            n_heads: 32,
            n_kv_heads: 8,
            head_dim: 128,
            q_len: 1,
            kv_len: 4096,
        };
        for k in team_candidates(&s, false) {
            let text = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<TeamKnobs>(&text).unwrap(), k);
        }
    }
}
