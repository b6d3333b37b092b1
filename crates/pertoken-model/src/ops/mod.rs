//! The decoder's own kernels, one launcher per WGSL file in `shaders/model/`: RMSNorm (with the
//! residual add fused in), RoPE fused with the KV-cache append, SwiGLU's gate, the attention
//! output's layout change, the embedding gather and greedy argmax. The matmuls and attention
//! come from pertoken-matmul and pertoken-attention.
//!
//! Every launcher checks its tensors' shapes and dtypes and records one dispatch (the embedding
//! one per binding window) into the pending encoder.

mod argmax;
mod embed;
mod heads;
mod norm;
mod paged;
mod rope;
mod silu;
mod softcap;

pub use argmax::argmax_into;
pub use embed::{embed, embed_rows, embed_scaled};
pub use heads::heads_to_tokens;
pub use norm::{rms_norm, rms_norm_post};
pub use paged::{argmax_rows, rope_paged};
pub use rope::{Columns, HeadRope, rope_append};
pub use silu::{Activation, act_mul, silu_mul};
pub use softcap::softcap;

use pertoken_gpu::{DType, Error, Result, Tensor};

/// Workgroups of 256 invocations in x for a kernel that strides over `n` elements.
pub(crate) fn strided_groups(n: usize, limit: u32) -> u32 {
    u32::try_from(n.div_ceil(256))
        .unwrap_or(u32::MAX)
        .clamp(1, limit)
}

pub(crate) fn u(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Checks that `t` is f32 and holds at least `len` elements.
pub(crate) fn need_f32(op: &'static str, t: &Tensor, len: usize, what: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::DTypeMismatch {
            op,
            expected: DType::F32,
            got: t.dtype(),
        });
    }
    if t.len() < len {
        return Err(Error::InvalidShape {
            op,
            shape: t.shape().to_vec(),
            reason: format!("{what} needs at least {len} elements"),
        });
    }
    if u32::try_from(t.len()).is_err() {
        return Err(Error::InvalidShape {
            op,
            shape: t.shape().to_vec(),
            reason: "more than 2³²−1 elements; the kernels index with u32".into(),
        });
    }
    Ok(())
}
