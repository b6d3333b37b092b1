//! Autotuning: time the candidate kernels on this adapter and remember the winner.
//!
//! Winners are cached per adapter fingerprint, per op, dtypes and shape bucket (each dimension
//! rounded up to a power of two), in `tune-v4.json` under the user's cache directory; the file's
//! handling (location, warnings, never trusting a stale or corrupt file) and the timing of
//! candidates are [`pertoken_gpu::tune`]'s, shared with the attention tuner.
//!
//! A linear's candidates are timed from memory: each call reads one of byte-identical copies of
//! w that together pass [`COLD_BYTES`] ([`cold_copies`]), as a model's layers stream their
//! weights. Timed on one repeated w, a small matrix sits in a cache and the winner is the
//! kernel that is fastest from there (version 3 chose so).

use std::path::Path;

use pertoken_gpu::tune::{TuneCache, fastest};
use pertoken_gpu::{DType, Gpu, Result, Tensor};

pub use pertoken_gpu::tune::{TuneMode, default_cache_dir};

use crate::{
    GEMV_CANDIDATES, GEMV_MAX_M, Kernel, Problem, TEAM_CANDIDATES, TILE_CANDIDATES, TileConfig,
    check_linear, check_matmul, linear_into, matmul_into, select, select_linear,
};

/// Version of the cache file's format and of the candidate sets its winners were chosen from; a
/// file with another is ignored. 2: GEMV candidates with several rows per invocation; 3: the team
/// kernel, for quantized weights too.
/// 4: linear candidates timed from memory (copies of w past the caches).
pub const CACHE_VERSION: u32 = 4;
/// The cache file's name inside the cache directory.
pub const CACHE_FILE: &str = "tune-v4.json";

/// Bytes of weight copies a timing from memory cycles through: past every last-level cache the
/// project has met (lavapipe's host L3 of 32 MiB, an H100's or H200's 50 MB L2; not an
/// MI300X's 256 MB Infinity Cache), so no call finds its weights left in a cache by the last.
pub const COLD_BYTES: u64 = 256 << 20;

/// The largest last-level cache of [`COLD_BYTES`]'s list, rounded up: a weight this large
/// leaves none of itself cached for the next call.
const LARGEST_CACHE: u64 = 64 << 20;

/// Copies of `w` (byte for byte, made on the GPU) that together hold at least [`COLD_BYTES`],
/// at most 1024 of them; `w` itself counts as the first, and a `w` past every cache
/// ([`LARGEST_CACHE`]) needs no copy (nor could a copy kernel bind one over the adapter's
/// binding limit: Gemma 3's 178 MB tied head on lavapipe's 128 MiB).
pub fn cold_copies(gpu: &Gpu, w: &Tensor) -> Result<Vec<Tensor>> {
    if w.size_in_bytes() >= LARGEST_CACHE {
        return Ok(vec![w.clone()]);
    }
    let copies = COLD_BYTES.div_ceil(w.size_in_bytes().max(1)).clamp(1, 1024);
    let mut out = Vec::with_capacity(copies as usize);
    out.push(w.clone());
    for _ in 1..copies {
        let c = Tensor::zeros(gpu, w.shape(), w.dtype())?;
        pertoken_gpu::copy(gpu, w, &c)?;
        out.push(c);
    }
    Ok(out)
}

/// Where a matmul kernel choice came from.
pub type Choice = pertoken_gpu::tune::Choice<Kernel>;

/// Chooses kernels per problem, by cache, measurement or heuristic.
#[derive(Debug)]
pub struct Tuner {
    gpu: Gpu,
    cache: TuneCache<Kernel>,
    /// Warnings about the cache file (corrupt, stale), for the caller to show.
    pub warnings: Vec<String>,
}

fn bucket(v: usize) -> usize {
    v.max(1).next_power_of_two()
}

fn key(p: &Problem) -> String {
    let op = if p.b_trans { "linear" } else { "matmul" };
    // Decode sizes are tuned exactly: one row more or less changes the kernel's registers.
    let m = if p.b_trans && p.shape.m <= GEMV_MAX_M {
        p.shape.m
    } else {
        bucket(p.shape.m)
    };
    format!(
        "{op}|{}|{}|b{}|m{m}|k{}|n{}",
        p.a_dtype,
        p.b_dtype,
        bucket(p.batch),
        bucket(p.shape.k),
        bucket(p.shape.n)
    )
}

