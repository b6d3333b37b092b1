//! Phi-3 and Phi-4-mini (`phi3`, llama.cpp's `src/models/phi3.cpp`): Llama's block with q, k
//! and v in one tensor (`attn_qkv`, rows Q | K | V) and gate and up in one (`ffn_up`, the gate's
//! rows first), rotate-half RoPE over the first `rope.dimension_count` elements of each head,
//! and LongRoPE: per-pair frequency divisors stored as `rope_factors_short` / `_long` and an
//! attention factor on the turned elements. The file's sliding window is not used (llama.cpp
//! turns it off for this family).

use pertoken_cost::RopePairing;

use super::{Family, Keys, Place, tensor_name};
use crate::weights::Role;
use crate::{ModelError, ModelSpec, Result};

pub(super) const FAMILY: Family = Family {
    name: "phi3",
    models: "Phi-3, Phi-4-mini",
    pairing: RopePairing::Halves,
    read,
    place,
};

fn read(k: &Keys<'_>, spec: &mut ModelSpec) -> Result<()> {
    let m = &mut spec.shape;
    m.arch.rope_attn_factor = k.f64_opt("rope.scaling.attn_factor")?.filter(|&f| f != 1.0);
    let pairs = m.arch.rotary_dims.unwrap_or(m.head_dim) / 2;
    // The short factors serve contexts up to the original length; past it llama.cpp switches
    // to the long ones, which this decoder does not do yet: it refuses such contexts.
    if let Some(short) = k.f32_vector("rope_factors_short.weight", pairs)? {
        spec.rope_factors = Some(short);
    }
    if k.f32_vector("rope_factors_long.weight", pairs)?.is_some() {
        let original = k
            .u64_opt("rope.scaling.original_context_length")?
            .ok_or_else(|| ModelError::Unsupported {
                model: m.name.clone(),
                reason: "LongRoPE factors without rope.scaling.original_context_length".into(),
            })?;
        spec.context_limit = Some(original as usize);
    }
    Ok(())
}

/// q, k and v as rows of `attn_qkv` and gate and up as rows of `ffn_up` where the file fuses
/// them (llama.cpp also reads Phi-3 files with separate tensors).
fn place(k: &Keys<'_>, spec: &ModelSpec, role: Role) -> Place {
    let (q, kv, ffn) = (spec.q_width(), spec.kv_width(), spec.shape.ffn as usize);
    let qkv = |l: usize, start: usize, rows: usize| {
        let name = format!("blk.{l}.attn_qkv.weight");
        k.has_tensor(&name).then(|| Place::Rows {
            name,
            start,
            rows,
            total: q + 2 * kv,
        })
    };
    let gate_up = |l: usize, start: usize| {
        let fused = !k.has_tensor(&tensor_name(Role::Gate(l)));
        fused.then(|| Place::Rows {
            name: tensor_name(Role::Up(l)),
            start,
            rows: ffn,
            total: 2 * ffn,
        })
    };
    let fused = match role {
        Role::Q(l) => qkv(l, 0, q),
        Role::K(l) => qkv(l, q, kv),
        Role::V(l) => qkv(l, q + kv, kv),
        Role::Gate(l) => gate_up(l, 0),
        Role::Up(l) => gate_up(l, ffn),
        _ => None,
    };
    fused.unwrap_or_else(|| Place::Tensor(tensor_name(role)))
}
