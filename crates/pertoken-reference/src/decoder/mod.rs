//! A Llama-family decoder's forward pass on the CPU, in f64: the reference the GPU decoder is
//! checked against, logits step by step.
//!
//! The equation of one step, for tokens at positions `len .. len + t`:
//! ```text
//! x = embed[tokens]
//! for each layer:
//!     h = rms_norm(x, attn_norm)
//!     q, k, v = h·wqᵀ (+ bq), h·wkᵀ (+ bk), h·wvᵀ (+ bv)
//!     q, k = rope(q, position), rope(k, position);  cache += k, v
//!     x = x + attention(q, cache, causal)·woᵀ
//!     h = rms_norm(x, ffn_norm)
//!     x = x + (silu(h·gateᵀ) · h·upᵀ)·downᵀ
//! logits = rms_norm(x_last, final_norm)·outputᵀ   (output = embed when tied)
//! ```
//! Weights are f32 values (quantized ones dequantized first, so the reference and a kernel see
//! the same numbers); every sum and every activation is f64.

mod ops;

pub use ops::{argmax, gelu_tanh_mul, rms_norm, rope, rope_frequencies, silu_mul};

use ndarray::Array2;
use pertoken_cost::{Model, RopePairing};

/// One transformer block's weights, PyTorch layout (`[out_features, in_features]`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// RMSNorm weight before attention, `[hidden]`.
    pub attn_norm: Vec<f32>,
    /// Query projection `[heads·head_dim, hidden]`.
    pub wq: Array2<f32>,
    /// Key projection `[kv_heads·head_dim, hidden]`.
    pub wk: Array2<f32>,
    /// Value projection `[kv_heads·head_dim, hidden]`.
    pub wv: Array2<f32>,
    /// q, k and v biases (Qwen2), or none.
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    /// Output projection `[hidden, heads·head_dim]`.
    pub wo: Array2<f32>,
    /// RMSNorm weight before the MLP, `[hidden]`.
    pub ffn_norm: Vec<f32>,
    /// Gate projection `[ffn, hidden]`.
    pub gate: Array2<f32>,
    /// Up projection `[ffn, hidden]`.
    pub up: Array2<f32>,
    /// Down projection `[hidden, ffn]`.
    pub down: Array2<f32>,
}

/// A whole decoder's weights.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embedding `[vocab, hidden]`.
    pub embed: Array2<f32>,
    /// The blocks.
    pub layers: Vec<Layer>,
    /// Final RMSNorm weight, `[hidden]`.
    pub final_norm: Vec<f32>,
    /// Output head `[vocab, hidden]`, or `None` when tied to the embedding.
    pub output: Option<Array2<f32>>,
}

/// Why the reference refused a model or an input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("reference decoder: {0}")]
pub struct DecoderError(String);

/// A decoder with its KV cache: feed it tokens, get the last one's logits.
#[derive(Debug)]
pub struct Decoder<'a> {
    shape: &'a Model,
    pairing: RopePairing,
    weights: &'a Weights,
    freqs: Vec<f64>,
    /// Per layer: keys and values, `[position][kv_head · head_dim]`, flattened.
    k: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    len: usize,
}

fn matvec(w: &Array2<f32>, x: &[f64]) -> Vec<f64> {
    w.rows()
        .into_iter()
        .map(|row| row.iter().zip(x).map(|(&w, &x)| f64::from(w) * x).sum())
        .collect()
}

fn add_bias(y: &mut [f64], b: &[f32]) {
    for (y, &b) in y.iter_mut().zip(b) {
        *y += f64::from(b);
    }
}

