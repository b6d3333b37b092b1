//! The shape of an attention call and its options: checking q, k, v and the output tensor.

use pertoken_gpu::{DType, Error, Result, Tensor};

use crate::OP;

/// Largest head dimension the kernels hold in registers (Gemma's 256 included).
pub const MAX_HEAD_DIM: usize = 256;
/// Head dimensions up to this one (most models: 64, 80, 96, 128) run the kernels' narrow
/// variants; larger ones, up to [`MAX_HEAD_DIM`], the wide variants, whose register arrays are
/// twice as long (and whose teams hold at most
/// [`TEAM_WIDE_MAX_ROWS`](crate::TEAM_WIDE_MAX_ROWS) rows on GPUs).
pub const NARROW_HEAD_DIM: usize = 128;

/// Options of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionOptions {
    /// Mask keys after each query's position.
    pub causal: bool,
    /// Score scale; `None` for `1/√head_dim`. Must be finite.
    pub scale: Option<f32>,
    /// Sliding-window attention (Gemma, Mistral): a query at position `P` sees only keys at
    /// positions `P − w < j` (with `causal`, `P − w < j ≤ P`: the `w` latest). `None` or 0:
    /// every key.
    pub window: Option<u32>,
}

/// Which keys a query sees, as the kernels take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mask {
    pub(crate) causal: bool,
    /// 0 for none.
    pub(crate) window: u32,
}

impl AttentionOptions {
    /// The key mask.
    pub(crate) fn mask(&self) -> Mask {
        Mask {
            causal: self.causal,
            window: self.window.unwrap_or(0),
        }
    }

    /// The score scale for `head_dim`: the given one, or `1/√head_dim`. A NaN or infinite scale
    /// is an error (it would turn every score into NaN and the output into zeros).
    pub fn scale_for(&self, head_dim: usize) -> Result<f32> {
        match self.scale {
            None => Ok(1.0 / (head_dim as f32).sqrt()),
            Some(x) if x.is_finite() => Ok(x),
            Some(x) => Err(Error::InvalidOption {
                name: "AttentionOptions::scale",
                value: x.to_string(),
                reason: "the score scale must be a finite number (None gives 1/√head_dim)".into(),
            }),
        }
    }
}

/// The checked shape of an attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Queries per head.
    pub q_len: usize,
    /// Keys per KV head.
    pub kv_len: usize,
}

impl AttentionShape {
    /// FLOPs: q·kᵀ and p·v, 2·2·n_heads·q_len·kv_len·head_dim (all keys, before masking).
    pub fn flops(&self) -> f64 {
        4.0 * (self.n_heads * self.q_len * self.kv_len * self.head_dim) as f64
    }
}

fn invalid(t: &Tensor, reason: impl Into<String>) -> Error {
    Error::InvalidShape {
        op: OP,
        shape: t.shape().to_vec(),
        reason: reason.into(),
    }
}

/// Checks q, k, v and returns the shape.
pub fn check(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<AttentionShape> {
    for t in [k, v] {
        if t.dtype() != q.dtype() {
            return Err(Error::DTypeMismatch {
                op: OP,
                expected: q.dtype(),
                got: t.dtype(),
            });
        }
    }
    if !matches!(q.dtype(), DType::F32 | DType::F16) {
        return Err(Error::DTypeMismatch {
            op: OP,
            expected: DType::F32,
            got: q.dtype(),
        });
    }
    let [n_heads, q_len, head_dim] = q.shape()[..] else {
        return Err(invalid(q, "q must be [n_heads, q_len, head_dim]"));
    };
    let [n_kv_heads, kv_len, kd] = k.shape()[..] else {
        return Err(invalid(k, "k must be [n_kv_heads, kv_len, head_dim]"));
    };
    let mismatch = |expected: &str| Error::ShapeMismatch {
        op: OP,
        lhs: q.shape().to_vec(),
        rhs: k.shape().to_vec(),
        expected: expected.into(),
    };
    if v.shape() != k.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: k.shape().to_vec(),
            rhs: v.shape().to_vec(),
            expected: "k and v of the same shape".into(),
        });
    }
    if kd != head_dim {
        return Err(mismatch("q and k with the same head_dim"));
    }
    if !n_heads.is_multiple_of(n_kv_heads) {
        return Err(mismatch(
            "n_heads a multiple of n_kv_heads (grouped-query attention)",
        ));
    }
    if causal && q_len > kv_len {
        return Err(mismatch(
            "q_len ≤ kv_len for causal attention (queries are the last positions)",
        ));
    }
    if head_dim > MAX_HEAD_DIM {
        return Err(Error::Unsupported {
            op: OP,
            reason: format!("head_dim {head_dim} is over the kernels' maximum of {MAX_HEAD_DIM}"),
        });
    }
    Ok(AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim,
        q_len,
        kv_len,
    })
}

/// Checks an output tensor for q, k and v: f32, shaped like q, and none of them.
pub(crate) fn check_out(out: &Tensor, [q, k, v]: [&Tensor; 3]) -> Result<()> {
    if out.dtype() != DType::F32 || out.shape() != q.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: out.shape().to_vec(),
            rhs: q.shape().to_vec(),
            expected: "an f32 output shaped like q".into(),
        });
    }
    if [q, k, v]
        .iter()
        .any(|t| std::ptr::eq(t.buffer(), out.buffer()))
    {
        return Err(invalid(out, "the output tensor is also an input"));
    }
    Ok(())
}

/// A multi-query shape of head_dim 128, for the plan tests.
#[cfg(test)]
pub(crate) fn test_shape(n_heads: usize, q_len: usize, kv_len: usize) -> AttentionShape {
    AttentionShape {
        n_heads,
        n_kv_heads: 1,
        head_dim: 128,
        q_len,
        kv_len,
    }
}
