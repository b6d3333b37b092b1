//! Bind groups and uniform parameter buffers made once and reused.
//!
//! A decode step launches the same few hundred kernels on the same buffers with the same
//! parameters, step after step; making a uniform buffer and a bind group for each launch cost
//! ~12 µs of host time a launch (3.5 ms a SmolLM2 step on the 2-core VM), more than a whole
//! step of an 8B model takes on an H100. Both are immutable once made, so sharing them is always
//! correct: a cached bind group is the one a fresh launch would have made.
//!
//! Keys hold the storage buffers by `Weak` (their address, which a `Weak` keeps from being
//! reused, and a liveness check), so the cache never keeps a dropped tensor's identity alive;
//! the bind group itself does hold the buffer, so entries for dropped tensors are swept before
//! the next launch or allocation (a dropped tensor marks the cache stale) and GPU memory is
//! returned then. Parameters that change every step (a position) make new entries every step,
//! so entries live in two generations: a hit in the older one moves the entry to the newer, and
//! when the newer holds [`GENERATION`] entries the older is dropped. What a step reuses stays;
//! what it used once is gone two generations later, which bounds the cache (a soak of 2,000
//! SmolLM2 steps grew 19 MB with one generation of 8,192 entries, and stays flat with this).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// Entries (bind groups, and uniform buffers apiece) a generation holds.
pub(crate) const GENERATION: usize = 1024;

/// A map in two generations (see the module's documentation).
struct Generations<K, V> {
    new: HashMap<K, V>,
    old: HashMap<K, V>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Generations {
            new: HashMap::new(),
            old: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Generations<K, V> {
    fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(v) = self.new.get(key) {
            return Some(v.clone());
        }
        let (k, v) = self.old.remove_entry(key)?;
        self.insert(k, v.clone());
        Some(v)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.new.len() >= GENERATION {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(key, value);
    }

    fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.new.retain(|k, _| keep(k));
        self.old.retain(|k, _| keep(k));
    }

    fn len(&self) -> usize {
        self.new.len() + self.old.len()
    }
}

/// One binding of a key: the buffer's address, the window, and a handle to test liveness.
#[derive(Debug, Clone)]
struct BoundBuffer {
    buffer: Weak<wgpu::Buffer>,
    offset: u64,
    size: u64,
}

impl PartialEq for BoundBuffer {
    fn eq(&self, other: &Self) -> bool {
        Weak::ptr_eq(&self.buffer, &other.buffer)
            && self.offset == other.offset
            && self.size == other.size
    }
}

impl Eq for BoundBuffer {}

impl std::hash::Hash for BoundBuffer {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.buffer.as_ptr() as usize).hash(state);
        self.offset.hash(state);
        self.size.hash(state);
    }
}

/// What makes a bind group: the pipeline (its address; pipelines live as long as the `Gpu`),
/// the storage windows and the parameter bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pipeline: usize,
    buffers: Vec<BoundBuffer>,
    params: Vec<u8>,
}

impl GroupKey {
    pub(crate) fn new(
        pipeline: &Arc<wgpu::ComputePipeline>,
        buffers: impl Iterator<Item = (Weak<wgpu::Buffer>, u64, u64)>,
        params: &[u8],
    ) -> Self {
        GroupKey {
            pipeline: Arc::as_ptr(pipeline) as usize,
            buffers: buffers
                .map(|(buffer, offset, size)| BoundBuffer {
                    buffer,
                    offset,
                    size,
                })
                .collect(),
            params: params.to_vec(),
        }
    }

    fn live(&self) -> bool {
        self.buffers.iter().all(|b| b.buffer.strong_count() > 0)
    }
}

/// The cache: bind groups by key, uniform buffers by their bytes.
#[derive(Default)]
pub(crate) struct BindCache {
    groups: Generations<GroupKey, wgpu::BindGroup>,
    params: Generations<Vec<u8>, wgpu::Buffer>,
    hits: u64,
    misses: u64,
}

impl BindCache {
    pub(crate) fn group(&mut self, key: &GroupKey) -> Option<wgpu::BindGroup> {
        let found = self.groups.get(key);
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    pub(crate) fn insert_group(&mut self, key: GroupKey, group: wgpu::BindGroup) {
        self.groups.insert(key, group);
    }

    /// The uniform buffer holding `bytes`, made by `make` the first time.
    pub(crate) fn params(
        &mut self,
        bytes: &[u8],
        make: impl FnOnce() -> wgpu::Buffer,
    ) -> wgpu::Buffer {
        if let Some(b) = self.params.get(bytes) {
            return b;
        }
        let buffer = make();
        self.params.insert(bytes.to_vec(), buffer.clone());
        buffer
    }

    /// Drops every bind group that binds a buffer no tensor holds any more.
    pub(crate) fn sweep(&mut self) {
        self.groups.retain(GroupKey::live);
    }

    /// Bind groups held, and lookups that found one and that did not, since the `Gpu` was made.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.groups.len(),
            hits: self.hits,
            misses: self.misses,
        }
    }
}

/// How the bind-group cache is doing ([`crate::Gpu::bind_cache_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Bind groups held now.
    pub entries: usize,
    /// Launches that reused a bind group.
    pub hits: u64,
    /// Launches that made one.
    pub misses: u64,
}

/// Set when a tensor's last handle drops, so the next launch or allocation sweeps first.
#[derive(Debug, Default)]
pub(crate) struct Stale(AtomicBool);

impl Stale {
    pub(crate) fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_in_use_survive_and_entries_used_once_are_dropped() {
        let mut g: Generations<u64, u64> = Generations::default();
        // Each "step": one stable key looked up (made once), and one new key per step.
        g.insert(0, 42);
        for step in 1..=10 * GENERATION as u64 {
            assert_eq!(g.get(&0), Some(42), "the stable entry survives step {step}");
            g.insert(step, step);
            assert!(g.len() <= 2 * GENERATION, "bounded at step {step}");
        }
        assert_eq!(g.get(&1), None, "an entry used once is gone");
        let last = 10 * GENERATION as u64;
        assert_eq!(g.get(&last), Some(last), "a recent one is still there");
    }
}
