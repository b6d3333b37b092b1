//! The same weights for the CPU reference: every tensor as f32 values (quantized blocks
//! dequantized), so the reference and the kernels compute with the same numbers.

use ndarray::Array2;
use pertoken_reference::decoder::{Decoder, Layer, Weights};

use super::{Role, WeightSource};
use crate::{ModelError, ModelSpec, Result};

/// The reference decoder for `spec` over `weights`, with the spec's stored RoPE factors.
pub fn reference_decoder<'a>(spec: &'a ModelSpec, weights: &'a Weights) -> Result<Decoder<'a>> {
    let bad = |e: pertoken_reference::decoder::DecoderError| ModelError::Invalid {
        op: "reference_decoder",
        reason: e.to_string(),
    };
    let d = Decoder::new(&spec.shape, spec.pairing, weights).map_err(bad)?;
    match &spec.rope_factors {
        None => Ok(d),
        Some(f) => d.with_rope_factors(f).map_err(bad),
    }
}

/// Reads every weight of `source` into the reference decoder's f32 form. Memory: 4 bytes per
/// parameter.
pub fn to_reference(source: &dyn WeightSource) -> Result<Weights> {
    let spec = source.spec();
    let m = &spec.shape;
    let vector = |role: Role| -> Result<Vec<f32>> {
        source.tensor(role)?.ok_or_else(|| missing(role))?.to_f32()
    };
    let matrix = |role: Role| -> Result<Array2<f32>> {
        let t = source.tensor(role)?.ok_or_else(|| missing(role))?;
        let [r, c] = t.shape[..] else {
            return Err(ModelError::Invalid {
                op: "to_reference",
                reason: format!("{} is not a matrix: {:?}", t.name, t.shape),
            });
        };
        Array2::from_shape_vec((r, c), t.to_f32()?).map_err(|e| ModelError::Invalid {
            op: "to_reference",
            reason: format!("{}: {e}", t.name),
        })
    };
    let mut layers = Vec::with_capacity(m.layers as usize);
    for l in 0..m.layers as usize {
        layers.push(Layer {
            attn_norm: vector(Role::AttnNorm(l))?,
            wq: matrix(Role::Q(l))?,
            wk: matrix(Role::K(l))?,
            wv: matrix(Role::V(l))?,
            qkv_bias: if m.qkv_bias {
                Some([
                    vector(Role::QBias(l))?,
                    vector(Role::KBias(l))?,
                    vector(Role::VBias(l))?,
                ])
            } else {
                None
            },
            wo: matrix(Role::O(l))?,
            ffn_norm: vector(Role::FfnNorm(l))?,
            gate: matrix(Role::Gate(l))?,
            up: matrix(Role::Up(l))?,
            down: matrix(Role::Down(l))?,
            qk_norm: if m.arch.qk_norm {
                Some([vector(Role::QNorm(l))?, vector(Role::KNorm(l))?])
            } else {
                None
            },
            post_norms: if m.arch.post_norms {
                Some([
                    vector(Role::PostAttnNorm(l))?,
                    vector(Role::PostFfnNorm(l))?,
                ])
            } else {
                None
            },
        });
    }
    let output = match source.tensor(Role::Output)? {
        None => None,
        Some(_) => Some(matrix(Role::Output)?),
    };
    Ok(Weights {
        embed: matrix(Role::Embed)?,
        layers,
        final_norm: vector(Role::FinalNorm)?,
        output,
    })
}

fn missing(role: Role) -> ModelError {
    ModelError::Invalid {
        op: "to_reference",
        reason: format!("the source gave no {role:?} weight"),
    }
}
