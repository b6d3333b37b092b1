//! Element types.

use std::fmt;

/// The element type of a [`Tensor`](crate::Tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16, stored packed two to a 32-bit word.
    F16,
    /// ggml's Q8_0: blocks of 32 values along the last dimension, each an f16 scale and 32
    /// `i8`s (34 bytes). Weights only.
    Q8_0,
    /// ggml's Q4_0: blocks of 32 values along the last dimension, each an f16 scale and 16 bytes
    /// of 4-bit values (18 bytes). Weights only.
    Q4_0,
    /// ggml's Q4_1: blocks of 32 values along the last dimension, each an f16 scale, an f16
    /// minimum and 16 bytes of 4-bit values (20 bytes). Weights only.
    Q4_1,
    /// 32-bit unsigned integers: token ids and indices (argmax results, embedding lookups).
    U32,
}

impl DType {
    /// Elements per block and bytes per block: `(1, 4)` for f32, `(32, 18)` for Q4_0.
    pub const fn block(self) -> (usize, usize) {
        match self {
            DType::F32 => (1, 4),
            DType::F16 => (1, 2),
            DType::Q8_0 => (32, 34),
            DType::Q4_0 => (32, 18),
            DType::Q4_1 => (32, 20),
            DType::U32 => (1, 4),
        }
    }

    /// Whether this is a block-quantized format.
    pub const fn is_quantized(self) -> bool {
        self.block().0 > 1
    }

    /// Bits per element, on average (4.5 for Q4_0).
    pub fn bits_per_element(self) -> f64 {
        let (elems, bytes) = self.block();
        8.0 * bytes as f64 / elems as f64
    }

    /// Lower-case name, as printed in reports (`f32`, `f16`, `q8_0`, `q4_0`, `q4_1`, `u32`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::U32 => "u32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host element type that maps to a [`DType`].
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    /// The dtype of a tensor holding this type.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}

impl Element for u32 {
    const DTYPE: DType = DType::U32;
}
