//! The forward passes: one sequence's `t` tokens (a prompt chunk, or a single sequence's step),
//! and a batched step of every sequence.

use pertoken_attention::AttentionOptions;
use pertoken_gpu::Tensor;
use pertoken_matmul::{
    GemvFusion, Kernel, check_linear, linear_fused_into, linear_into, linear_swiglu_into,
    select_linear,
};

use super::Decoder;
use super::buffers::rows;
use super::layer::{GpuLayer, Proj};
use crate::ops::{self, Activation, Columns, HeadRope};
use crate::{ModelSpec, Result};

/// The step's views of the activations, `rows` rows each.
pub(super) struct Views {
    pub(super) x: Tensor,
    pub(super) xn: Tensor,
    pub(super) delta: Tensor,
    pub(super) qkv: Vec<Tensor>,
    pub(super) gate_up: Vec<Tensor>,
    pub(super) act: Tensor,
}

impl Decoder {
    pub(super) fn views(&self, n: usize) -> Result<Views> {
        let a = &self.act;
        let all = |v: &[Tensor]| v.iter().map(|b| rows(b, n)).collect::<Result<Vec<_>, _>>();
        Ok(Views {
            x: rows(&a.x, n)?,
            xn: rows(&a.xn, n)?,
            delta: rows(&a.delta, n)?,
            qkv: all(&a.qkv)?,
            gate_up: all(&a.gate_up)?,
            act: rows(&a.act, n)?,
        })
    }

