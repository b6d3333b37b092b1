//! ggml's block-quantized weight formats, byte for byte: the legacy ones (Q8_0, Q4_0, Q4_1,
//! Q5_0, Q5_1; blocks of 32) in [`legacy`] and the K-quants (Q4_K, Q5_K, Q6_K; super-blocks of
//! 256) in [`kquant`].
//!
//! Dequantization restates ggml's `dequantize_row_*` loops (`ggml-quants.c`) element by
//! element, so blocks here and in existing GGUF checkpoints mean the same thing. The
//! quantizers are this crate's own: the legacy ones round as ggml's reference quantizers
//! (`quantize_row_*_ref`); the K-quant ones are a plain min/max fit (ggml searches for better
//! scales; any bytes are valid blocks, and the tests need weights, not the best ones). Kernels
//! are checked against [`dequantize`] of the same bytes: that isolates the kernel's error from
//! the format's.

pub mod kquant;
pub mod legacy;
#[cfg(test)]
mod tests;

/// Values per block of the legacy formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1).
pub const QK: usize = 32;

/// Values per super-block of the K-quants (Q4_K, Q5_K, Q6_K).
pub const QK_K: usize = 256;

/// A block-quantized weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum QuantFormat {
    /// 8-bit values, one f16 scale per 32: 8.5 bits per weight.
    Q8_0,
    /// 4-bit values, one f16 scale per 32: 4.5 bits per weight.
    Q4_0,
    /// 4-bit values, an f16 scale and an f16 minimum per 32: 5 bits per weight.
    Q4_1,
    /// 5-bit values, one f16 scale per 32: 5.5 bits per weight.
    Q5_0,
    /// 5-bit values, an f16 scale and an f16 minimum per 32: 6 bits per weight.
    Q5_1,
    /// 4-bit values in 8 sub-blocks of 32 with 6-bit scales and minimums, per 256: 4.5 bits.
    Q4_K,
    /// 5-bit values in 8 sub-blocks of 32 with 6-bit scales and minimums, per 256: 5.5 bits.
    Q5_K,
    /// 6-bit values in 16 sub-blocks of 16 with 8-bit signed scales, per 256: 6.5625 bits.
    Q6_K,
}

impl QuantFormat {
    /// Every format, in the order reports list them.
    pub const ALL: [QuantFormat; 8] = [
        QuantFormat::Q8_0,
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q5_0,
        QuantFormat::Q5_1,
        QuantFormat::Q4_K,
        QuantFormat::Q5_K,
        QuantFormat::Q6_K,
    ];

    /// Values per block: [`QK`] or [`QK_K`].
    pub const fn block_elems(self) -> usize {
        match self {
            QuantFormat::Q4_K | QuantFormat::Q5_K | QuantFormat::Q6_K => QK_K,
            _ => QK,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantFormat::Q8_0 => 2 + QK,
            QuantFormat::Q4_0 => 2 + QK / 2,
            QuantFormat::Q4_1 => 4 + QK / 2,
            QuantFormat::Q5_0 => 6 + QK / 2,
            QuantFormat::Q5_1 => 8 + QK / 2,
            QuantFormat::Q4_K => 4 + 12 + QK_K / 2,
            QuantFormat::Q5_K => 4 + 12 + QK_K / 8 + QK_K / 2,
            QuantFormat::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Lower-case name, as the CLI and the GPU's dtypes spell it (`q4_k`).
    pub const fn name(self) -> &'static str {
        match self {
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4_0 => "q4_0",
            QuantFormat::Q4_1 => "q4_1",
            QuantFormat::Q5_0 => "q5_0",
            QuantFormat::Q5_1 => "q5_1",
            QuantFormat::Q4_K => "q4_k",
            QuantFormat::Q5_K => "q5_k",
            QuantFormat::Q6_K => "q6_k",
        }
    }

    /// The format named `name` (as [`name`](Self::name) spells it), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Why a quantization call refused its input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantError {
    /// The value count is not a multiple of the block size.
    #[error("{format:?}: {len} values is not a multiple of the block size {block}")]
    Unaligned {
        /// The format.
        format: QuantFormat,
        /// Values given.
        len: usize,
        /// Values per block.
        block: usize,
    },
    /// The byte count is not a whole number of blocks.
    #[error("{format:?}: {len} bytes is not a multiple of the block size {block} bytes")]
    BadBytes {
        /// The format.
        format: QuantFormat,
        /// Bytes given.
        len: usize,
        /// Bytes per block.
        block: usize,
    },
}

/// Quantizes `values` (a whole number of blocks of them) to `format`'s bytes.
pub fn quantize(format: QuantFormat, values: &[f32]) -> Result<Vec<u8>, QuantError> {
    let elems = format.block_elems();
    if !values.len().is_multiple_of(elems) {
        return Err(QuantError::Unaligned {
            format,
            len: values.len(),
            block: elems,
        });
    }
    let mut out = Vec::with_capacity(values.len() / elems * format.block_bytes());
    for block in values.chunks_exact(elems) {
        match format {
            QuantFormat::Q8_0 => legacy::quantize_q8_0(block, &mut out),
            QuantFormat::Q4_0 => legacy::quantize_q4_0(block, &mut out),
            QuantFormat::Q4_1 => legacy::quantize_q4_1(block, &mut out),
            QuantFormat::Q5_0 => legacy::quantize_q5_0(block, &mut out),
            QuantFormat::Q5_1 => legacy::quantize_q5_1(block, &mut out),
            QuantFormat::Q4_K => kquant::quantize_qk(block, 4, &mut out),
            QuantFormat::Q5_K => kquant::quantize_qk(block, 5, &mut out),
            QuantFormat::Q6_K => kquant::quantize_q6_k(block, &mut out),
        }
    }
    Ok(out)
}

/// The values `format`'s `bytes` stand for.
pub fn dequantize(format: QuantFormat, bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    let block = format.block_bytes();
    if !bytes.len().is_multiple_of(block) {
        return Err(QuantError::BadBytes {
            format,
            len: bytes.len(),
            block,
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / block * format.block_elems());
    for b in bytes.chunks_exact(block) {
        match format {
            QuantFormat::Q8_0 => legacy::dequantize_q8_0(b, &mut out),
            QuantFormat::Q4_0 => legacy::dequantize_q4_0(b, &mut out),
            QuantFormat::Q4_1 => legacy::dequantize_q4_1(b, &mut out),
            QuantFormat::Q5_0 => legacy::dequantize_q5_0(b, &mut out),
            QuantFormat::Q5_1 => legacy::dequantize_q5_1(b, &mut out),
            QuantFormat::Q4_K => kquant::dequantize_q4_k(b, &mut out),
            QuantFormat::Q5_K => kquant::dequantize_q5_k(b, &mut out),
            QuantFormat::Q6_K => kquant::dequantize_q6_k(b, &mut out),
        }
    }
    Ok(out)
}

/// The little-endian f16 at `b[i..i + 2]`, as f32.
fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `v` rounded to f16 and back: the scale a block stores, as its values will be decoded.
fn as_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}
