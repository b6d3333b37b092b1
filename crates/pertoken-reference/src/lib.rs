//! CPU reference for pertoken's kernels.
//!
//! Every op here accumulates in f64 and shares no code with the GPU kernels it checks: it is the
//! slow, exact side of each test, up to a whole Llama-family forward pass ([`decoder`]). [`compare`] measures how far a kernel's output is from it, and
//! [`random`] draws the seeded inputs the tests and benches use.
//!
//! This crate does not depend on wgpu and never will: it is useful without a GPU.

pub mod attention;
pub mod compare;
pub mod decoder;
pub mod matmul;
pub mod quant;
pub mod random;

pub use attention::{AttentionError, AttentionShape, attention, attention_windowed};
pub use compare::{Comparison, Tolerance, compare};
pub use matmul::{ReferenceError, linear, matmul, matmul_f32};
pub use quant::{QK, QK_K, QuantError, QuantFormat, dequantize, quantize};