impl Tuner {
    /// A tuner for `gpu` whose cache lives in `dir` (`None`: [`default_cache_dir`]).
    pub fn new(gpu: &Gpu, mode: TuneMode, dir: Option<&Path>) -> Tuner {
        let cache = TuneCache::open(
            gpu,
            (mode, dir),
            (CACHE_FILE, CACHE_VERSION),
            |k: &Kernel| is_candidate(*k),
        );
        Tuner {
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

    /// The kernel for `linear(x, w, bias)`.
    pub fn linear(&mut self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Choice> {
        let p = check_linear(x, w, bias)?;
        let heuristic = select_linear(self.gpu.capabilities(), &p);
        let shape = crate::linear_out_shape(x, &p);
        let gpu = self.gpu.clone();
        self.cache.choose(key(&p), heuristic, || {
            let out = Tensor::zeros(&gpu, &shape, DType::F32)?;
            let copies = cold_copies(&gpu, w)?;
            let next = std::cell::Cell::new(0);
            let best = fastest(&gpu, candidates(&gpu, &p), |k| {
                let i = (next.get() + 1) % copies.len();
                next.set(i);
                linear_into(&gpu, x, &copies[i], bias, &out, k)
            })?;
            Ok(best.map(|(_, k)| k))
        })
    }

    /// The kernel for `matmul(a, b)`.
    pub fn matmul(&mut self, a: &Tensor, b: &Tensor) -> Result<Choice> {
        let p = check_matmul(a, b)?;
        let heuristic = select(self.gpu.capabilities(), p.shape);
        let shape = crate::matmul_out_shape(&p);
        self.choose(&p, &shape, heuristic, |gpu, out, kernel| {
            matmul_into(gpu, a, b, out, kernel)
        })
    }

    fn choose(
        &mut self,
        p: &Problem,
        out_shape: &[usize],
        heuristic: Kernel,
        run: impl Fn(&Gpu, &Tensor, Kernel) -> Result<()>,
    ) -> Result<Choice> {
        let gpu = self.gpu.clone();
        self.cache.choose(key(p), heuristic, || {
            let out = Tensor::zeros(&gpu, out_shape, DType::F32)?;
            let best = fastest(&gpu, candidates(&gpu, p), |k| run(&gpu, &out, k))?;
            Ok(best.map(|(_, k)| k))
        })
    }
}

/// Whether `kernel` is one the tuner may choose (so a cache naming anything else is stale).
fn is_candidate(kernel: Kernel) -> bool {
    match kernel {
        Kernel::Naive => true,
        Kernel::Tiled(c) => TILE_CANDIDATES.contains(&c),
        Kernel::Gemv(c) => GEMV_CANDIDATES.contains(&c),
        Kernel::Team(c) => TEAM_CANDIDATES.contains(&c),
    }
}

/// The kernels worth timing for `p` on this adapter.
pub fn candidates(gpu: &Gpu, p: &Problem) -> Vec<Kernel> {
    let caps = gpu.capabilities();
    let mut out: Vec<Kernel> = Vec::new();
    if p.b_trans && p.shape.m <= GEMV_MAX_M {
        out.extend(
            GEMV_CANDIDATES
                .iter()
                .filter(|c| c.fits(caps, p.shape.m))
                .map(|c| Kernel::Gemv(*c)),
        );
    }
    out.extend(
        TILE_CANDIDATES
            .iter()
            .filter(|c: &&TileConfig| c.fits(caps))
            .map(|c| Kernel::Tiled(*c)),
    );
    out.extend(
        TEAM_CANDIDATES
            .iter()
            .filter(|c| c.fits(caps))
            .map(|c| Kernel::Team(*c)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatmulShape;

    #[test]
    fn keys_bucket_shapes_but_keep_decode_rows() {
        let p = |m, k, n| Problem {
            batch: 1,
            shape: MatmulShape { m, k, n },
            a_dtype: DType::F32,
            b_dtype: DType::Q4_0,
            b_trans: true,
            a_batched: false,
            b_batched: false,
        };
        assert_eq!(
            key(&p(3, 4096, 14336)),
            "linear|f32|q4_0|b1|m3|k4096|n16384"
        );
        assert_eq!(
            key(&p(300, 4000, 4096)),
            "linear|f32|q4_0|b1|m512|k4096|n4096"
        );
        assert_ne!(key(&p(3, 64, 64)), key(&p(4, 64, 64)));
    }

    #[test]
    fn kernels_round_trip_through_json() {
        for k in [
            Kernel::Naive,
            Kernel::Tiled(TILE_CANDIDATES[0]),
            Kernel::Gemv(GEMV_CANDIDATES[0]),
        ] {
            let s = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Kernel>(&s).unwrap(), k);
            assert!(is_candidate(k));
        }
        assert!(!is_candidate(Kernel::Gemv(crate::GemvConfig {
            wg: 8,
            rows: 8,
            rpi: 1
        })));
    }
}
