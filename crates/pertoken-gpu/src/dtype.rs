//! Element types.

use std::fmt;

/// The element type of a [`Tensor`](crate::Tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
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
    /// ggml's Q5_0: blocks of 32, an f16 scale, 32 fifth bits in a u32, then 16 bytes of
    /// 4-bit values (22 bytes). Weights only.
    Q5_0,
    /// ggml's Q5_1: Q5_0 with an f16 minimum after the scale (24 bytes). Weights only.
    Q5_1,
    /// ggml's Q4_K: super-blocks of 256, an f16 scale and minimum scale, eight 6-bit scales
    /// and minimums (one per 32), 128 bytes of 4-bit values (144 bytes). Weights only.
    Q4_K,
    /// ggml's Q5_K: Q4_K with 32 bytes of fifth bits before the 4-bit values (176 bytes).
    /// Weights only.
    Q5_K,
    /// ggml's Q6_K: super-blocks of 256, 6-bit values (128 bytes of low nibbles, 64 of high
    /// pairs), 16 signed 8-bit scales (one per 16), an f16 scale (210 bytes). Weights only.
    Q6_K,
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
            DType::Q5_0 => (32, 22),
            DType::Q5_1 => (32, 24),
            DType::Q4_K => (256, 144),
            DType::Q5_K => (256, 176),
            DType::Q6_K => (256, 210),
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

    /// Every weight format a linear layer or an embedding table may hold.
    pub const WEIGHTS: [DType; 10] = [
        DType::F32,
        DType::F16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// The weight format named `name`, as [`name`](Self::name) spells it (`q4_k`).
    pub fn weight_named(name: &str) -> Option<DType> {
        Self::WEIGHTS.into_iter().find(|d| d.name() == name)
    }

    /// The code the weight-reading shaders (`W_FMT`, `B_FMT`, `FMT`) give this format: 0 f32,
    /// 1 f16, 2 Q8_0, 3 Q4_0, 4 Q4_1, 5 Q5_0, 6 Q5_1, 7 Q4_K, 8 Q5_K, 9 Q6_K.
    pub fn shader_format(self) -> Option<u32> {
        Self::WEIGHTS
            .iter()
            .position(|&d| d == self)
            .map(|i| i as u32)
    }

    /// Lower-case name, as printed in reports (`f32`, `f16`, `q8_0`, `q4_0`, `q4_k`, `u32`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
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
