//! ggml's Q8_0, Q4_0 and Q4_1 weight formats, byte for byte.
//!
//! All three quantize blocks of [`QK`] = 32 consecutive values with one f16 scale `d`:
//! - **Q8_0**, 34 bytes per block: `d` (f16, little-endian), then 32 `i8` values `q`;
//!   the value is `q · d`.
//! - **Q4_0**, 18 bytes per block: `d`, then 16 bytes; byte `j` holds value `j` in its low nibble
//!   and value `j + 16` in its high nibble; the value is `(nibble − 8) · d`.
//! - **Q4_1**, 20 bytes per block: `d`, then an f16 minimum `m`, then 16 bytes of nibbles laid
//!   out as Q4_0's; the value is `nibble · d + m`.
//!
//! The rounding follows ggml's reference quantizers (`quantize_row_q8_0_ref`,
//! `quantize_row_q4_0_ref`, `quantize_row_q4_1_ref`), so blocks here and in existing GGUF checkpoints mean the same
//! thing. Kernels are checked against [`dequantize`] of the same bytes: that isolates the
//! kernel's error from the format's.

use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// A block-quantized weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// 8-bit values, one f16 scale per 32: 8.5 bits per weight.
    Q8_0,
    /// 4-bit values, one f16 scale per 32: 4.5 bits per weight.
    Q4_0,
    /// 4-bit values, an f16 scale and an f16 minimum per 32: 5 bits per weight.
    Q4_1,
}

impl QuantFormat {
    /// Bytes per block of [`QK`] values.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantFormat::Q8_0 => 2 + QK,
            QuantFormat::Q4_0 => 2 + QK / 2,
            QuantFormat::Q4_1 => 4 + QK / 2,
        }
    }
}