impl<'a> Decoder<'a> {
    /// A decoder over `weights` of `shape`, empty.
    pub fn new(
        shape: &'a Model,
        pairing: RopePairing,
        weights: &'a Weights,
    ) -> Result<Decoder<'a>, DecoderError> {
        let (h, d) = (shape.hidden as usize, shape.head_dim as usize);
        let (q, kv, f, v) = (
            shape.heads as usize * d,
            shape.kv_heads as usize * d,
            shape.ffn as usize,
            shape.vocab as usize,
        );
        let bad = |what: &str, got: &[usize], want: &[usize]| {
            Err(DecoderError(format!(
                "{what} is {got:?}, the shape needs {want:?}"
            )))
        };
        if weights.embed.shape() != [v, h] {
            return bad("embed", weights.embed.shape(), &[v, h]);
        }
        if weights.layers.len() != shape.layers as usize {
            return bad("layers", &[weights.layers.len()], &[shape.layers as usize]);
        }
        if let Some(o) = &weights.output
            && o.shape() != [v, h]
        {
            return bad("output", o.shape(), &[v, h]);
        }
        for (i, l) in weights.layers.iter().enumerate() {
            for (name, w, want) in [
                ("wq", &l.wq, [q, h]),
                ("wk", &l.wk, [kv, h]),
                ("wv", &l.wv, [kv, h]),
                ("wo", &l.wo, [h, q]),
                ("gate", &l.gate, [f, h]),
                ("up", &l.up, [f, h]),
                ("down", &l.down, [h, f]),
            ] {
                if w.shape() != want {
                    return bad(&format!("layer {i} {name}"), w.shape(), &want);
                }
            }
            if l.attn_norm.len() != h || l.ffn_norm.len() != h {
                return bad(&format!("layer {i} norms"), &[l.attn_norm.len()], &[h]);
            }
            if let Some([bq, bk, bv]) = &l.qkv_bias
                && (bq.len() != q || bk.len() != kv || bv.len() != kv)
            {
                return bad(
                    &format!("layer {i} biases"),
                    &[bq.len(), bk.len()],
                    &[q, kv],
                );
            }
        }
        if shape.kv_heads == 0 || !shape.heads.is_multiple_of(shape.kv_heads) || d % 2 != 0 {
            return Err(DecoderError(
                "heads must be a multiple of kv_heads, and head_dim even".into(),
            ));
        }
        Ok(Decoder {
            shape,
            pairing,
            weights,
            freqs: rope_frequencies(&shape.rope, d),
            k: vec![Vec::new(); weights.layers.len()],
            v: vec![Vec::new(); weights.layers.len()],
            len: 0,
        })
    }

    /// Divides RoPE's frequencies by per-pair `factors` (`[head_dim / 2]`): how llama.cpp
    /// stores Llama 3's scaling in GGUF files (`rope_freqs.weight`). Replaces the shape's
    /// parametric scaling.
    pub fn with_rope_factors(mut self, factors: &[f32]) -> Result<Self, DecoderError> {
        if factors.len() != self.freqs.len() {
            return Err(DecoderError(format!(
                "{} RoPE factors for {} pairs",
                factors.len(),
                self.freqs.len()
            )));
        }
        let plain = pertoken_cost::Rope {
            scaling: None,
            ..self.shape.rope
        };
        self.freqs = rope_frequencies(&plain, self.shape.head_dim as usize)
            .iter()
            .zip(factors)
            .map(|(f, &k)| f / f64::from(k))
            .collect();
        Ok(self)
    }

    /// Positions in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `tokens` (at positions `len ..`), appends them to the cache, and returns the last
    /// token's logits.
    pub fn step(&mut self, tokens: &[u32]) -> Result<Vec<f64>, DecoderError> {
        let mut last = None;
        for &t in tokens {
            last = Some(self.one(t)?);
        }
        last.ok_or_else(|| DecoderError("no tokens".into()))
    }

    /// One token through every layer: appends its keys and values, returns its logits.
    fn one(&mut self, token: u32) -> Result<Vec<f64>, DecoderError> {
        let m = self.shape;
        let w = self.weights;
        let (d, heads, kv_heads) = (m.head_dim as usize, m.heads as usize, m.kv_heads as usize);
        let row = w
            .embed
            .rows()
            .into_iter()
            .nth(token as usize)
            .ok_or_else(|| DecoderError(format!("token {token} is past the vocabulary")))?;
        let mut x: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let pos = self.len;
        for (li, l) in w.layers.iter().enumerate() {
            let h = rms_norm(&x, &l.attn_norm, m.rms_eps);
            let (mut q, mut k, mut v) = (matvec(&l.wq, &h), matvec(&l.wk, &h), matvec(&l.wv, &h));
            if let Some([bq, bk, bv]) = &l.qkv_bias {
                add_bias(&mut q, bq);
                add_bias(&mut k, bk);
                add_bias(&mut v, bv);
            }
            for head in q.chunks_mut(d).chain(k.chunks_mut(d)) {
                rope(head, pos, &self.freqs, self.pairing);
            }
            self.k[li].extend_from_slice(&k);
            self.v[li].extend_from_slice(&v);
            let keys = pos + 1;
            let mut attn = vec![0.0; heads * d];
            let scale = 1.0 / (d as f64).sqrt();
            for hq in 0..heads {
                let kvh = hq / (heads / kv_heads);
                let qh = &q[hq * d..(hq + 1) * d];
                let at = |j: usize| (j * kv_heads + kvh) * d;
                let scores: Vec<f64> = (0..keys)
                    .map(|j| {
                        let kj = &self.k[li][at(j)..at(j) + d];
                        qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let out = &mut attn[hq * d..(hq + 1) * d];
                for (j, p) in e.iter().enumerate() {
                    let vj = &self.v[li][at(j)..at(j) + d];
                    for (o, &vv) in out.iter_mut().zip(vj) {
                        *o += p / sum * vv;
                    }
                }
            }
            for (x, o) in x.iter_mut().zip(matvec(&l.wo, &attn)) {
                *x += o;
            }
            let h = rms_norm(&x, &l.ffn_norm, m.rms_eps);
            let act = silu_mul(&matvec(&l.gate, &h), &matvec(&l.up, &h));
            for (x, o) in x.iter_mut().zip(matvec(&l.down, &act)) {
                *x += o;
            }
        }
        self.len += 1;
        let h = rms_norm(&x, &w.final_norm, m.rms_eps);
        Ok(matvec(w.output.as_ref().unwrap_or(&w.embed), &h))
    }
}
