//! A decoder's forward pass on the CPU, in f64: the reference the GPU decoder is checked
//! against, logits step by step. Llama's block, plus what the model's [`Arch`] adds (Gemma 3's
//! sandwich norms, embedding scale, GeGLU and sliding-window pattern, Qwen3's and Gemma's q/k
//! norms, Phi-3's partial rotary).
//!
//! The equation of one step, for tokens at positions `len .. len + t`:
//! ```text
//! x = embed[tokens]                                   (· √hidden: embed_scale)
//! for each layer l:
//!     h = rms_norm(x, attn_norm)
//!     q, k, v = h·wqᵀ (+ bq), h·wkᵀ (+ bk), h·wvᵀ (+ bv)
//!     q, k = rms_norm(each head, q_norm / k_norm)     (qk_norm)
//!     q, k = rope(q, position), rope(k, position)      (first rotary_dims, base of layer l)
//!     cache += k, v
//!     a = attention(q, cache[window of layer l], scale)·woᵀ
//!     x = x + a                                        (+ rms_norm(a, post_attn_norm): post_norms)
//!     h = rms_norm(x, ffn_norm)
//!     f = (act(h·gateᵀ) · h·upᵀ)·downᵀ                 (act: SiLU or GELU-tanh)
//!     x = x + f                                        (+ rms_norm(f, post_ffn_norm): post_norms)
//! logits = rms_norm(x_last, final_norm)·outputᵀ        (output = embed when tied; softcap)
//! ```
//! Weights are f32 values (quantized ones dequantized first, so the reference and a kernel see
//! the same numbers); every sum and every activation is f64.

mod ops;

pub use ops::{argmax, gelu_tanh_mul, rms_norm, rope, rope_frequencies, silu_mul};

