//! Autotuning: time the candidate kernels on this adapter and remember the winner.
//!
//! Winners are cached per adapter fingerprint (name, backend, PCI ids, driver), per op, dtypes
//! and shape bucket (each dimension rounded up to a power of two), in one JSON file under the
//! user's cache directory: `$PERTOKEN_CACHE_DIR`, else `$XDG_CACHE_HOME/pertoken`, else
//! `~/.cache/pertoken` (`%LOCALAPPDATA%\pertoken` on Windows). A file that does not parse, has
//! another version, or names a kernel that is not a current candidate is ignored with a warning,
//! never trusted: the heuristic is used instead, and tuning rewrites it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pertoken_gpu::{DType, Gpu, Result, Tensor, calls_per_batch};

use crate::{
    GEMV_CANDIDATES, GEMV_MAX_M, Kernel, Problem, TEAM_CANDIDATES, TILE_CANDIDATES, TileConfig,
    check_linear, check_matmul, linear_into, matmul_into, select, select_linear,
};

/// Version of the cache file's format and of the candidate sets its winners were chosen from; a
/// file with another is ignored. 2: GEMV candidates with several rows per invocation; 3: the team
/// kernel, for quantized weights too.
pub const CACHE_VERSION: u32 = 3;
/// The cache file's name inside the cache directory.
pub const CACHE_FILE: &str = "tune-v3.json";

/// Where the tuning cache lives, from the environment; `None` when no directory can be found.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("PERTOKEN_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("pertoken")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("pertoken")))
        .or_else(|| var("LOCALAPPDATA").map(|d| d.join("pertoken")))
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CacheFile {
    version: u32,
    /// adapter fingerprint → problem key → winner.
    adapters: BTreeMap<String, BTreeMap<String, Kernel>>,
}

/// How a [`Tuner`] chooses kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneMode {
    /// The heuristic only; the cache is neither read nor written (`--no-tune`, and tests).
    Off,
    /// Cached winners where present, the heuristic elsewhere; never measures.
    CacheOnly,
    /// Cached winners where present; otherwise measure the candidates now and cache the winner.
    Tune,
}

/// Where a kernel choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The shape heuristic.
    Heuristic(Kernel),
    /// A winner read from the cache.
    Cached(Kernel),
    /// A winner measured just now.
    Tuned(Kernel),
}

impl Choice {
    /// The kernel chosen.
    pub fn kernel(self) -> Kernel {
        match self {
            Choice::Heuristic(k) | Choice::Cached(k) | Choice::Tuned(k) => k,
        }
    }

    /// `heuristic`, `cached` or `tuned`.
    pub fn source(self) -> &'static str {
        match self {
            Choice::Heuristic(_) => "heuristic",
            Choice::Cached(_) => "cached",
            Choice::Tuned(_) => "tuned",
        }
    }
}

/// Chooses kernels per problem, by cache, measurement or heuristic.
#[derive(Debug)]
pub struct Tuner {
    gpu: Gpu,
    mode: TuneMode,
    path: Option<PathBuf>,
    fingerprint: String,
    winners: BTreeMap<String, Kernel>,
    /// Warnings about the cache file (corrupt, stale), for the caller to show.
    pub warnings: Vec<String>,
    dirty: bool,
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
        let path = match mode {
            TuneMode::Off => None,
            _ => dir
                .map(Path::to_path_buf)
                .or_else(default_cache_dir)
                .map(|d| d.join(CACHE_FILE)),
        };
        let mut tuner = Tuner {
            gpu: gpu.clone(),
            mode,
            path,
            fingerprint: gpu.fingerprint(),
            winners: BTreeMap::new(),
            warnings: Vec::new(),
            dirty: false,
        };
        tuner.load();
        tuner
    }

    /// The cache file, if tuning uses one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn load(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.warn(format!(
                    "cannot read tuning cache {}: {e}; ignoring it",
                    path.display()
                ));
                return;
            }
        };
        let file: CacheFile = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!(
                    "tuning cache {} is corrupt ({e}); ignoring it, it will be rewritten",
                    path.display()
                ));
                return;
            }
        };
        if file.version != CACHE_VERSION {
            self.warn(format!(
                "tuning cache {} has version {}, expected {CACHE_VERSION}; ignoring it",
                path.display(),
                file.version
            ));
            return;
        }
        if let Some(mine) = file.adapters.get(&self.fingerprint) {
            for (k, kernel) in mine {
                if is_candidate(*kernel) {
                    self.winners.insert(k.clone(), *kernel);
                } else {
                    self.warn(format!(
                        "tuning cache entry {k} names {kernel}, which is not a current candidate; \
                         ignoring it"
                    ));
                }
            }
        }
    }

    fn warn(&mut self, message: String) {
        eprintln!("warning: {message}");
        self.warnings.push(message);
    }

    /// Writes the cache file if anything was tuned, keeping other adapters' entries.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut file = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<CacheFile>(&t).ok())
            .filter(|f| f.version == CACHE_VERSION)
            .unwrap_or_default();
        file.version = CACHE_VERSION;
        file.adapters
            .insert(self.fingerprint.clone(), self.winners.clone());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &path)?;
        self.dirty = false;
        Ok(())
    }

    /// The kernel for `linear(x, w, bias)`.
    pub fn linear(&mut self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Choice> {
        let p = check_linear(x, w, bias)?;
        let heuristic = select_linear(self.gpu.capabilities(), &p);
        let shape = crate::linear_out_shape(x, &p);
        self.choose(&p, &shape, heuristic, |gpu, out, kernel| {
            linear_into(gpu, x, w, bias, out, kernel)
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
        if self.mode == TuneMode::Off {
            return Ok(Choice::Heuristic(heuristic));
        }
        let key = key(p);
        if let Some(k) = self.winners.get(&key) {
            return Ok(Choice::Cached(*k));
        }
        if self.mode == TuneMode::CacheOnly {
            return Ok(Choice::Heuristic(heuristic));
        }
        let gpu = self.gpu.clone();
        let out = Tensor::zeros(&gpu, out_shape, DType::F32)?;
        let mut best: Option<(f64, Kernel)> = None;
        for kernel in candidates(&gpu, p) {
            // Warm-up compiles the pipeline (host side, outside the GPU timestamps), and its time
            // sizes the timed batches; a candidate that fails is skipped.
            let Ok(((), single)) = gpu.time(|| run(&gpu, &out, kernel)) else {
                continue;
            };
            let calls = calls_per_batch(&single);
            gpu.warm_up(calls, &mut || run(&gpu, &out, kernel))?;
            let mut times = Vec::with_capacity(3);
            for _ in 0..3 {
                let t = gpu.time_calls(calls, &mut || run(&gpu, &out, kernel))?;
                times.push(t.seconds);
                // A candidate twice as slow as the best so far will not win: stop timing it.
                if best.is_some_and(|(b, _)| t.seconds > 2.0 * b) {
                    break;
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            if best.is_none_or(|(t, _)| median < t) {
                best = Some((median, kernel));
            }
        }
        let winner = best.map_or(heuristic, |(_, k)| k);
        self.winners.insert(key, winner);
        self.dirty = true;
        Ok(Choice::Tuned(winner))
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
