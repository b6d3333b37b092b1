//! Seeded random weights at any shape, in any format: any catalog model measured on any machine
//! with the memory, no file needed.

use std::borrow::Cow;

use pertoken_gpu::DType;
use pertoken_reference::random::uniform_f32_in;
use pertoken_reference::{QuantFormat, quantize};

use super::{HostTensor, Role, WeightSource};
use crate::{ModelError, ModelSpec, Result};

/// Random weights for `spec`: matrices (and the embedding) in `format`, norms and biases in f32.
/// Matrices are uniform with variance 1/in_features (so activations keep their scale through
/// the layers), norms uniform in [0.5, 1.5), biases in [−0.1, 0.1), the embedding in [−1, 1).
#[derive(Debug, Clone)]
pub struct Synthetic {
    spec: ModelSpec,
    format: DType,
    seed: u64,
}

impl Synthetic {
    /// Weights for `spec` in `format` (f32, f16, q8_0, q4_0, q4_1), drawn from `seed`.
    pub fn new(spec: ModelSpec, format: DType, seed: u64) -> Result<Synthetic> {
        spec.check()?;
        let quant = quant_format(format);
        if !matches!(format, DType::F32 | DType::F16) && quant.is_none() {
            return Err(ModelError::Unsupported {
                model: spec.shape.name.clone(),
                reason: format!(
                    "synthetic weights come in f32, f16, q8_0, q4_0 or q4_1, not {format}"
                ),
            });
        }
        if quant.is_some() {
            let m = &spec.shape;
            for (what, k) in [
                ("hidden", m.hidden),
                ("ffn", m.ffn),
                ("heads·head_dim", m.heads * m.head_dim),
            ] {
                if k % 32 != 0 {
                    return Err(ModelError::Unsupported {
                        model: m.name.clone(),
                        reason: format!(
                            "{format} quantizes rows in blocks of 32, and {what} is {k}; use f16 or f32"
                        ),
                    });
                }
            }
        }
        Ok(Synthetic { spec, format, seed })
    }

    fn seed_of(&self, role: Role) -> u64 {
        let (kind, layer) = match role {
            Role::Embed => (0, 0),
            Role::Output => (1, 0),
            Role::FinalNorm => (2, 0),
            Role::AttnNorm(l) => (3, l),
            Role::Q(l) => (4, l),
            Role::K(l) => (5, l),
            Role::V(l) => (6, l),
            Role::QBias(l) => (7, l),
            Role::KBias(l) => (8, l),
            Role::VBias(l) => (9, l),
            Role::O(l) => (10, l),
            Role::FfnNorm(l) => (11, l),
            Role::Gate(l) => (12, l),
            Role::Up(l) => (13, l),
            Role::Down(l) => (14, l),
        };
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((layer as u64) << 8 | kind)
    }
}

pub(crate) fn quant_format(dtype: DType) -> Option<QuantFormat> {
    match dtype {
        DType::Q8_0 => Some(QuantFormat::Q8_0),
        DType::Q4_0 => Some(QuantFormat::Q4_0),
        DType::Q4_1 => Some(QuantFormat::Q4_1),
        _ => None,
    }
}

impl WeightSource for Synthetic {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn tensor(&self, role: Role) -> Result<Option<HostTensor<'_>>> {
        let m = &self.spec.shape;
        match role {
            Role::Output if m.tied_embeddings => return Ok(None),
            Role::QBias(_) | Role::KBias(_) | Role::VBias(_) if !m.qkv_bias => {
                return Err(ModelError::Invalid {
                    op: "Synthetic::tensor",
                    reason: format!("{} has no q/k/v biases", m.name),
                });
            }
            _ => {}
        }
        let shape = role.shape(&self.spec);
        let len: usize = shape.iter().product();
        let seed = self.seed_of(role);
        let name = format!("{role:?}");
        if role.is_vector() {
            let (lo, hi) = if matches!(role, Role::QBias(_) | Role::KBias(_) | Role::VBias(_)) {
                (-0.1, 0.1)
            } else {
                (0.5, 1.5)
            };
            let v = uniform_f32_in(seed, len, lo, hi);
            return Ok(Some(HostTensor {
                name,
                dtype: DType::F32,
                shape,
                bytes: Cow::Owned(bytemuck::cast_slice(&v).to_vec()),
            }));
        }
        let a = if matches!(role, Role::Embed) {
            1.0
        } else {
            (3.0 / shape[1] as f32).sqrt()
        };
        let v = uniform_f32_in(seed, len, -a, a);
        let bytes = match (self.format, quant_format(self.format)) {
            (_, Some(q)) => quantize(q, &v).map_err(|e| ModelError::Invalid {
                op: "Synthetic::tensor",
                reason: e.to_string(),
            })?,
            (DType::F16, None) => {
                let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
                bytemuck::cast_slice(&h).to_vec()
            }
            _ => bytemuck::cast_slice(&v).to_vec(),
        };
        Ok(Some(HostTensor {
            name,
            dtype: self.format,
            shape,
            bytes: Cow::Owned(bytes),
        }))
    }

    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        let m = &self.spec.shape;
        if role == Role::Output && m.tied_embeddings {
            return Ok(None);
        }
        let dtype = if role.is_vector() {
            DType::F32
        } else {
            self.format
        };
        Ok(Some((dtype, role.shape(&self.spec))))
    }

    fn describe(&self) -> String {
        format!("synthetic {} weights (seed {})", self.format, self.seed)
    }
}
