//! pertoken-formats: readers for model files, for pertoken's decoder.
//!
//! - [`gguf`]: llama.cpp's GGUF (v2, v3): metadata, tensor infos, memory-mapped tensor data;
//!   and a small writer for tests and synthetic models.
//! - [`tokenizer`]: the byte-level (gpt2-style) BPE tokenizer a GGUF file carries.
//! - [`safetensors`]: Hugging Face safetensors (single or sharded) and `config.json`.
//! - [`testdata`]: where the test model (SmolLM2-135M-Instruct, Q4_1 GGUF) is found.
//!
//! No GPU and no ndarray here. Every malformed input is an error ([`FormatError`]) that names
//! the file, and where relevant the tensor or key; never a panic, and never an allocation sized
//! by a count the file has not shown it can back with bytes.

mod bytes;
mod error;
pub mod gguf;
pub mod safetensors;
pub mod testdata;
pub mod tokenizer;

pub use error::{FormatError, Result, SUPPORTED_TYPES};
