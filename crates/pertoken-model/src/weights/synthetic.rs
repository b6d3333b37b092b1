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
    /// Weights for `spec` in `format` (any of [`DType::WEIGHTS`]), drawn from `seed`. A K-quant
    /// matrix whose rows are not whole super-blocks of 256 takes the type llama.cpp's quantizer
    /// falls back to ([`fallback`]), as in the K-quant files people download.
    pub fn new(spec: ModelSpec, format: DType, seed: u64) -> Result<Synthetic> {
        spec.check()?;
        let quant = quant_format(format);
        if !matches!(format, DType::F32 | DType::F16) && quant.is_none() {
            return Err(ModelError::Unsupported {
                model: spec.shape.name.clone(),
                reason: format!(
                    "synthetic weights come in {}, not {format}",
                    DType::WEIGHTS.map(|d| d.name()).join(", ")
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
            Role::QNorm(l) => (15, l),
            Role::KNorm(l) => (16, l),
            Role::PostAttnNorm(l) => (17, l),
            Role::PostFfnNorm(l) => (18, l),
        };
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((layer as u64) << 8 | kind)
    }
}

/// The type a matrix of `format` with rows of `k` values is stored in: `format` where a row is
/// whole blocks of it, else llama.cpp's fallback for the K-quants (`tensor_type_fallback` in
/// llama-quant.cpp: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0).
pub(crate) fn fallback(format: DType, k: usize) -> DType {
    if k.is_multiple_of(format.block().0) {
        return format;
    }
    match format {
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        other => other,
    }
}

pub(crate) fn quant_format(dtype: DType) -> Option<QuantFormat> {
    QuantFormat::from_name(dtype.name())
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
            Role::QNorm(_) | Role::KNorm(_) if !m.arch.qk_norm => {
                return Err(ModelError::Invalid {
                    op: "Synthetic::tensor",
                    reason: format!("{} has no q/k norms", m.name),
                });
            }
            Role::PostAttnNorm(_) | Role::PostFfnNorm(_) if !m.arch.post_norms => {
                return Err(ModelError::Invalid {
                    op: "Synthetic::tensor",
                    reason: format!("{} has no post-norms", m.name),
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
        let dtype = fallback(self.format, shape[1]);
        let bytes = match (dtype, quant_format(dtype)) {
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
            dtype,
            shape,
            bytes: Cow::Owned(bytes),
        }))
    }

    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        let m = &self.spec.shape;
        if role == Role::Output && m.tied_embeddings {
            return Ok(None);
        }
        let shape = role.shape(&self.spec);
        let dtype = if role.is_vector() {
            DType::F32
        } else {
            fallback(self.format, shape[1])
        };
        Ok(Some((dtype, shape)))
    }

    fn describe(&self) -> String {
        let m = &self.spec.shape;
        let rows = [m.hidden, m.ffn, m.heads * m.head_dim];
        let other = rows
            .into_iter()
            .map(|k| fallback(self.format, k as usize))
            .find(|&d| d != self.format);
        match other {
            None => format!("synthetic {} weights (seed {})", self.format, self.seed),
            Some(d) => format!(
                "synthetic {} weights (seed {}; rows that are not whole super-blocks of 256 in \
                 {d}, as llama.cpp quantizes them)",
                self.format, self.seed
            ),
        }
    }
}
