//! Choosing an adapter.

use crate::{Error, Result};

/// How [`Gpu::new`](crate::Gpu::new) picks its adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuOptions {
    /// Backends to search.
    pub backends: wgpu::Backends,
    /// Pick only adapters whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Treat the storage-binding limit as at most this many bytes. Kernels then split large
    /// tensors as they would on an adapter with that limit: tests use it to cover the split
    /// paths at small sizes.
    pub max_storage_binding: Option<u64>,
    /// Whether f16 kernels load f16 as f16 (`enable f16;`) where the adapter has shader-f16.
    /// `None`, the default: yes, except on CPU adapters, where 16-bit loads run lane by lane
    /// and the packed-u32 path measured faster. `Some(false)` creates the device without the
    /// feature, so every f16 kernel takes its packed-u32 path, as on an adapter without f16 in
    /// shaders; `Some(true)` uses it wherever the adapter has it. Tests use both to cover both
    /// paths on one adapter.
    pub shader_f16: Option<bool>,
    /// The most bytes this handle's tensors may hold together; an allocation past it is
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) naming the operation, as on a full
    /// device. `None`, the default: no limit but the device's own.
    pub memory_limit: Option<u64>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backends: wgpu::Backends::all(),
            adapter: None,
            max_storage_binding: None,
            shader_f16: None,
            memory_limit: None,
        }
    }
}

impl GpuOptions {
    /// Options from the environment: `PERTOKEN_ADAPTER` (a substring of the adapter name),
    /// `WGPU_BACKEND` (a comma-separated list: `vulkan`, `metal`, `dx12`, `gl`) and
    /// `PERTOKEN_SHADER_F16` (`0` or `1`: [`GpuOptions::shader_f16`]; unset for the default)
    /// and `PERTOKEN_MEMORY_LIMIT` (bytes, with an optional `K`/`M`/`G`/`T` suffix:
    /// [`GpuOptions::memory_limit`]).
    ///
    /// An empty variable counts as unset; a backend list naming no known backend, a
    /// `PERTOKEN_SHADER_F16` other than `0` or `1`, or a limit that is not a byte count, is an
    /// error.
    pub fn from_env() -> Result<Self> {
        let mut options = GpuOptions::default();
        if let Some(v) = env_nonempty("PERTOKEN_SHADER_F16") {
            options.shader_f16 = match v.trim() {
                "0" => Some(false),
                "1" => Some(true),
                other => {
                    return Err(Error::InvalidOption {
                        name: "PERTOKEN_SHADER_F16",
                        value: other.to_owned(),
                        reason: "use 0 (leave shader-f16 off) or 1 (use it wherever the \
                                 adapter has it), or leave it unset for the default"
                            .into(),
                    });
                }
            };
        }
        if let Some(v) = env_nonempty("PERTOKEN_MEMORY_LIMIT") {
            options.memory_limit = Some(crate::memory::parse_bytes(&v).ok_or_else(|| {
                Error::InvalidOption {
                    name: "PERTOKEN_MEMORY_LIMIT",
                    value: v.clone(),
                    reason: "use a positive byte count with an optional K, M, G or T suffix \
                             (binary), e.g. 512M or 8G, or leave it unset for no limit"
                        .into(),
                }
            })?);
        }
        if let Some(name) = env_nonempty("PERTOKEN_ADAPTER") {
            options.adapter = Some(name);
        }
        if let Some(list) = env_nonempty("WGPU_BACKEND") {
            options.backends = parse_backends(&list)?;
        }
        Ok(options)
    }

    /// These options with the adapter-name filter set.
    pub fn with_adapter(mut self, name: impl Into<String>) -> Self {
        self.adapter = Some(name.into());
        self
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses a comma-separated backend list as `WGPU_BACKEND` does, but refuses a list that names
/// no backend instead of silently searching none.
pub fn parse_backends(list: &str) -> Result<wgpu::Backends> {
    let backends = wgpu::Backends::from_comma_list(list);
    if backends.is_empty() {
        return Err(Error::InvalidOption {
            name: "WGPU_BACKEND",
            value: list.to_owned(),
            reason: "names no backend; use a comma-separated list of vulkan, metal, dx12, gl"
                .into(),
        });
    }
    Ok(backends)
}

/// One adapter the machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterDescription {
    /// Adapter name, as the driver reports it.
    pub name: String,
    /// Backend (Vulkan, Metal, Dx12, Gl).
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name.
    pub driver: String,
    /// Driver version and details.
    pub driver_info: String,
    /// PCI vendor id.
    pub vendor: u32,
    /// PCI device id.
    pub device: u32,
}

impl AdapterDescription {
    pub(crate) fn from_info(info: &wgpu::AdapterInfo) -> Self {
        AdapterDescription {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            device: info.device,
        }
    }

    /// `name (backend, device type)`.
    pub fn summary(&self) -> String {
        format!("{} ({:?}, {:?})", self.name, self.backend, self.device_type)
    }
}

pub(crate) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// `vulkan, gl`-style names of a backend set.
pub(crate) fn backend_names(backends: wgpu::Backends) -> String {
    let names: Vec<String> = backends
        .iter_names()
        .map(|(name, _)| name.to_lowercase())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Every adapter on the given backends, in the order [`Gpu::new`](crate::Gpu::new) prefers them.
pub fn adapters_on(backends: wgpu::Backends) -> Vec<AdapterDescription> {
    let instance = instance(backends);
    let mut found = pollster::block_on(instance.enumerate_adapters(backends));
    found.sort_by_key(|a| preference(&a.get_info()));
    found
        .iter()
        .map(|a| AdapterDescription::from_info(&a.get_info()))
        .collect()
}

/// Every adapter the machine has, on every backend, best first.
pub fn adapters() -> Vec<AdapterDescription> {
    adapters_on(wgpu::Backends::all())
}

/// Sort key: real GPUs before software ones, native backends before GL.
pub(crate) fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (device, backend)
}

/// Picks the best adapter matching `options`, or says what was there instead.
pub(crate) async fn select_adapter(
    instance: &wgpu::Instance,
    options: &GpuOptions,
) -> Result<wgpu::Adapter> {
    let mut found = instance.enumerate_adapters(options.backends).await;
    found.sort_by_key(|a| preference(&a.get_info()));
    let wanted = options.adapter.as_ref().map(|w| w.to_lowercase());
    let available: Vec<String> = found
        .iter()
        .map(|a| AdapterDescription::from_info(&a.get_info()).summary())
        .collect();
    found
        .into_iter()
        .find(|a| {
            wanted
                .as_ref()
                .is_none_or(|w| a.get_info().name.to_lowercase().contains(w))
        })
        .ok_or_else(|| Error::NoAdapter {
            backends: backend_names(options.backends),
            wanted: options.adapter.clone(),
            available,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_list_parses_and_rejects_nonsense() {
        assert_eq!(parse_backends("vulkan").unwrap(), wgpu::Backends::VULKAN);
        assert_eq!(
            parse_backends("Vulkan, gl").unwrap(),
            wgpu::Backends::VULKAN | wgpu::Backends::GL
        );
        let err = parse_backends("vulcan").unwrap_err();
        assert!(err.to_string().contains("WGPU_BACKEND"), "{err}");
    }

    #[test]
    fn missing_adapter_message_says_what_to_install() {
        let err = Error::NoAdapter {
            backends: "VULKAN".into(),
            wanted: Some("nvidia".into()),
            available: vec![],
        };
        let msg = err.to_string();
        assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
        assert!(msg.contains("\"nvidia\""), "{msg}");
    }
}
