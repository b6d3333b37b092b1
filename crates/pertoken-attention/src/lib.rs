//! Attention on the GPU: `out = softmax(q·kᵀ·scale + mask)·v`.
//!
//! [`attention`] runs the fused flash kernel: K and V are walked in tiles staged in workgroup
//! memory with an online softmax, so the `q_len × kv_len` scores never reach device memory;
//! causal attention skips the tiles no query of a workgroup may see; grouped-query attention maps
//! query heads to KV heads inside the kernel, with no copy. q, k and v are f32 or f16 (all the
//! same), accumulation is f32, the output is f32. [`Kernel::Naive`] materializes the scores and is
//! kept as the bench baseline (f32 only).
//!
//! Known limit: Mesa's llvmpipe (lavapipe) stops any shader loop after 65535 iterations in one
//! invocation, so on that adapter the flash kernel is wrong beyond about 1000 keys at head_dim 128
//! (and the naive one beyond 65535 / head_dim keys). `pertoken bench` verifies every result and
//! reports such runs as failures; the split-KV kernel, which bounds the keys per invocation, is
//! the fix.
//!
//! Layouts (row-major): `q: [n_heads, q_len, head_dim]`, `k, v: [n_kv_heads, kv_len, head_dim]`,
//! output `[n_heads, q_len, head_dim]`. With `causal`, query `i` attends keys
//! `j ≤ i + (kv_len − q_len)`: the queries are the last `q_len` positions.

use pertoken_gpu::{DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{ATTENTION_FLASH, ATTENTION_NAIVE_PV, ATTENTION_NAIVE_SCORES};

const OP: &str = "attention";

/// Largest head dimension the flash kernel holds in registers.
pub const MAX_HEAD_DIM: usize = 128;
/// Queries per flash workgroup (one per invocation).
pub const FLASH_WG: u32 = 64;

/// Which attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Fused, tiled, online softmax.
    Flash,
    /// Scores materialized in device memory; the baseline.
    Naive,
}

/// Options of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionOptions {
    /// Mask keys after each query's position.
    pub causal: bool,
    /// Score scale; `None` for `1/√head_dim`.
    pub scale: Option<f32>,
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

fn params(s: &AttentionShape, causal: bool, scale: f32) -> [u32; 8] {
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    [
        u(s.n_heads),
        u(s.n_kv_heads),
        u(s.head_dim),
        u(s.q_len),
        u(s.kv_len),
        u(s.kv_len),
        u32::from(causal),
        scale.to_bits(),
    ]
}

/// Attention with the flash kernel.
pub fn attention(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: AttentionOptions,
) -> Result<Tensor> {
    attention_with(gpu, q, k, v, options, Kernel::Flash)
}

/// Attention with a given kernel.
pub fn attention_with(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: AttentionOptions,
    kernel: Kernel,
) -> Result<Tensor> {
    check(q, k, v, options.causal)?;
    let out = Tensor::zeros(gpu, q.shape(), DType::F32)?;
    attention_into(gpu, q, k, v, &out, options, kernel)?;
    Ok(out)
}

/// Attention into an existing f32 tensor shaped like q.
pub fn attention_into(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    options: AttentionOptions,
    kernel: Kernel,
) -> Result<()> {
    let s = check(q, k, v, options.causal)?;
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
    let scale = options.scale.unwrap_or(1.0 / (s.head_dim as f32).sqrt());
    let params = params(&s, options.causal, scale);
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    match kernel {
        Kernel::Flash => {
            let bkv = (512 / s.head_dim.div_ceil(4)).min(32) as u32;
            let f16 = q.dtype() == DType::F16;
            gpu.launch(&Launch {
                op: OP,
                shader: &ATTENTION_FLASH,
                constants: &[
                    ("WG", f64::from(FLASH_WG)),
                    ("BKV", f64::from(bkv)),
                    ("F16", f64::from(u8::from(f16))),
                ],
                bindings: &[q.into(), k.into(), v.into(), out.into()],
                params: bytemuck::cast_slice(&params),
                workgroups: [u(s.q_len).div_ceil(FLASH_WG), u(s.n_heads), 1],
            })
        }
        Kernel::Naive => {
            if q.dtype() != DType::F32 {
                return Err(Error::Unsupported {
                    op: OP,
                    reason: "the naive baseline is f32 only".into(),
                });
            }
            let scores = Tensor::zeros(gpu, &[s.n_heads, s.q_len, s.kv_len], DType::F32)?;
            gpu.launch(&Launch {
                op: OP,
                shader: &ATTENTION_NAIVE_SCORES,
                constants: &[],
                bindings: &[q.into(), k.into(), (&scores).into()],
                params: bytemuck::cast_slice(&params),
                workgroups: [u(s.kv_len).div_ceil(64), u(s.q_len), u(s.n_heads)],
            })?;
            gpu.launch(&Launch {
                op: OP,
                shader: &ATTENTION_NAIVE_PV,
                constants: &[],
                bindings: &[(&scores).into(), v.into(), out.into()],
                params: bytemuck::cast_slice(&params),
                workgroups: [u(s.q_len).div_ceil(64), u(s.n_heads), 1],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flash_variant_validates_with_naga() {
        for d in [32usize, 64, 80, 128] {
            let bkv = (512 / d.div_ceil(4)).min(32);
            for f16 in [0.0, 1.0] {
                pertoken_shaders::validate(
                    &ATTENTION_FLASH,
                    &[
                        ("WG", f64::from(FLASH_WG)),
                        ("BKV", bkv as f64),
                        ("F16", f16),
                    ],
                )
                .unwrap();
            }
        }
        pertoken_shaders::validate(&ATTENTION_NAIVE_SCORES, &[]).unwrap();
        pertoken_shaders::validate(&ATTENTION_NAIVE_PV, &[]).unwrap();
    }
}