    fn linear(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Result<()> {
        let kernel = self.linear_kernel(x, w, bias)?;
        Ok(linear_into(&self.gpu, x, w, bias, out, kernel)?)
    }

    /// The kernel [`Decoder::tune`] chose for `x · wᵀ`, else the shape heuristic's.
    fn linear_kernel(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Kernel> {
        let p = check_linear(x, w, bias)?;
        Ok(self
            .kernel_for((p.shape.n, p.shape.k, w.dtype(), p.shape.m))
            .unwrap_or_else(|| select_linear(self.gpu.capabilities(), &p)))
    }

    /// `x · wᵀ (+ bias)` through the GEMV kernel with `fusion` (the caller checked that the
    /// kernel is a GEMV: [`Decoder::fuses_norms`]).
    fn linear_fused(
        &self,
        x: &Tensor,
        (w, bias): (&Tensor, Option<&Tensor>),
        out: &Tensor,
        fusion: GemvFusion<'_>,
    ) -> Result<()> {
        let kernel = self.linear_kernel(x, w, bias)?;
        Ok(linear_fused_into(
            &self.gpu, x, w, bias, out, kernel, fusion,
        )?)
    }

    /// Whether every linear of a step over `v`'s rows runs the GEMV kernel, so that the norms
    /// fuse into the linears after them and the residual adds into the linears before them
    /// (decode steps, unless [`Decoder::set_fuse_norm`] turned it off; not with post-norms,
    /// whose residual adds need the whole output first).
    pub(super) fn fuses_norms(&self, v: &Views, attn_tokens: &Tensor) -> Result<bool> {
        if !self.fuse_norm || self.spec.shape.arch.post_norms {
            return Ok(false);
        }
        let gemv = |x: &Tensor, w: &Tensor, b: Option<&Tensor>| -> Result<bool> {
            Ok(matches!(self.linear_kernel(x, w, b)?, Kernel::Gemv(_)))
        };
        let head = self.output.as_ref().unwrap_or(&self.embed);
        if !gemv(&v.x, head, None)? {
            return Ok(false);
        }
        for layer in &self.layers {
            for (w, b) in layer.qkv.parts().chain(layer.gate_up.parts()) {
                if !gemv(&v.xn, w, b)? {
                    return Ok(false);
                }
            }
            if !gemv(attn_tokens, &layer.o, None)? || !gemv(&v.act, &layer.down, None)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `proj` of RMSNorm(`x`) with `norm`'s weight into `outs`, the norm fused into each GEMV.
    fn project_normed(
        &self,
        x: &Tensor,
        norm: &Tensor,
        proj: &Proj,
        outs: &[Tensor],
    ) -> Result<()> {
        let fusion = GemvFusion {
            norm: Some((norm, self.spec.shape.rms_eps as f32)),
            accumulate: false,
        };
        for (part, out) in proj.parts().zip(outs) {
            self.linear_fused(x, part, out, fusion)?;
        }
        Ok(())
    }

    /// The rest of layer `l` with the norms and residual adds fused into the GEMVs: the output
    /// linear adds into the residual stream `v.x`, the MLP's projections norm it as they read
    /// it, and the down projection adds into it.
    pub(super) fn finish_layer_fused(
        &self,
        l: usize,
        v: &Views,
        attn_tokens: &Tensor,
    ) -> Result<()> {
        let layer = &self.layers[l];
        let add = GemvFusion {
            norm: None,
            accumulate: true,
        };
        self.linear_fused(attn_tokens, (&layer.o, None), &v.x, add)?;
        self.project_normed(&v.x, &layer.ffn_norm, &layer.gate_up, &v.gate_up)?;
        self.gate_and_down(v, &layer.down, &v.x, true)
    }

    /// The gate (SwiGLU's or GeGLU's) and the down projection into `out` (added into it with
    /// `accumulate`): one GEMV that computes SwiGLU's gate as it loads (decode rows, the
    /// gate/up projection fused into one tensor), else the gate pass, then the linear.
    fn gate_and_down(
        &self,
        v: &Views,
        down: &Tensor,
        out: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        let ffn = self.spec.shape.ffn as usize;
        let act = self.spec.shape.arch.activation;
        if let ([gate_up], true, Activation::Silu) = (&v.gate_up[..], self.fuse_gate, act) {
            let kernel = self.linear_kernel(&v.act, down, None)?;
            if matches!(kernel, Kernel::Gemv(_)) {
                return Ok(linear_swiglu_into(
                    &self.gpu, gate_up, down, out, kernel, accumulate,
                )?);
            }
        }
        let (g, u) = if v.gate_up.len() == 1 {
            (
                Columns {
                    tensor: &v.gate_up[0],
                    col: 0,
                },
                Columns {
                    tensor: &v.gate_up[0],
                    col: ffn,
                },
            )
        } else {
            (
                Columns {
                    tensor: &v.gate_up[0],
                    col: 0,
                },
                Columns {
                    tensor: &v.gate_up[1],
                    col: 0,
                },
            )
        };
        ops::act_mul(&self.gpu, act, g, u, &v.act)?;
        if accumulate {
            let add = GemvFusion {
                norm: None,
                accumulate: true,
            };
            return self.linear_fused(&v.act, (down, None), out, add);
        }
        self.linear(&v.act, down, None, out)
    }

    /// Layer `l`'s q/k/v projection of the residual stream: of its norm `v.xn`, or (`fused`)
    /// of `v.x` with the norm fused into the GEMVs.
    pub(super) fn qkv(&self, l: usize, v: &Views, fused: bool) -> Result<()> {
        let layer = &self.layers[l];
        if fused {
            self.project_normed(&v.x, &layer.attn_norm, &layer.qkv, &v.qkv)
        } else {
            self.project(&v.xn, &layer.qkv, &v.qkv)
        }
    }

    /// Runs `proj` on `x` into `outs`.
    fn project(&self, x: &Tensor, proj: &Proj, outs: &[Tensor]) -> Result<()> {
        for ((w, b), out) in proj.parts().zip(outs) {
            self.linear(x, w, b, out)?;
        }
        Ok(())
    }

    /// q, k and v as column windows of the projections' outputs.
    pub(super) fn qkv_columns<'a>(&self, qkv: &'a [Tensor]) -> [Columns<'a>; 3] {
        let (q_w, kv_w) = (self.spec.q_width(), self.spec.kv_width());
        if qkv.len() == 1 {
            [0, q_w, q_w + kv_w].map(|col| Columns {
                tensor: &qkv[0],
                col,
            })
        } else {
            [0, 1, 2].map(|i| Columns {
                tensor: &qkv[i],
                col: 0,
            })
        }
    }

    /// The rest of layer `l` once attention's output is in `attn_tokens`: the output linear, the
    /// residual add fused into the MLP's norm, the MLP, and its residual add fused into the next
    /// layer's norm (or, after the last layer, the final norm of the rows `last` names).
    pub(super) fn finish_layer(
        &self,
        l: usize,
        v: &Views,
        attn_tokens: &Tensor,
        last: Option<(usize, usize)>,
    ) -> Result<()> {
        let gpu = &self.gpu;
        let eps = self.spec.shape.rms_eps as f32;
        let layer = &self.layers[l];
        let (post_attn, post_ffn) = match &layer.post_norms {
            Some((a, f)) => (Some(a), Some(f)),
            None => (None, None),
        };
        // x += delta (normed first with post-norms), then out = rms_norm(x)·w.
        let add_norm = |post: Option<&Tensor>, w: &Tensor, out: &Tensor, row0: usize| match post {
            Some(p) => ops::rms_norm_post(gpu, &v.x, (&v.delta, p), w, out, row0, eps),
            None => ops::rms_norm(gpu, &v.x, Some(&v.delta), w, out, row0, eps),
        };
        self.linear(attn_tokens, &layer.o, None, &v.delta)?;
        add_norm(post_attn, &layer.ffn_norm, &v.xn, 0)?;
        self.project(&v.xn, &layer.gate_up, &v.gate_up)?;
        self.gate_and_down(v, &layer.down, &v.delta, false)?;
        if l + 1 < self.layers.len() {
            add_norm(post_ffn, &self.layers[l + 1].attn_norm, &v.xn, 0)?;
        } else if let Some((row0, n)) = last {
            // Only the last positions' logits are needed: add and norm those rows alone.
            let out = rows(&self.act.last, n)?;
            add_norm(post_ffn, &self.final_norm, &out, row0)?;
        }
        Ok(())
    }

    /// Layer `l`'s attention: causal, within its window, at the model's query scale.
    pub(super) fn attention_options(&self, l: usize) -> AttentionOptions {
        let m = &self.spec.shape;
        AttentionOptions {
            causal: true,
            scale: m.arch.query_scale.map(|s| s as f32),
            window: m.layer_window(l as u64).map(|w| w as u32),
        }
    }

    /// The token embedding of `n` tokens from `slot` into rows `row0..` of `x` (scaled by
    /// √hidden where the architecture says).
    fn embed(&self, x: &Tensor, (slot, n): (usize, usize), row0: usize) -> Result<()> {
        Ok(ops::embed_scaled(
            &self.gpu,
            &self.embed,
            &self.tokens,
            (slot, n),
            (x, row0),
            self.embed_scale(),
        )?)
    }

    /// √hidden where the architecture scales the embedding, else 1.
    pub(super) fn embed_scale(&self) -> f32 {
        let m = &self.spec.shape;
        if m.arch.embed_scale {
            (m.hidden as f64).sqrt() as f32
        } else {
            1.0
        }
    }

    /// The logits of the `n` rows of `act.last` (with `fused`, of the final norm of the
    /// residual stream's `n` rows, fused into the head's GEMV), soft-capped where the model
    /// says: `act.logits`' first `n` rows.
    pub(super) fn head(&self, n: usize, fused: bool) -> Result<Tensor> {
        let head = self.output.as_ref().unwrap_or(&self.embed);
        let logits = rows(&self.act.logits, n)?;
        if fused {
            let norm = GemvFusion {
                norm: Some((&self.final_norm, self.spec.shape.rms_eps as f32)),
                accumulate: false,
            };
            self.linear_fused(&rows(&self.act.x, n)?, (head, None), &logits, norm)?;
        } else {
            self.linear(&rows(&self.act.last, n)?, head, None, &logits)?;
        }
        if let Some(cap) = self.spec.shape.arch.logit_softcap {
            ops::softcap(&self.gpu, &logits, cap as f32)?;
        }
        Ok(logits)
    }

    /// The head and argmax of the `n` rows of `act.last` (see [`Decoder::head`]): row i's next
    /// token goes to `slot(i)`.
    fn sample(&mut self, n: usize, fused: bool, slot: impl Fn(usize) -> usize) -> Result<()> {
        let logits = self.head(n, fused)?;
        for i in 0..n {
            ops::argmax_into(&self.gpu, &logits, i, &self.tokens, slot(i))?;
        }
        Ok(())
    }

    /// The forward pass of sequence `b`'s `t` tokens at its positions `pos .. pos + t`; with
    /// `sample`, the last one's logits, and argmax writes its next token.
    pub(super) fn forward(&mut self, b: usize, t: usize, sample: bool) -> Result<()> {
        let gpu = self.gpu.clone();
        let m = &self.spec.shape;
        let (heads, d, eps) = (m.heads as usize, m.head_dim as usize, m.rms_eps as f32);
        let q_w = self.spec.q_width();
        let v = self.views(t)?;
        let q = self.act.q.view(&[heads, t, d])?;
        let attn = self.act.attn.view(&[heads, t, d])?;
        // One token: [heads, 1, d] is already [1, heads·d].
        let attn_tokens = if t == 1 {
            self.act.attn.view(&[1, q_w])?
        } else {
            rows(&self.act.attn_tokens, t)?
        };
        let pos = self.pos[b];
        let fused = t == 1 && self.fuses_norms(&v, &attn_tokens)?;
        self.embed(&v.x, (self.slot(b, pos), t), 0)?;
        if !fused {
            ops::rms_norm(&gpu, &v.x, None, &self.layers[0].attn_norm, &v.xn, 0, eps)?;
        }
        for l in 0..self.layers.len() {
            self.qkv(l, &v, fused)?;
            let cols = self.qkv_columns(&v.qkv);
            let options = self.attention_options(l);
            let rope = head_rope(&self.spec, &self.freqs[l], &self.layers[l]);
            let cache = &mut self.caches[b][l];
            ops::rope_append(&gpu, cols, (0, t), &rope, &q, cache)?;
            cache.attention_into(&gpu, &q, &attn, options)?;
            if t > 1 {
                ops::heads_to_tokens(&gpu, &attn, &attn_tokens, 0)?;
            }
            if fused {
                self.finish_layer_fused(l, &v, &attn_tokens)?;
            } else {
                self.finish_layer(l, &v, &attn_tokens, sample.then_some((t - 1, 1)))?;
            }
        }
        if sample {
            let next = self.slot(b, pos + t);
            self.sample(1, fused, |_| next)?;
            self.logits_row[b] = Some(0);
        }
        self.pos[b] += t;
        Ok(())
    }

    /// One step of every sequence: row i of the activations is sequence i's token; the linears
    /// take them all at once, RoPE, the KV append and attention run per sequence.
    pub(super) fn forward_batch(&mut self) -> Result<()> {
        let gpu = self.gpu.clone();
        let n = self.options.batch;
        let eps = self.spec.shape.rms_eps as f32;
        let v = self.views(n)?;
        let attn_tokens = rows(&self.act.attn_tokens, n)?;
        let fused = self.fuses_norms(&v, &attn_tokens)?;
        for b in 0..n {
            self.embed(&v.x, (self.slot(b, self.pos[b]), 1), b)?;
        }
        if !fused {
            ops::rms_norm(&gpu, &v.x, None, &self.layers[0].attn_norm, &v.xn, 0, eps)?;
        }
        for l in 0..self.layers.len() {
            self.qkv(l, &v, fused)?;
            let cols = self.qkv_columns(&v.qkv);
            let options = self.attention_options(l);
            let rope = head_rope(&self.spec, &self.freqs[l], &self.layers[l]);
            for b in 0..n {
                let (q, attn) = &self.act.q_seq[b];
                let cache = &mut self.caches[b][l];
                ops::rope_append(&gpu, cols, (b, 1), &rope, q, cache)?;
                cache.attention_into(&gpu, q, attn, options)?;
                ops::heads_to_tokens(&gpu, attn, &attn_tokens, b)?;
            }
            if fused {
                self.finish_layer_fused(l, &v, &attn_tokens)?;
            } else {
                self.finish_layer(l, &v, &attn_tokens, Some((0, n)))?;
            }
        }
        let slots: Vec<usize> = (0..n).map(|b| self.slot(b, self.pos[b] + 1)).collect();
        self.sample(n, fused, |i| slots[i])?;
        for b in 0..n {
            self.logits_row[b] = Some(b);
            self.pos[b] += 1;
        }
        Ok(())
    }
}

/// How a layer turns its q and k heads (with its q/k norms, where it has them).
pub(super) fn head_rope<'a>(
    spec: &ModelSpec,
    freq: &'a Tensor,
    layer: &'a GpuLayer,
) -> HeadRope<'a> {
    HeadRope {
        freq,
        pairing: spec.pairing,
        qk_norm: layer
            .qk_norm
            .as_ref()
            .map(|(q, k)| (q, k, spec.shape.rms_eps as f32)),
        factor: spec.shape.arch.rope_attn_factor.unwrap_or(1.0) as f32,
    }
}
