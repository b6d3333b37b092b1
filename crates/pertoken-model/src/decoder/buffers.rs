//! Activations, made once at load for the longest forward pass (`max_tokens` rows, or `batch`
//! for a batched step) and viewed at each step's row count: a step allocates nothing.

use pertoken_gpu::{DType, Gpu, Result, Tensor};

use super::layer::Proj;
use crate::{DecoderOptions, ModelSpec};

#[derive(Debug)]
pub(crate) struct Activations {
    /// The residual stream `[T, hidden]`.
    pub x: Tensor,
    /// A norm's output `[T, hidden]`.
    pub xn: Tensor,
    /// The q/k/v projections: one fused `[T, q + 2kv]`, or three.
    pub qkv: Vec<Tensor>,
    /// q heads-first `[heads, T, head_dim]`.
    pub q: Tensor,
    /// Attention's output, heads-first `[heads, T, head_dim]`.
    pub attn: Tensor,
    /// Attention's output, tokens-first `[T, heads·head_dim]` (prefill only).
    pub attn_tokens: Tensor,
    /// A layer's output before the residual add `[T, hidden]`.
    pub delta: Tensor,
    /// The gate and up projections: one fused `[T, 2·ffn]`, or two.
    pub gate_up: Vec<Tensor>,
    /// silu(gate)·up `[T, ffn]`.
    pub act: Tensor,
    /// Per sequence of a batched step: q and attention's output, `[heads, 1, head_dim]` each.
    pub q_seq: Vec<(Tensor, Tensor)>,
    /// The last position's final norm, one row per sequence `[batch, hidden]`.
    pub last: Tensor,
    /// The last position's logits, one row per sequence `[batch, vocab]`.
    pub logits: Tensor,
}

fn widths(p: &Proj, split: &[usize]) -> Vec<usize> {
    match p {
        Proj::Fused { .. } => vec![split.iter().sum()],
        Proj::Split(_) => split.to_vec(),
    }
}

impl Activations {
    pub(crate) fn new(
        gpu: &Gpu,
        spec: &ModelSpec,
        options: DecoderOptions,
        qkv: &Proj,
        gate_up: &Proj,
    ) -> Result<Activations> {
        let m = &spec.shape;
        let (h, f, v) = (m.hidden as usize, m.ffn as usize, m.vocab as usize);
        let (heads, d) = (m.heads as usize, m.head_dim as usize);
        let (q, kv) = (spec.q_width(), spec.kv_width());
        let t = options.max_tokens.max(options.batch);
        let b = options.batch;
        let z = |shape: &[usize]| Tensor::zeros(gpu, shape, DType::F32);
        Ok(Activations {
            x: z(&[t, h])?,
            xn: z(&[t, h])?,
            qkv: widths(qkv, &[q, kv, kv])
                .into_iter()
                .map(|w| z(&[t, w]))
                .collect::<Result<_>>()?,
            q: z(&[heads, t, d])?,
            attn: z(&[heads, t, d])?,
            attn_tokens: z(&[t, q])?,
            delta: z(&[t, h])?,
            gate_up: widths(gate_up, &[f, f])
                .into_iter()
                .map(|w| z(&[t, w]))
                .collect::<Result<_>>()?,
            act: z(&[t, f])?,
            q_seq: if b > 1 {
                (0..b)
                    .map(|_| Ok((z(&[heads, 1, d])?, z(&[heads, 1, d])?)))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            },
            last: z(&[b, h])?,
            logits: z(&[b, v])?,
        })
    }
}

/// The first `rows` rows of a `[T, w]` buffer as `[rows, w]`.
pub(crate) fn rows(t: &Tensor, rows: usize) -> Result<Tensor> {
    let w = t.shape()[t.shape().len() - 1];
    t.view(&[rows, w])
}
