//! RoPE fused with the KV-cache append.

use pertoken_attention::KvCache;
use pertoken_cost::RopePairing;
use pertoken_gpu::{DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::MODEL_ROPE;

use super::{need_f32, u};

/// A column window of a row-major f32 matrix: columns `col ..` of each `stride`-wide row. The
/// fused qkv linear's output holds q, k and v as three windows of one tensor.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// The matrix, `[rows, stride]`.
    pub tensor: &'a Tensor,
    /// The window's first column.
    pub col: usize,
}

impl Columns<'_> {
    fn stride(&self) -> usize {
        self.tensor.shape().last().copied().unwrap_or(0)
    }

    fn check(&self, op: &'static str, rows: usize, width: usize) -> Result<()> {
        let stride = self.stride();
        if self.col + width > stride || self.tensor.shape().len() != 2 {
            return Err(Error::InvalidShape {
                op,
                shape: self.tensor.shape().to_vec(),
                reason: format!(
                    "needs columns {}..{} of a [rows, stride] matrix",
                    self.col,
                    self.col + width
                ),
            });
        }
        need_f32(op, self.tensor, rows * stride, "the projection")
    }
}

/// Turns `t` tokens' q and k heads (rows `row0 .. row0 + t` of the projections) by RoPE at
/// positions `cache.len() ..`, writes q heads-first into `q_out: [n_heads, t, head_dim]` and k
/// (turned) and v (as is) into the cache's next `t` rows, then marks them filled.
/// `freq: [head_dim / 2]` holds each pair's angular frequency.
#[allow(clippy::too_many_arguments)]
pub fn rope_append(
    gpu: &Gpu,
    [q, k, v]: [Columns<'_>; 3],
    (row0, t): (usize, usize),
    freq: &Tensor,
    pairing: RopePairing,
    q_out: &Tensor,
    cache: &mut KvCache,
) -> Result<()> {
    const OP: &str = "rope_append";
    let [n_heads, qt, d] = q_out.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: q_out.shape().to_vec(),
            reason: "q_out must be [n_heads, t, head_dim]".into(),
        });
    };
    let [n_kv, capacity, kd] = cache.keys().shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: cache.keys().shape().to_vec(),
            reason: "the cache must be [n_kv_heads, capacity, head_dim]".into(),
        });
    };
    if qt != t || kd != d || d % 2 != 0 || freq.shape() != [d / 2] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: q_out.shape().to_vec(),
            rhs: cache.keys().shape().to_vec(),
            expected: format!(
                "q_out [n_heads, {t}, head_dim] with an even head_dim equal to the cache's, freq [head_dim / 2]"
            ),
        });
    }
    if cache.keys().dtype() != DType::F32 {
        return Err(Error::Unsupported {
            op: OP,
            reason: "the fused RoPE append writes f32 caches".into(),
        });
    }
    if cache.len() + t > capacity {
        return Err(Error::InvalidShape {
            op: OP,
            shape: vec![n_kv, t, d],
            reason: format!(
                "KV cache overflow: {} positions filled + {t} new > capacity {capacity}; use a longer context",
                cache.len()
            ),
        });
    }
    q.check(OP, row0 + t, n_heads * d)?;
    k.check(OP, row0 + t, n_kv * d)?;
    v.check(OP, row0 + t, n_kv * d)?;
    need_f32(OP, freq, d / 2, "freq")?;
    need_f32(OP, q_out, n_heads * t * d, "q_out")?;
    let params: [u32; 16] = [
        u(t),
        u(d),
        u(n_heads),
        u(n_kv),
        u(q.stride()),
        u(k.stride()),
        u(v.stride()),
        u(q.col),
        u(k.col),
        u(v.col),
        u(capacity),
        u(cache.len()),
        u(row0),
        0,
        0,
        0,
    ];
    let interleaved = pairing == RopePairing::Interleaved;
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_ROPE,
        constants: &[("INTERLEAVED", f64::from(u8::from(interleaved)))],
        bindings: &[
            q.tensor.into(),
            k.tensor.into(),
            v.tensor.into(),
            freq.into(),
            q_out.into(),
            cache.keys().into(),
            cache.values().into(),
        ],
        params: bytemuck::cast_slice(&params),
        workgroups: [u((d / 2).div_ceil(64)), u(n_heads + 2 * n_kv), u(t)],
    })?;
    cache.extend_written(t)
}
