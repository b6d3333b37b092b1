//! The one path every kernel launch takes: shader + override constants → cached pipeline →
//! bind group → dispatch, recorded into the pending encoder.

use std::sync::Arc;

use pertoken_shaders::Shader;
use wgpu::util::DeviceExt;

use crate::bind_cache::GroupKey;
use crate::gpu::lock;
use crate::{Error, Gpu, Result, Tensor};

/// Pipeline-cache key: the shader and its override constants (values by bit pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    shader: &'static str,
    constants: Vec<(String, u64)>,
}

impl PipelineKey {
    fn new(shader: &Shader, constants: &[(&str, f64)]) -> Self {
        let mut constants: Vec<(String, u64)> = constants
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_bits()))
            .collect();
        constants.sort();
        PipelineKey {
            shader: shader.name,
            constants,
        }
    }
}

/// A tensor bound to a shader: all of it, or a window of its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The tensor.
    pub tensor: &'a Tensor,
    /// First byte bound; a multiple of the adapter's storage offset alignment.
    pub offset: u64,
    /// Bytes bound, or the rest of the buffer.
    pub size: Option<u64>,
}

impl<'a> Binding<'a> {
    /// The whole tensor.
    pub fn whole(tensor: &'a Tensor) -> Self {
        Binding {
            tensor,
            offset: 0,
            size: None,
        }
    }

    /// `size` bytes from `offset` (clamped to the buffer's end).
    pub fn window(tensor: &'a Tensor, offset: u64, size: u64) -> Self {
        Binding {
            tensor,
            offset,
            size: Some(size),
        }
    }

    /// Bytes this binding covers.
    pub fn bytes(&self) -> u64 {
        let rest = self.tensor.buffer().size().saturating_sub(self.offset);
        self.size.map_or(rest, |s| s.min(rest))
    }
}

impl<'a> From<&'a Tensor> for Binding<'a> {
    fn from(tensor: &'a Tensor) -> Self {
        Binding::whole(tensor)
    }
}

/// One kernel dispatch.
///
/// Binding convention, shared by every shader: the tensors at bindings `0..bindings.len()` of
/// group 0, in order, then (if `params` is not empty) a uniform buffer holding `params` at the
/// next binding.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// Op name, for errors and labels.
    pub op: &'static str,
    /// The shader.
    pub shader: &'static Shader,
    /// Values for the shader's `override` constants.
    pub constants: &'a [(&'a str, f64)],
    /// Storage bindings, in order.
    pub bindings: &'a [Binding<'a>],
    /// Bytes of the uniform parameter block (may be empty).
    pub params: &'a [u8],
    /// Workgroups in x, y, z.
    pub workgroups: [u32; 3],
}

