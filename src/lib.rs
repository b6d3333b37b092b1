//! pertoken: what a token costs on your hardware.
//!
//! This facade re-exports the workspace's crates:
//! - [`gpu`]: the wgpu runtime (Gpu handle, tensors, launch, timing);
//! - [`matmul`]: matrix multiply and linear kernels;
//! - [`attention`]: fused attention kernels;
//! - [`reference`]: the CPU reference every kernel is checked against;
//! - [`shaders`]: the WGSL sources and their naga validation;
//! - [`cost`]: the cost model (catalogs, accounting, rooflines, $ and J per token);
//! - [`model`]: the decoder (Llama, Qwen2/3, Gemma 3, Phi-3) built from the kernels;
//! - [`formats`]: GGUF, safetensors and the GGUF's tokenizer;
//! - [`serve`]: continuous batching over the decoder's paged KV cache (scheduler, workloads,
//!   serving reports);
//! - [`bench`]: the main job as a library: the model bench and the serving bench, verified,
//!   bounded and priced.
//!
//! The `pertoken` binary (`pertoken devices`, `bench`, `generate`, `run`, `cost`) is built on the
//! same crates.

pub use pertoken_attention as attention;
pub use pertoken_bench as bench;
pub use pertoken_cost as cost;
pub use pertoken_formats as formats;
pub use pertoken_gpu as gpu;
pub use pertoken_matmul as matmul;
pub use pertoken_model as model;
pub use pertoken_reference as reference;
pub use pertoken_serve as serve;
pub use pertoken_shaders as shaders;
