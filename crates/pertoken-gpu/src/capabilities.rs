//! What the adapter offers, read once when the device is created.

/// The features and limits kernels choose their variants from.
///
/// Kernels read this, never the adapter's name. Every value comes from the adapter; the device is
/// created with the adapter's own limits, not WebGPU's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// `f16` in shaders (`enable f16;`) is on for this device, so f16 kernels load f16 as f16:
    /// the adapter has it and [`GpuOptions::shader_f16`](crate::GpuOptions::shader_f16) asked
    /// for it (by default, every adapter but CPU ones).
    pub shader_f16: bool,
    /// Subgroup operations, with the adapter's smallest and largest subgroup size. Never assume
    /// 32: lavapipe has 8, AMD 32 or 64, Intel 8 to 32.
    pub subgroups: Option<SubgroupSize>,
    /// Timestamp queries at the start and end of compute passes.
    pub timestamp_query: bool,
    /// Nanoseconds per timestamp tick.
    pub timestamp_period_ns: f32,
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_binding: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_workgroup_storage: u32,
    /// Invocations per workgroup.
    pub max_invocations_per_workgroup: u32,
    /// Largest workgroup size in x, y and z.
    pub max_workgroup_size: [u32; 3],
    /// Workgroups per dispatch dimension.
    pub max_workgroups_per_dimension: u32,
    /// Storage buffers one shader stage may bind.
    pub max_storage_buffers_per_stage: u32,
    /// Alignment, in bytes, of a storage binding's offset into its buffer.
    pub min_storage_offset_alignment: u32,
    /// The adapter runs shaders on the CPU (llvmpipe, SwiftShader, WARP). There, an invocation's
    /// memory loads run one lane at a time, so kernels that reuse each load win over kernels that
    /// spread loads across invocations; heuristics pick different variants.
    pub cpu: bool,
}

/// The range of subgroup sizes an adapter may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubgroupSize {
    /// Smallest subgroup size.
    pub min: u32,
    /// Largest subgroup size.
    pub max: u32,
}

/// The optional features pertoken uses, where the adapter has them.
pub(crate) fn wanted_features(adapter: wgpu::Features) -> wgpu::Features {
    adapter
        & (wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
}

impl Capabilities {
    pub(crate) fn new(
        features: wgpu::Features,
        limits: &wgpu::Limits,
        info: &wgpu::AdapterInfo,
        timestamp_period_ns: f32,
    ) -> Self {
        Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features
                .contains(wgpu::Features::SUBGROUP)
                .then_some(SubgroupSize {
                    min: info.subgroup_min_size,
                    max: info.subgroup_max_size,
                }),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY)
                && timestamp_period_ns > 0.0,
            timestamp_period_ns,
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroup_size: [
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
                limits.max_compute_workgroup_size_z,
            ],
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            min_storage_offset_alignment: limits.min_storage_buffer_offset_alignment,
            cpu: info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    /// Whether a workgroup of `size` invocations using `storage_bytes` of workgroup memory fits.
    pub fn fits_workgroup(&self, size: [u32; 3], storage_bytes: u32) -> bool {
        let total = u64::from(size[0]) * u64::from(size[1]) * u64::from(size[2]);
        total <= u64::from(self.max_invocations_per_workgroup)
            && size
                .iter()
                .zip(self.max_workgroup_size)
                .all(|(&s, m)| s <= m)
            && storage_bytes <= self.max_workgroup_storage
    }
}
