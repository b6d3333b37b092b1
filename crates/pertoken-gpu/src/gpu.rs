//! The `Gpu` handle: adapter, device, queue, pipeline cache and the pending encoder.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::ThreadId;

use crate::capabilities::{Capabilities, wanted_features};
use crate::launch::PipelineKey;
use crate::options::{AdapterDescription, GpuOptions, instance, select_adapter};
use crate::timing::Recorder;
use crate::{Error, Result};

/// One GPU: adapter, device, queue, the capabilities kernels choose from, and a pipeline cache.
///
/// Cloning is cheap (an `Arc`); clones share everything. Ops record into one pending command
/// encoder; a download or [`Gpu::sync`] submits it, so a sequence of ops costs one submit.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) adapter: AdapterDescription,
    pub(crate) caps: Capabilities,
    pub(crate) modules: RwLock<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pub(crate) pipelines: RwLock<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    pub(crate) pending: Mutex<Pending>,
    /// Signalled when a thread's timing ends ([`Pending::timer`]).
    pub(crate) timing_done: Condvar,
    /// Bind groups and uniform buffers made once and reused (`bind_cache.rs`).
    pub(crate) bind_cache: Mutex<crate::bind_cache::BindCache>,
    /// Set when a tensor's last handle drops: sweep the bind cache before the next launch.
    pub(crate) stale: crate::bind_cache::Stale,
    /// Errors wgpu raised outside any error scope (it would panic without a handler).
    pub(crate) uncaptured: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it is (the device-lost callback sets it).
    pub(crate) lost: Arc<Mutex<Option<String>>>,
    /// The bytes tensors hold, against [`GpuOptions::memory_limit`] (`memory.rs`).
    pub(crate) ledger: Arc<crate::memory::Ledger>,
    /// Dispatches recorded so far ([`Gpu::dispatches`]).
    pub(crate) dispatches: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) encoder: Option<wgpu::CommandEncoder>,
    pub(crate) recorder: Option<Recorder>,
    /// While [`Gpu::time_each`] runs: each launch's op and time, the launch run alone.
    pub(crate) solo: Option<Vec<(&'static str, crate::Timing)>>,
    /// The thread timing its work ([`Gpu::time`], [`Gpu::time_each`]), if one is: other
    /// threads' ops on this handle wait until it is done, so that a timing holds its own
    /// thread's launches only.
    pub(crate) timer: Option<ThreadId>,
}

/// Ownership of a handle's timing by the current thread, released (and waiting threads woken)
/// when dropped; nested timings on one thread keep the outer one's.
pub(crate) struct TimingOwner<'a> {
    gpu: &'a Gpu,
    outer: Option<ThreadId>,
}