impl Gpu {
    /// The compute pipeline for `shader` with `constants`, compiled once and cached under both.
    pub fn pipeline(
        &self,
        op: &'static str,
        shader: &'static Shader,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey::new(shader, constants);
        if let Some(p) = read(&self.inner.pipelines).get(&key) {
            return Ok(Arc::clone(p));
        }
        let module = self.module(op, shader)?;
        let pipeline = self.scoped(op, || {
            self.inner
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(shader.name),
                    layout: None,
                    module: &module,
                    entry_point: Some(shader.entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        let mut cache = write(&self.inner.pipelines);
        // Another thread may have compiled the same pipeline meanwhile: keep the first.
        let entry = cache.entry(key).or_insert_with(|| Arc::new(pipeline));
        Ok(Arc::clone(entry))
    }

    fn module(&self, op: &'static str, shader: &'static Shader) -> Result<Arc<wgpu::ShaderModule>> {
        if let Some(m) = read(&self.inner.modules).get(shader.name) {
            return Ok(Arc::clone(m));
        }
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        };
        // Every runtime check stays on except naga's loop bounding, which wraps each loop in a
        // hidden iteration counter. That counter hides the trip count from the driver's
        // compiler, so loops over register arrays stop unrolling and the arrays move to local
        // memory (gfx-rs/wgpu#7698: 100x on some pipelines). On an H100 the GEMV, tiled matmul
        // and attention kernels ran at 1-10% of the card's bandwidth and FP32 rate with it on.
        let checks = wgpu::ShaderRuntimeChecks {
            force_loop_bounding: false,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        #[allow(unsafe_code)]
        // SAFETY: the one check turned off guards against infinite loops, and these shaders are
        // pertoken's own, compiled in (`pertoken_shaders`), never user input: every loop in them
        // steps a u32 counter towards a bound fixed before the loop starts (bounds far below
        // 2^32, which the binding limits guarantee, so no counter wraps) or halves a power of two
        // to zero, so each terminates. Bounds, integer-division and other checks remain.
        let module = self.scoped(op, || unsafe {
            self.inner.device.create_shader_module_trusted(desc, checks)
        })?;
        let mut cache = write(&self.inner.modules);
        let entry = cache.entry(shader.name).or_insert_with(|| Arc::new(module));
        Ok(Arc::clone(entry))
    }

    /// Records one dispatch into the pending encoder. Nothing runs until a download or
    /// [`Gpu::sync`]. Checks every binding against the adapter's storage-binding limit and the
    /// dispatch against the per-dimension workgroup limit first.
    pub fn launch(&self, launch: &Launch<'_>) -> Result<()> {
        // Inside Gpu::time_each: this launch alone, timed, then logged.
        let solo = self.pending().solo.take();
        if let Some(mut log) = solo {
            let timed = self.time(|| self.record(launch));
            let mut pending = self.pending();
            if let Ok(((), t)) = &timed {
                log.push((launch.op, *t));
            }
            pending.solo = Some(log);
            return timed.map(|_| ());
        }
        self.record(launch)
    }

    fn record(&self, launch: &Launch<'_>) -> Result<()> {
        self.check_lost(launch.op)?;
        let caps = self.capabilities();
        for b in launch.bindings {
            let t = b.tensor;
            if !Arc::ptr_eq(&t.gpu().inner, &self.inner) {
                return Err(Error::InvalidShape {
                    op: launch.op,
                    shape: t.shape().to_vec(),
                    reason: "tensor belongs to a different Gpu handle".into(),
                });
            }
            let align = u64::from(caps.min_storage_offset_alignment);
            if b.offset % align != 0 || b.offset >= t.buffer().size() {
                return Err(Error::InvalidShape {
                    op: launch.op,
                    shape: t.shape().to_vec(),
                    reason: format!(
                        "binding offset {} is past the buffer or not a multiple of {align}",
                        b.offset
                    ),
                });
            }
            let bytes = b.bytes();
            if bytes > caps.max_storage_binding {
                return Err(Error::TooLarge {
                    op: launch.op,
                    what: "storage binding",
                    bytes,
                    limit: caps.max_storage_binding,
                    limit_name: "max_storage_buffer_binding_size",
                });
            }
        }
        let limit = caps.max_workgroups_per_dimension;
        if launch.workgroups.iter().any(|&w| w > limit) {
            return Err(Error::DispatchTooLarge {
                op: launch.op,
                workgroups: launch.workgroups,
                limit,
            });
        }
        if launch.workgroups.contains(&0) {
            return Ok(());
        }

        let pipeline = self.pipeline(launch.op, launch.shader, launch.constants)?;
        let bind_group = self.bind_group(launch, &pipeline)?;

        let mut pending = self.pending();
        let pending = &mut *pending;
        let encoder = pending.encoder.get_or_insert_with(|| self.new_encoder());
        let timestamp_writes = match pending.recorder.as_mut() {
            Some(r) => r.next_pass(launch.op)?,
            None => None,
        };
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(launch.op),
            timestamp_writes,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        let [x, y, z] = launch.workgroups;
        pass.dispatch_workgroups(x, y, z);
        self.inner
            .dispatches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The launch's bind group (and its uniform buffer): from the cache, or made and cached.
    fn bind_group(
        &self,
        launch: &Launch<'_>,
        pipeline: &Arc<wgpu::ComputePipeline>,
    ) -> Result<wgpu::BindGroup> {
        self.sweep_bind_cache();
        let key = GroupKey::new(
            pipeline,
            launch.bindings.iter().map(|b| {
                (
                    Arc::downgrade(b.tensor.buffer_handle()),
                    b.offset,
                    b.bytes(),
                )
            }),
            launch.params,
        );
        if let Some(group) = lock(&self.inner.bind_cache).group(&key) {
            return Ok(group);
        }
        let device = &self.inner.device;
        let params = (!launch.params.is_empty()).then(|| {
            lock(&self.inner.bind_cache).params(launch.params, || {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("pertoken params"),
                    contents: launch.params,
                    usage: wgpu::BufferUsages::UNIFORM,
                })
            })
        });
        let mut entries: Vec<wgpu::BindGroupEntry<'_>> = launch
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.tensor.buffer(),
                    offset: b.offset,
                    size: std::num::NonZeroU64::new(b.bytes()),
                }),
            })
            .collect();
        if let Some(p) = &params {
            entries.push(wgpu::BindGroupEntry {
                binding: launch.bindings.len() as u32,
                resource: p.as_entire_binding(),
            });
        }
        let bind_group = self.scoped(launch.op, || {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(launch.op),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })?;
        lock(&self.inner.bind_cache).insert_group(key, bind_group.clone());
        Ok(bind_group)
    }
}

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