use ndarray::Array2;
use pertoken_cost::{Activation, Model, RopePairing};

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
    /// Per-head RMSNorm weights of q and of k, `[head_dim]` each (`Arch::qk_norm`).
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// RMSNorm weights of the attention's and the MLP's outputs, `[hidden]` each
    /// (`Arch::post_norms`).
    pub post_norms: Option<[Vec<f32>; 2]>,
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
    /// RoPE frequencies of each layer.
    freqs: Vec<Vec<f64>>,
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
            let arch = &shape.arch;
            norm_pair(i, "q/k norm", &l.qk_norm, arch.qk_norm, d)?;
            norm_pair(i, "post-norm", &l.post_norms, arch.post_norms, h)?;
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
        shape.arch.check(shape.head_dim).map_err(DecoderError)?;
        let rot = shape.rotary_dims() as usize;
        Ok(Decoder {
            shape,
            pairing,
            weights,
            freqs: (0..shape.layers)
                .map(|l| rope_frequencies(&shape.layer_rope(l), rot))
                .collect(),
            k: vec![Vec::new(); weights.layers.len()],
            v: vec![Vec::new(); weights.layers.len()],
            len: 0,
        })
    }

    /// Divides RoPE's frequencies by per-pair `factors` (`[rotary_dims / 2]`): how llama.cpp
    /// stores Llama 3's scaling and Phi-3's LongRoPE in GGUF files (`rope_freqs.weight`,
    /// `rope_factors_long`). Replaces the shape's parametric scaling, on the layers that use
    /// the model's RoPE (not a sliding-window layer's own base).
    pub fn with_rope_factors(mut self, factors: &[f32]) -> Result<Self, DecoderError> {
        let rot = self.shape.rotary_dims() as usize;
        if factors.len() != rot / 2 {
            return Err(DecoderError(format!(
                "{} RoPE factors for {} pairs",
                factors.len(),
                rot / 2
            )));
        }
        let plain = pertoken_cost::Rope {
            scaling: None,
            ..self.shape.rope
        };
        let scaled: Vec<f64> = rope_frequencies(&plain, rot)
            .iter()
            .zip(factors)
            .map(|(f, &k)| f / f64::from(k))
            .collect();
        for (l, freqs) in self.freqs.iter_mut().enumerate() {
            if self.shape.layer_rope_is_global(l as u64) {
                freqs.clone_from(&scaled);
            }
        }
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
        let row = w
            .embed
            .rows()
            .into_iter()
            .nth(token as usize)
            .ok_or_else(|| DecoderError(format!("token {token} is past the vocabulary")))?;
        let scale = if m.arch.embed_scale {
            (m.hidden as f64).sqrt()
        } else {
            1.0
        };
        let mut x: Vec<f64> = row.iter().map(|&v| f64::from(v) * scale).collect();
        for (li, l) in w.layers.iter().enumerate() {
            let h = rms_norm(&x, &l.attn_norm, m.rms_eps);
            let attn = self.attend(li, l, &h);
            let mut a = matvec(&l.wo, &attn);
            if let Some([post, _]) = &l.post_norms {
                a = rms_norm(&a, post, m.rms_eps);
            }
            add(&mut x, &a);
            let h = rms_norm(&x, &l.ffn_norm, m.rms_eps);
            let (g, u) = (matvec(&l.gate, &h), matvec(&l.up, &h));
            let act = match m.arch.activation {
                Activation::Silu => silu_mul(&g, &u),
                Activation::GeluTanh => gelu_tanh_mul(&g, &u),
            };
            let mut f = matvec(&l.down, &act);
            if let Some([_, post]) = &l.post_norms {
                f = rms_norm(&f, post, m.rms_eps);
            }
            add(&mut x, &f);
        }
        self.len += 1;
        let h = rms_norm(&x, &w.final_norm, m.rms_eps);
        let mut logits = matvec(w.output.as_ref().unwrap_or(&w.embed), &h);
        if let Some(c) = m.arch.logit_softcap {
            for v in &mut logits {
                *v = c * (*v / c).tanh();
            }
        }
        Ok(logits)
    }

    /// Layer `li`'s attention of the token at position `len` over its cache (the token's own
    /// keys and values appended first), from the normed residual `h`: `[heads · head_dim]`.
    fn attend(&mut self, li: usize, l: &Layer, h: &[f64]) -> Vec<f64> {
        let m = self.shape;
        let (d, heads, kv_heads) = (m.head_dim as usize, m.heads as usize, m.kv_heads as usize);
        let rot = m.rotary_dims() as usize;
        let pos = self.len;
        let (mut q, mut k, v) = {
            let (mut q, mut k, mut v) = (matvec(&l.wq, h), matvec(&l.wk, h), matvec(&l.wv, h));
            if let Some([bq, bk, bv]) = &l.qkv_bias {
                add_bias(&mut q, bq);
                add_bias(&mut k, bk);
                add_bias(&mut v, bv);
            }
            (q, k, v)
        };
        if let Some([nq, nk]) = &l.qk_norm {
            for (x, norm) in [(&mut q, nq), (&mut k, nk)] {
                let normed: Vec<f64> = x
                    .chunks(d)
                    .flat_map(|head| rms_norm(head, norm, m.rms_eps))
                    .collect();
                *x = normed;
            }
        }
        let factor = m.arch.rope_attn_factor.unwrap_or(1.0);
        for head in q.chunks_mut(d).chain(k.chunks_mut(d)) {
            rope(&mut head[..rot], pos, &self.freqs[li], self.pairing);
            head[..rot].iter_mut().for_each(|x| *x *= factor);
        }
        self.k[li].extend_from_slice(&k);
        self.v[li].extend_from_slice(&v);
        // Keys pos + 1 − window ..= pos, or all of them.
        let first = m
            .layer_window(li as u64)
            .map_or(0, |w| (pos + 1).saturating_sub(w as usize));
        let scale = m.query_scale();
        let mut attn = vec![0.0; heads * d];
        for hq in 0..heads {
            let kvh = hq / (heads / kv_heads);
            let qh = &q[hq * d..(hq + 1) * d];
            let at = |j: usize| (j * kv_heads + kvh) * d;
            let scores: Vec<f64> = (first..=pos)
                .map(|j| {
                    let kj = &self.k[li][at(j)..at(j) + d];
                    qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let out = &mut attn[hq * d..(hq + 1) * d];
            for (j, p) in (first..=pos).zip(&e) {
                let vj = &self.v[li][at(j)..at(j) + d];
                for (o, &vv) in out.iter_mut().zip(vj) {
                    *o += p / sum * vv;
                }
            }
        }
        attn
    }
}

/// Checks layer `i`'s pair of `what` weights: present, `len` long each, exactly where the
/// architecture `needs` them.
fn norm_pair(
    i: usize,
    what: &str,
    pair: &Option<[Vec<f32>; 2]>,
    needs: bool,
    len: usize,
) -> Result<(), DecoderError> {
    match (pair, needs) {
        (Some([a, b]), true) if a.len() != len || b.len() != len => Err(DecoderError(format!(
            "layer {i} {what} weights are [{}] and [{}], the shape needs [{len}]",
            a.len(),
            b.len()
        ))),
        (Some(_), true) | (None, false) => Ok(()),
        (had, _) => Err(DecoderError(format!(
            "layer {i}: {what} weights {} but the architecture {} them",
            if had.is_some() { "given" } else { "missing" },
            if needs { "needs" } else { "has no use for" }
        ))),
    }
}

fn add(x: &mut [f64], y: &[f64]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}