/// Why a quantization call refused its input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantError {
    /// The value count is not a multiple of the block size.
    #[error("{format:?}: {len} values is not a multiple of the block size {QK}")]
    Unaligned {
        /// The format.
        format: QuantFormat,
        /// Values given.
        len: usize,
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

/// Quantizes `values` (a multiple of 32 of them) to `format`'s bytes.
pub fn quantize(format: QuantFormat, values: &[f32]) -> Result<Vec<u8>, QuantError> {
    if !values.len().is_multiple_of(QK) {
        return Err(QuantError::Unaligned {
            format,
            len: values.len(),
        });
    }
    let mut out = Vec::with_capacity(values.len() / QK * format.block_bytes());
    for block in values.chunks_exact(QK) {
        match format {
            QuantFormat::Q8_0 => {
                let amax = block.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|&v| ((v * id).round() as i8) as u8));
            }
            QuantFormat::Q4_0 => {
                // The value of largest magnitude, with its sign, maps to −8.
                let max = block
                    .iter()
                    .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                out.extend((0..QK / 2).map(|j| q(block[j]) | (q(block[j + QK / 2]) << 4)));
            }
            QuantFormat::Q4_1 => {
                // The block's range [min, max] in 15 steps; nibble 0 is the minimum.
                let min = block.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                let max = block.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
                out.extend((0..QK / 2).map(|j| q(block[j]) | (q(block[j + QK / 2]) << 4)));
            }
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
    let mut out = Vec::with_capacity(bytes.len() / block * QK);
    for b in bytes.chunks_exact(block) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        match format {
            QuantFormat::Q8_0 => out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d)),
            QuantFormat::Q4_0 => {
                let lo = b[2..].iter().map(|&q| f32::from(q & 0x0f) - 8.0);
                let hi = b[2..].iter().map(|&q| f32::from(q >> 4) - 8.0);
                out.extend(lo.chain(hi).map(|v| v * d));
            }
            QuantFormat::Q4_1 => {
                let m = f16::from_le_bytes([b[2], b[3]]).to_f32();
                let lo = b[4..].iter().map(|&q| f32::from(q & 0x0f));
                let hi = b[4..].iter().map(|&q| f32::from(q >> 4));
                out.extend(lo.chain(hi).map(|v| v * d + m));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::uniform_f32;

    #[test]
    fn q8_0_layout_by_hand() {
        let mut v = [0.0f32; QK];
        v[0] = 1.27;
        v[1] = -0.635;
        v[31] = 0.01;
        let bytes = quantize(QuantFormat::Q8_0, &v).unwrap();
        assert_eq!(bytes.len(), 34);
        let d = f16::from_le_bytes([bytes[0], bytes[1]]);
        assert_eq!(d, f16::from_f32(0.01));
        assert_eq!(bytes[2] as i8, 127);
        assert_eq!(bytes[3] as i8, -64); // −0.635 / 0.01 = −63.5, rounded away from zero
        assert_eq!(bytes[33] as i8, 1);
        assert_eq!(bytes[4], 0);
    }

    #[test]
    fn q4_0_layout_by_hand() {
        let mut v = [0.0f32; QK];
        v[0] = -0.8; // largest magnitude: d = −0.8 / −8 = 0.1, maps to nibble 0
        v[16] = 0.7; // 0.7 / 0.1 + 8.5 = 15.5 → 15
        v[1] = 0.05; // 0.5 + 8.5 = 9
        let bytes = quantize(QuantFormat::Q4_0, &v).unwrap();
        assert_eq!(bytes.len(), 18);
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]), f16::from_f32(0.1));
        assert_eq!(bytes[2], (15 << 4));
        assert_eq!(bytes[3], (8 << 4) | 9);
        let back = dequantize(QuantFormat::Q4_0, &bytes).unwrap();
        let d = f16::from_f32(0.1).to_f32();
        assert_eq!(back[0], -8.0 * d);
        assert_eq!(back[16], 7.0 * d);
        assert_eq!(back[1], d);
        assert_eq!(back[17], 0.0);
    }

    #[test]
    fn q4_1_layout_by_hand() {
        let mut v = [0.25f32; QK];
        v[0] = -0.5; // the minimum: nibble 0
        v[16] = 1.0; // the maximum: d = 1.5 / 15 = 0.1, nibble 15
        v[1] = 0.26; // (0.26 + 0.5) / 0.1 + 0.5 = 8.1 → 8
        let bytes = quantize(QuantFormat::Q4_1, &v).unwrap();
        assert_eq!(bytes.len(), 20);
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]), f16::from_f32(0.1));
        assert_eq!(
            f16::from_le_bytes([bytes[2], bytes[3]]),
            f16::from_f32(-0.5)
        );
        assert_eq!(bytes[4], 15 << 4);
        assert_eq!(bytes[5], (8 << 4) | 8);
        let back = dequantize(QuantFormat::Q4_1, &bytes).unwrap();
        let (d, m) = (f16::from_f32(0.1).to_f32(), f16::from_f32(-0.5).to_f32());
        assert_eq!(back[0], m);
        assert_eq!(back[16], 15.0 * d + m);
        assert_eq!(back[1], 8.0 * d + m);
    }

    #[test]
    fn round_trip_error_is_bounded_by_the_step_and_the_scale_rounding() {
        let v = uniform_f32(3, 32 * 64);
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1] {
            let bytes = quantize(format, &v).unwrap();
            assert_eq!(bytes.len(), 64 * format.block_bytes());
            let back = dequantize(format, &bytes).unwrap();
            for (block, got) in v.chunks(QK).zip(back.chunks(QK)) {
                let amax = block.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
                // Half a step from rounding (a whole step for Q4_0, whose range −8..=7 clips
                // values of the sign opposite to the largest one at 7 steps), plus the f16
                // rounding of the scale (relative 2⁻¹¹) times the largest quantized magnitude.
                let (step, qmax, rounding) = match format {
                    QuantFormat::Q8_0 => (amax / 127.0, 127.0, 0.5),
                    QuantFormat::Q4_0 => (amax / 8.0, 8.0, 1.0),
                    // Steps of range / 15 ≤ 2·amax / 15; the minimum's f16 rounding adds
                    // at most amax / 2048 (counted as one more unit of qmax).
                    QuantFormat::Q4_1 => (2.0 * amax / 15.0, 16.0, 0.5),
                };
                let bound = step * (rounding + qmax / 2048.0) + 1e-6;
                for (&x, &y) in block.iter().zip(got) {
                    assert!((x - y).abs() <= bound, "{format:?}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn zero_blocks_and_bad_lengths() {
        let z = quantize(QuantFormat::Q4_0, &[0.0; QK]).unwrap();
        assert_eq!(dequantize(QuantFormat::Q4_0, &z).unwrap(), vec![0.0; QK]);
        assert!(matches!(
            quantize(QuantFormat::Q8_0, &[1.0; 33]),
            Err(QuantError::Unaligned { len: 33, .. })
        ));
        assert!(matches!(
            dequantize(QuantFormat::Q4_0, &[0; 19]),
            Err(QuantError::BadBytes { len: 19, .. })
        ));
    }
}
