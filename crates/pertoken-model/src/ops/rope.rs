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
    pub(crate) fn stride(&self) -> usize {
        self.tensor.shape().last().copied().unwrap_or(0)
    }

    pub(crate) fn check(&self, op: &'static str, rows: usize, width: usize) -> Result<()> {
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

/// How [`rope_append`] turns a head: each pair's angular frequency (`freq: [rotary / 2]`; the
/// head's elements past `rotary` pass through), the pairing, and optionally the per-head
/// RMSNorm of q and k (weights `[head_dim]` each, and epsilon) applied first.
#[derive(Debug, Clone, Copy)]
pub struct HeadRope<'a> {
    /// Angular frequency of each turned pair.
    pub freq: &'a Tensor,
    /// Which elements turn together.
    pub pairing: RopePairing,
    /// q's and k's norm weights and epsilon (Gemma 3, Qwen3).
    pub qk_norm: Option<(&'a Tensor, &'a Tensor, f32)>,
    /// Multiplies the turned elements (1, or Phi-3 LongRoPE's attention factor).
    pub factor: f32,
}

impl<'a> HeadRope<'a> {
    /// q's and k's norm weights and epsilon, checked against heads of `d`; without q/k norms,
    /// `freq` twice (bound, never read) and 1.
    pub(crate) fn norms(
        &self,
        op: &'static str,
        d: usize,
    ) -> Result<(&'a Tensor, &'a Tensor, f32)> {
        let Some((qn, kn, eps)) = self.qk_norm else {
            return Ok((self.freq, self.freq, 1.0));
        };
        for (w, what) in [(qn, "q_norm"), (kn, "k_norm")] {
            if w.shape() != [d] {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: w.shape().to_vec(),
                    rhs: vec![d],
                    expected: format!("{what} [head_dim]"),
                });
            }
            need_f32(op, w, d, what)?;
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::InvalidOption {
                name: "rope eps",
                value: eps.to_string(),
                reason: "must be a positive finite number".into(),
            });
        }
        Ok((qn, kn, eps))
    }

    /// The turned width (twice the frequencies), checked against heads of `d`.
    pub(crate) fn rotary(&self, op: &'static str, d: usize) -> Result<usize> {
        let rot = self.freq.shape().first().map_or(0, |h| 2 * h);
        if self.freq.shape().len() != 1 || rot == 0 || rot > d {
            return Err(Error::InvalidShape {
                op,
                shape: self.freq.shape().to_vec(),
                reason: format!("freq must be [rotary / 2] with 2 <= rotary <= head_dim {d}"),
            });
        }
        need_f32(op, self.freq, rot / 2, "freq")?;
        Ok(rot)
    }
}

/// Turns `t` tokens' q and k heads (rows `row0 .. row0 + t` of the projections) by RoPE at
/// positions `cache.len() ..` (RMS-norming each head first where `rope` says), writes q
/// heads-first into `q_out: [n_heads, t, head_dim]` and k (turned) and v (as is) into the
/// cache's next `t` rows, then marks them filled.
pub fn rope_append(
    gpu: &Gpu,
    [q, k, v]: [Columns<'_>; 3],
    (row0, t): (usize, usize),
    rope: &HeadRope<'_>,
    q_out: &Tensor,
    cache: &mut KvCache,
) -> Result<()> {
    const OP: &str = "rope_append";
    let freq = rope.freq;
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
    let rot = freq.shape().first().map_or(0, |h| 2 * h);
    if qt != t || kd != d || freq.shape().len() != 1 || rot == 0 || rot > d {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: q_out.shape().to_vec(),
            rhs: cache.keys().shape().to_vec(),
            expected: format!(
                "q_out [n_heads, {t}, head_dim] with a head_dim equal to the cache's, freq \
                 [rotary / 2] with 2 <= rotary <= head_dim (got {:?})",
                freq.shape()
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
    need_f32(OP, freq, rot / 2, "freq")?;
    need_f32(OP, q_out, n_heads * t * d, "q_out")?;
    let (qn, kn, eps) = rope.norms(OP, d)?;
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
        u(rot),
        eps.to_bits(),
        rope.factor.to_bits(),
    ];
    let interleaved = rope.pairing == RopePairing::Interleaved;
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_ROPE,
        constants: &[
            ("INTERLEAVED", f64::from(u8::from(interleaved))),
            ("QK_NORM", f64::from(u8::from(rope.qk_norm.is_some()))),
        ],
        bindings: &[
            q.tensor.into(),
            k.tensor.into(),
            v.tensor.into(),
            freq.into(),
            q_out.into(),
            cache.keys().into(),
            cache.values().into(),
            qn.into(),
            kn.into(),
        ],
        params: bytemuck::cast_slice(&params),
        workgroups: [1, u(n_heads + 2 * n_kv), u(t)],
    })?;
    cache.extend_written(t)
}
