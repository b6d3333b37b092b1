//! wgpu runtime for pertoken.
//!
//! - [`Gpu`]: one cloneable, `Send + Sync` handle over adapter, device and queue, with the
//!   adapter's [`Capabilities`] and a pipeline cache.
//! - [`Tensor`]: a storage buffer with a shape and a [`DType`]; upload from slices and ndarray
//!   views, download to `Vec` and ndarray.
//! - [`Gpu::launch`]: the one path every kernel takes, shader + override constants → cached
//!   pipeline → bind group → dispatch, recorded into a pending encoder that a download or
//!   [`Gpu::sync`] submits.
//! - [`Gpu::time`]: GPU time by timestamp queries where the adapter has them, wall clock
//!   otherwise.
//!
//! Every failure a user can cause is an [`Error`], never a panic: wgpu validation and
//! out-of-memory errors are caught with error scopes.

mod bandwidth;
mod bind_cache;
mod capabilities;
mod dtype;
mod error;
mod gpu;
mod launch;
mod memory;
mod options;
mod tensor;
pub mod testing;
mod timing;
pub mod tune;

pub use bandwidth::{Bandwidth, copy, measure_bandwidth};
pub use bind_cache::CacheStats;
pub use capabilities::{Capabilities, SubgroupSize};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use gpu::Gpu;
pub use launch::{Binding, Launch};
pub use memory::parse_bytes;
pub use options::{AdapterDescription, GpuOptions, adapters, adapters_on, parse_backends};
pub use pertoken_shaders::Shader;
pub use tensor::{BUFFER_ALIGN, Tensor};
pub use timing::{
    BATCH_SECONDS, MAX_BATCH_CALLS, MAX_TIMED_PASSES, Measured, Timing, TimingMethod,
    calls_per_batch,
};

/// Re-exported so kernel crates and users name the same wgpu.
pub use wgpu;
