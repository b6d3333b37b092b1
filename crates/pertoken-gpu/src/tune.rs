//! What every autotuner shares: where its cache lives, how the cache is read (never trusted
//! blindly) and written, and how candidates are timed. The kernel crates keep their own
//! candidates, problem keys and cache files (pertoken-matmul's `Tuner`, pertoken-attention's
//! `AttentionTuner`).
//!
//! A cache file holds, per adapter fingerprint (name, backend, PCI ids, driver), the winner of
//! each problem key. It lives under `$PERTOKEN_CACHE_DIR`, else `$XDG_CACHE_HOME/pertoken`, else
//! `~/.cache/pertoken` (`%LOCALAPPDATA%\pertoken` on Windows). A file that does not parse, has
//! another version, or names a winner that is not a current candidate is ignored with a warning,
//! never trusted: the heuristic is used instead, and tuning rewrites it.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Gpu, Result, calls_per_batch};

/// Where tuning caches live, from the environment; `None` when no directory can be found.
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

/// How a tuner chooses kernels.
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
pub enum Choice<K> {
    /// The shape heuristic.
    Heuristic(K),
    /// A winner read from the cache.
    Cached(K),
    /// A winner measured just now.
    Tuned(K),
}

impl<K: Copy> Choice<K> {
    /// The kernel chosen.
    pub fn kernel(self) -> K {
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

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "V: Serialize + DeserializeOwned")]
struct CacheFile<V> {
    version: u32,
    /// adapter fingerprint → problem key → winner.
    adapters: BTreeMap<String, BTreeMap<String, V>>,
}

/// One tuning cache file's winners for this adapter.
#[derive(Debug)]
pub struct TuneCache<V> {
    mode: TuneMode,
    path: Option<PathBuf>,
    version: u32,
    fingerprint: String,
    winners: BTreeMap<String, V>,
    /// Warnings about the file (unreadable, corrupt, stale), for the caller to show; also
    /// printed to standard error.
    pub warnings: Vec<String>,
    dirty: bool,
}

impl<V: Clone + Display + Serialize + DeserializeOwned> TuneCache<V> {
    /// The cache `file` (format `version`) in `dir` (`None`: [`default_cache_dir`]) for `gpu`'s
    /// adapter, read now unless `mode` is [`TuneMode::Off`]; an entry that `valid` refuses (not
    /// a current candidate) is dropped with a warning.
    pub fn open(
        gpu: &Gpu,
        (mode, dir): (TuneMode, Option<&Path>),
        (file, version): (&str, u32),
        valid: impl Fn(&V) -> bool,
    ) -> TuneCache<V> {
        let path = match mode {
            TuneMode::Off => None,
            _ => dir
                .map(Path::to_path_buf)
                .or_else(default_cache_dir)
                .map(|d| d.join(file)),
        };
        let mut cache = TuneCache {
            mode,
            path,
            version,
            fingerprint: gpu.fingerprint(),
            winners: BTreeMap::new(),
            warnings: Vec::new(),
            dirty: false,
        };
        cache.load(valid);
        cache
    }

    /// The cache file, if tuning uses one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn load(&mut self, valid: impl Fn(&V) -> bool) {
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
        // The version first, so a file of another format says so rather than "corrupt".
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
        if let Some(v) = version.filter(|v| *v != u64::from(self.version)) {
            self.warn(format!(
                "tuning cache {} has version {v}, expected {}; ignoring it",
                path.display(),
                self.version
            ));
            return;
        }
        let file: CacheFile<V> = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!(
                    "tuning cache {} is corrupt ({e}); ignoring it, it will be rewritten",
                    path.display()
                ));
                return;
            }
        };
        if let Some(mine) = file.adapters.get(&self.fingerprint) {
            for (k, winner) in mine {
                if valid(winner) {
                    self.winners.insert(k.clone(), winner.clone());
                } else {
                    self.warn(format!(
                        "tuning cache entry {k} names {winner}, which is not a current candidate; \
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

    /// The choice for problem `key`: [`Choice::Heuristic`] with the cache off, the cached
    /// winner where there is one, [`Choice::Heuristic`] in [`TuneMode::CacheOnly`], else the
    /// winner `tune` measures now (remembered; the heuristic's if it finds none).
    pub fn choose(
        &mut self,
        key: String,
        heuristic: V,
        tune: impl FnOnce() -> Result<Option<V>>,
    ) -> Result<Choice<V>> {
        if self.mode == TuneMode::Off {
            return Ok(Choice::Heuristic(heuristic));
        }
        if let Some(k) = self.winners.get(&key) {
            return Ok(Choice::Cached(k.clone()));
        }
        if self.mode == TuneMode::CacheOnly {
            return Ok(Choice::Heuristic(heuristic));
        }
        let winner = tune()?.unwrap_or(heuristic);
        self.winners.insert(key, winner.clone());
        self.dirty = true;
        Ok(Choice::Tuned(winner))
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
            .and_then(|t| serde_json::from_str::<CacheFile<V>>(&t).ok())
            .filter(|f| f.version == self.version)
            .unwrap_or(CacheFile {
                version: self.version,
                adapters: BTreeMap::new(),
            });
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
}

/// The fastest of `candidates` by GPU time per call of `run`, and that time: each is run once
/// (which compiles its pipeline, outside the timestamps, and sizes its batches), warmed up, then
/// timed in up to three batches, the median kept; timing stops early for a candidate twice as
/// slow as the best so far. A candidate whose first run fails is skipped. `None` when none ran.
pub fn fastest<K: Copy>(
    gpu: &Gpu,
    candidates: impl IntoIterator<Item = K>,
    run: impl Fn(K) -> Result<()>,
) -> Result<Option<(f64, K)>> {
    let mut best: Option<(f64, K)> = None;
    for kernel in candidates {
        let Ok(((), single)) = gpu.time(|| run(kernel)) else {
            continue;
        };
        let calls = calls_per_batch(&single);
        gpu.warm_up(calls, &mut || run(kernel))?;
        let mut times = Vec::with_capacity(3);
        for _ in 0..3 {
            let t = gpu.time_calls(calls, &mut || run(kernel))?;
            times.push(t.seconds);
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
    Ok(best)
}
