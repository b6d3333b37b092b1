//! Element conversions: BF16 to F16 (round to nearest even), anything to f32.

use std::borrow::Cow;

use half::{bf16, f16};

use crate::error::{FormatError, Result};
use crate::safetensors::{Dtype, TensorRef};

/// Weights as kernels without BF16 take them: little-endian F32 or F16 bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Floats<'a> {
    /// F32 bytes.
    F32(Cow<'a, [u8]>),
    /// F16 bytes.
    F16(Cow<'a, [u8]>),
}

/// Little-endian BF16 bytes to F16 bytes, each value rounded to the nearest F16 (ties to
/// even; below F16's smallest subnormal to zero). A finite value beyond F16's range (±65504)
/// is an error: `Err((index, value))`. Infinities and NaN stay what they are.
pub fn bf16_to_f16(bf16_le: &[u8]) -> Result<Vec<u8>, (usize, f32)> {
    let mut out = Vec::with_capacity(bf16_le.len());
    for (i, pair) in bf16_le.chunks_exact(2).enumerate() {
        let x = bf16::from_le_bytes([pair[0], pair[1]]).to_f32();
        let h = f16::from_f32(x);
        if h.is_infinite() && x.is_finite() {
            return Err((i, x));
        }
        out.extend_from_slice(&h.to_le_bytes());
    }
    Ok(out)
}

impl<'a> TensorRef<'a> {
    /// F32 and F16 data unchanged (borrowed); BF16 converted to F16 by [`bf16_to_f16`].
    pub fn to_f16_or_f32(&self) -> Result<Floats<'a>> {
        Ok(match self.dtype {
            Dtype::F32 => Floats::F32(Cow::Borrowed(self.data)),
            Dtype::F16 => Floats::F16(Cow::Borrowed(self.data)),
            Dtype::BF16 => Floats::F16(Cow::Owned(bf16_to_f16(self.data).map_err(
                |(index, value)| FormatError::OutOfRange {
                    file: self.file.to_owned(),
                    tensor: self.name.to_owned(),
                    index,
                    value,
                    target: "F16",
                },
            )?)),
        })
    }

    /// The elements as f32 (exact for every type).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            Dtype::F32 => self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => self
                .data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => self
                .data
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }

    /// The number of elements.
    pub fn element_count(&self) -> u64 {
        self.shape.iter().product()
    }
}
