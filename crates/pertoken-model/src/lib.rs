//! pertoken's decoder: Llama 2 and 3.x, Mistral, SmolLM2, Qwen2/2.5, Qwen3, Gemma 3 and Phi-3
//! run from pertoken's kernels, each architecture a small file of what it adds to Llama's block
//! (`arch/`), read by one forward pass.
//!
//! - [`ModelSpec`]: the shape (pertoken-cost's [`Model`](pertoken_cost::Model), the one
//!   description the cost model uses too) and the checkpoint's RoPE pairing.
//! - [`weights`]: where weights come from: [`Synthetic`] (seeded random at any shape and format),
//!   [`GgufWeights`] (GGUF, memory-mapped, blocks uploaded as stored), [`SafetensorsWeights`]
//!   (Hugging Face safetensors + config.json; bf16 converted to f16), and their f32 form for
//!   the CPU reference ([`weights::to_reference`]).
//! - [`Decoder`]: the model on a [`Gpu`](pertoken_gpu::Gpu): one KV cache per layer,
//!   activations made once, a forward pass recorded for all layers and submitted at once, and
//!   greedy argmax on the GPU feeding the next step's embedding gather.
//! - [`ops`]: the decoder's own kernels (RMSNorm with the residual add, RoPE fused with the KV
//!   append, SwiGLU's gate, embedding gather, argmax).

mod arch;
pub mod decoder;
mod error;
pub mod ops;
mod spec;
pub mod weights;

pub use decoder::{Decoder, DecoderOptions, Feed, MemoryPlan, PagedKv, SeqStep, plan_memory};
pub use error::{ModelError, Oversize, Result};
pub use spec::ModelSpec;
pub use weights::{GgufWeights, HostTensor, Role, SafetensorsWeights, Synthetic, WeightSource};