impl Drop for TimingOwner<'_> {
    fn drop(&mut self) {
        lock(&self.gpu.inner.pending).timer = self.outer;
        self.gpu.inner.timing_done.notify_all();
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gpu>();
};

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.inner.adapter.summary())
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens the best adapter matching `options` (blocking wrapper over [`Gpu::new_async`]).
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Gpu::new_async(options))
    }

    /// Opens the adapter chosen by [`GpuOptions::from_env`].
    pub fn from_env() -> Result<Gpu> {
        Gpu::new(&GpuOptions::from_env()?)
    }

    /// Opens the best adapter matching `options`: discrete before integrated before software,
    /// native backends before GL. The device gets the adapter's own limits and the optional
    /// features pertoken uses (shader f16, subgroups, timestamp queries) where present.
    pub async fn new_async(options: &GpuOptions) -> Result<Gpu> {
        // Native backends first: GL is wgpu's second tier, and merely initializing it prints
        // EGL warnings on headless Linux. GL is searched only when nothing else matches.
        let native = options.backends - wgpu::Backends::GL;
        let first = if native.is_empty() {
            options.backends
        } else {
            native
        };
        let adapter = match select_adapter(&instance(first), options).await {
            Ok(a) => a,
            Err(_) if first != options.backends => {
                select_adapter(&instance(options.backends), options).await?
            }
            Err(e) => return Err(e),
        };
        let info = adapter.get_info();
        let mut features = wanted_features(adapter.features());
        // shader-f16 by default everywhere but on CPU adapters, where 16-bit loads run lane by
        // lane and the packed path measured faster (BENCHMARKS.md).
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        if !options.shader_f16.unwrap_or(!cpu) {
            features.remove(wgpu::Features::SHADER_F16);
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("pertoken"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;

        let lost = Arc::new(Mutex::new(None));
        let lost_sink = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed".to_owned(),
                wgpu::DeviceLostReason::Unknown => "lost".to_owned(),
            };
            *lock(&lost_sink) = Some(if message.is_empty() {
                why
            } else {
                format!("{why}: {message}")
            });
        });
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).push(e.to_string());
        }));

        let mut caps = Capabilities::new(
            device.features(),
            &device.limits(),
            &info,
            queue.get_timestamp_period(),
        );
        if let Some(limit) = options.max_storage_binding {
            // Keep it a multiple of 16 so vec4 bindings cover whole windows.
            caps.max_storage_binding = caps.max_storage_binding.min(limit.max(256) / 16 * 16);
        }
        Ok(Gpu {
            inner: Arc::new(Inner {
                device,
                queue,
                adapter: AdapterDescription::from_info(&info),
                caps,
                modules: RwLock::default(),
                pipelines: RwLock::default(),
                pending: Mutex::default(),
                timing_done: Condvar::new(),
                lost,
                bind_cache: Mutex::default(),
                stale: crate::bind_cache::Stale::default(),
                uncaptured,
                ledger: crate::memory::Ledger::new(options.memory_limit),
                dispatches: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Compute dispatches recorded on this handle so far, by every thread: the difference
    /// around a call is how many kernels it launched, where no other thread uses the handle
    /// meanwhile ([`Gpu::time_each`] lists one thread's launches).
    pub fn dispatches(&self) -> u64 {
        self.inner
            .dispatches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bytes this handle's tensors hold now (their buffers, padded; not pipelines,
    /// uniforms or staging buffers). Falls back when the last view of a tensor drops.
    pub fn memory_in_use(&self) -> u64 {
        self.inner.ledger.live()
    }

    /// The most bytes this handle's tensors may hold ([`GpuOptions::memory_limit`]), if
    /// limited.
    pub fn memory_limit(&self) -> Option<u64> {
        self.inner.ledger.limit()
    }

    /// The adapter this handle runs on.
    pub fn adapter(&self) -> &AdapterDescription {
        &self.inner.adapter
    }

    /// What the adapter offers.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// The wgpu device, for kernel crates that need more than [`Gpu::launch`].
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// A string that identifies this adapter and driver, for caches keyed per adapter.
    pub fn fingerprint(&self) -> String {
        let a = &self.inner.adapter;
        format!(
            "{}|{:?}|{:04x}:{:04x}|{}|{}",
            a.name, a.backend, a.vendor, a.device, a.driver, a.driver_info
        )
    }

    /// Submits every pending op and waits until the GPU has finished them.
    pub fn sync(&self) -> Result<()> {
        self.submit_pending("sync", None)?;
        self.wait("sync")
    }

    /// How often launches reused a cached bind group, and how many are held.
    pub fn bind_cache_stats(&self) -> crate::CacheStats {
        lock(&self.inner.bind_cache).stats()
    }

    /// Drops cached bind groups of buffers no tensor holds, if a tensor was dropped since the
    /// last sweep, so their memory returns before the next launch or allocation.
    pub(crate) fn sweep_bind_cache(&self) {
        if self.inner.stale.take() {
            lock(&self.inner.bind_cache).sweep();
        }
    }

    /// [`Error::DeviceLost`] once the device is lost: every launch, allocation, submission and
    /// wait checks first, so work after a loss fails at once, naming the op.
    pub(crate) fn check_lost(&self, op: &'static str) -> Result<()> {
        match lock(&self.inner.lost).as_ref() {
            Some(reason) => Err(Error::DeviceLost {
                op,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// `err`, or [`Error::DeviceLost`] where the device is lost (what the error really means).
    pub(crate) fn lost_or(&self, op: &'static str, err: Error) -> Error {
        self.check_lost(op).err().unwrap_or(err)
    }

    /// The pending state, once no other thread is timing its work on this handle.
    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        let me = std::thread::current().id();
        let mut pending = lock(&self.inner.pending);
        while pending.timer.is_some_and(|t| t != me) {
            pending = self
                .inner
                .timing_done
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
        pending
    }

    /// Makes the current thread this handle's timer until the result drops (waiting for
    /// another thread's timing to end first).
    pub(crate) fn own_timing(&self) -> TimingOwner<'_> {
        let mut pending = self.pending();
        let outer = pending.timer.replace(std::thread::current().id());
        drop(pending);
        TimingOwner { gpu: self, outer }
    }

    /// Finishes the pending encoder (after `extra` records into it, if given) and submits it,
    /// with validation and out-of-memory errors caught.
    pub(crate) fn submit_pending(
        &self,
        op: &'static str,
        extra: Option<&mut dyn FnMut(&mut wgpu::CommandEncoder)>,
    ) -> Result<()> {
        let mut pending = self.pending();
        let mut encoder = match (pending.encoder.take(), extra.is_some()) {
            (Some(e), _) => e,
            (None, true) => self.new_encoder(),
            (None, false) => return Ok(()),
        };
        if let Some(f) = extra {
            f(&mut encoder);
        }
        // Submit while still holding the lock: otherwise another thread could record and submit
        // a newer encoder first, and its ops would run before the ones they depend on.
        let submitted = self.scoped(op, || {
            let commands = encoder.finish();
            self.inner.queue.submit([commands]);
        });
        drop(pending);
        submitted
    }

    pub(crate) fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.inner
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pertoken"),
            })
    }

    /// Blocks until the queue is idle.
    pub(crate) fn wait(&self, op: &'static str) -> Result<()> {
        self.check_lost(op)?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| {
                self.lost_or(
                    op,
                    Error::Device {
                        op,
                        message: e.to_string(),
                    },
                )
            })?;
        self.take_uncaptured(op)
    }

    /// Runs `f` inside validation and out-of-memory error scopes and returns the first error.
    pub(crate) fn scoped<R>(&self, op: &'static str, f: impl FnOnce() -> R) -> Result<R> {
        self.check_lost(op)?;
        let device = &self.inner.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(self.lost_or(op, Error::from_wgpu(op, e)));
        }
        self.take_uncaptured(op)?;
        Ok(r)
    }

    fn take_uncaptured(&self, op: &'static str) -> Result<()> {
        let mut errors = lock(&self.inner.uncaptured);
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        drop(errors);
        Err(self.lost_or(op, Error::Device { op, message }))
    }
}

/// Locks a mutex, recovering it if a thread panicked while holding it: the data behind these
/// locks stays consistent at every await-free step, so a poisoned lock is safe to reuse.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
