//! The decoder on the GPU: weights uploaded once, one [`KvCache`] per layer, activations made
//! once, and a forward pass that reads as the model's equation (see
//! [`pertoken_reference::decoder`] for the same pass on the CPU).
//!
//! A forward pass of `t` tokens records every layer's dispatches into the pending encoder and
//! ends with argmax on the GPU, writing the next token into the token buffer that the next
//! step's embedding gather reads: a step is one submission, and steps need no host round trip.

mod buffers;
mod layer;
mod memory;

pub use memory::{MemoryPlan, plan_memory};

use pertoken_attention::{AttentionOptions, KvCache};
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_matmul::{check_linear, linear_into, select_linear};

use crate::ops::{self, Columns};
use crate::weights::{Role, WeightSource};
use crate::{ModelError, ModelSpec, Result};
use buffers::{Activations, rows};
use layer::{GpuLayer, Proj, fetch, load_layer, upload, upload_vector};

/// How much a decoder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Positions the KV cache holds (prompt plus generated tokens).
    pub context: usize,
    /// Most tokens one forward pass takes; longer prompts run in chunks of this many.
    pub max_tokens: usize,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            context: 1024,
            max_tokens: 256,
        }
    }
}

/// A Llama-family decoder running on one [`Gpu`].
#[derive(Debug)]
pub struct Decoder {
    gpu: Gpu,
    spec: ModelSpec,
    embed: Tensor,
    output: Option<Tensor>,
    final_norm: Tensor,
    layers: Vec<GpuLayer>,
    caches: Vec<KvCache>,
    freq: Tensor,
    act: Activations,
    /// Every token of the sequence, `[context + 1]`: the prompt, then each argmax.
    tokens: Tensor,
    options: DecoderOptions,
    /// Positions run so far (the caches' length).
    pos: usize,
    weight_bytes: u64,
}

impl Decoder {
    /// Uploads `source`'s weights to `gpu` and makes the caches and activations, after checking
    /// that everything fits the adapter.
    pub fn load(gpu: &Gpu, source: &dyn WeightSource, options: DecoderOptions) -> Result<Decoder> {
        let spec = source.spec().clone();
        spec.check()?;
        if options.context == 0 || options.max_tokens == 0 {
            return Err(ModelError::Invalid {
                op: "Decoder::load",
                reason: "context and max_tokens must be at least 1".into(),
            });
        }
        let plan = plan_memory(gpu, source, options)?;
        plan.check(gpu, &spec.shape.name)?;
        let m = &spec.shape;
        let embed = upload(gpu, &fetch(source, Role::Embed)?)?;
        let output = match source.tensor(Role::Output)? {
            None if m.tied_embeddings => None,
            None => {
                return Err(ModelError::Invalid {
                    op: "Decoder::load",
                    reason: format!(
                        "{} has no output head and does not tie it to the embedding",
                        source.describe()
                    ),
                });
            }
            Some(_) => Some(upload(gpu, &fetch(source, Role::Output)?)?),
        };
        let final_norm = upload_vector(gpu, &fetch(source, Role::FinalNorm)?)?;
        let mut layers = Vec::with_capacity(m.layers as usize);
        let mut caches = Vec::with_capacity(m.layers as usize);
        for l in 0..m.layers as usize {
            layers.push(load_layer(gpu, source, l)?);
            caches.push(KvCache::new(
                gpu,
                m.kv_heads as usize,
                options.context,
                m.head_dim as usize,
                DType::F32,
            )?);
        }
        let freq = Tensor::from_slice(gpu, &spec.rope_frequencies(), &[m.head_dim as usize / 2])?;
        let act = Activations::new(
            gpu,
            &spec,
            options.max_tokens,
            &layers[0].qkv,
            &layers[0].gate_up,
        )?;
        let tokens = Tensor::zeros(gpu, &[options.context + 1], DType::U32)?;
        Ok(Decoder {
            gpu: gpu.clone(),
            weight_bytes: plan.weights,
            spec,
            embed,
            output,
            final_norm,
            layers,
            caches,
            freq,
            act,
            tokens,
            options,
            pos: 0,
        })
    }

    /// The model.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Bytes of weights on the GPU.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Positions run so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The options it was loaded with.
    pub fn options(&self) -> DecoderOptions {
        self.options
    }

    /// Forgets the sequence: the next prefill starts at position 0.
    pub fn reset(&mut self) -> Result<()> {
        for c in &mut self.caches {
            c.truncate(0)?;
        }
        self.pos = 0;
        Ok(())
    }

    /// Runs `prompt` from the current position, in chunks of at most `max_tokens`, and leaves
    /// the greedy next token in the token buffer. Records; a download or [`Gpu::sync`] submits.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        let vocab = self.spec.shape.vocab;
        if let Some(&bad) = prompt.iter().find(|&&t| u64::from(t) >= vocab) {
            return Err(ModelError::Invalid {
                op: "prefill",
                reason: format!("token id {bad} is past the vocabulary of {vocab}"),
            });
        }
        if prompt.is_empty() {
            return Err(ModelError::Invalid {
                op: "prefill",
                reason: "the prompt is empty".into(),
            });
        }
        self.room_for(prompt.len())?;
        self.tokens.write_range(self.pos, prompt)?;
        let chunks = prompt.len().div_ceil(self.options.max_tokens);
        for (i, chunk) in prompt.chunks(self.options.max_tokens).enumerate() {
            // Only the last chunk's last position needs logits (and a next token, which would
            // overwrite the next chunk's first one).
            self.forward(chunk.len(), i + 1 == chunks)?;
        }
        Ok(())
    }

    /// One generation step: runs the token the last step chose and chooses the next.
    pub fn decode(&mut self) -> Result<()> {
        if self.pos == 0 {
            return Err(ModelError::Invalid {
                op: "decode",
                reason: "nothing to continue: prefill a prompt first".into(),
            });
        }
        self.room_for(1)?;
        self.forward(1, true)
    }

    /// The sequence so far: the prompt, then every chosen token, with the next one last
    /// (`position() + 1` tokens). Waits for the GPU.
    pub fn tokens(&self) -> Result<Vec<u32>> {
        let all = self.tokens.to_vec::<u32>()?;
        let seq = all[..=self.pos].to_vec();
        if let Some(i) = seq
            .iter()
            .position(|&t| u64::from(t) >= self.spec.shape.vocab)
        {
            return Err(ModelError::Invalid {
                op: "tokens",
                reason: format!(
                    "the model produced no valid token at position {i} (every logit NaN): \
                     the weights or a kernel are broken"
                ),
            });
        }
        Ok(seq)
    }

    /// The last position's logits. Waits for the GPU.
    pub fn logits(&self) -> Result<Vec<f32>> {
        Ok(self.act.logits.to_vec::<f32>()?)
    }

    fn room_for(&self, t: usize) -> Result<()> {
        if self.pos + t > self.options.context {
            return Err(ModelError::Invalid {
                op: "decoder",
                reason: format!(
                    "the context holds {} positions: {} used + {t} more does not fit; load \
                     with a longer context",
                    self.options.context, self.pos
                ),
            });
        }
        Ok(())
    }

    fn linear(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Result<()> {
        let p = check_linear(x, w, bias)?;
        let kernel = select_linear(self.gpu.capabilities(), &p);
        Ok(linear_into(&self.gpu, x, w, bias, out, kernel)?)
    }

    /// Runs `proj` on `x` into the step's views of `outs`.
    fn project(&self, x: &Tensor, proj: &Proj, outs: &[Tensor]) -> Result<()> {
        match proj {
            Proj::Fused { w, bias } => self.linear(x, w, bias.as_ref(), &outs[0]),
            Proj::Split(parts) => {
                for ((w, b), out) in parts.iter().zip(outs) {
                    self.linear(x, w, b.as_ref(), out)?;
                }
                Ok(())
            }
        }
    }

    /// The forward pass of the `t` tokens at `tokens[pos .. pos + t]`; with `sample`, the last
    /// one's logits, and argmax writes `tokens[pos + t]`.
    fn forward(&mut self, t: usize, sample: bool) -> Result<()> {
        let gpu = self.gpu.clone();
        let m = &self.spec.shape;
        let (heads, d, eps) = (m.heads as usize, m.head_dim as usize, m.rms_eps as f32);
        let (q_w, kv_w, ffn) = (self.spec.q_width(), self.spec.kv_width(), m.ffn as usize);
        let a = &self.act;
        let (x, xn, delta) = (rows(&a.x, t)?, rows(&a.xn, t)?, rows(&a.delta, t)?);
        let qkv: Vec<Tensor> = a.qkv.iter().map(|b| rows(b, t)).collect::<Result<_, _>>()?;
        let gate_up: Vec<Tensor> = a
            .gate_up
            .iter()
            .map(|b| rows(b, t))
            .collect::<Result<_, _>>()?;
        let q = a.q.view(&[heads, t, d])?;
        let attn = a.attn.view(&[heads, t, d])?;
        // Decode: [heads, 1, d] is already [1, heads·d].
        let attn_tokens = if t == 1 {
            a.attn.view(&[1, q_w])?
        } else {
            rows(&a.attn_tokens, t)?
        };
        let act = rows(&a.act, t)?;

        ops::embed(&gpu, &self.embed, &self.tokens, self.pos, &x)?;
        ops::rms_norm(&gpu, &x, None, &self.layers[0].attn_norm, &xn, 0, eps)?;
        let n = self.layers.len();
        for l in 0..n {
            let layer = &self.layers[l];
            self.project(&xn, &layer.qkv, &qkv)?;
            let cols = if qkv.len() == 1 {
                [0, q_w, q_w + kv_w].map(|col| Columns {
                    tensor: &qkv[0],
                    col,
                })
            } else {
                [0, 1, 2].map(|i| Columns {
                    tensor: &qkv[i],
                    col: 0,
                })
            };
            ops::rope_append(
                &gpu,
                cols,
                t,
                &self.freq,
                self.spec.pairing,
                &q,
                &mut self.caches[l],
            )?;
            let options = AttentionOptions {
                causal: true,
                scale: None,
            };
            self.caches[l].attention_into(&gpu, &q, &attn, options)?;
            if t > 1 {
                ops::heads_to_tokens(&gpu, &attn, &attn_tokens)?;
            }
            let layer = &self.layers[l];
            self.linear(&attn_tokens, &layer.o, None, &delta)?;
            ops::rms_norm(&gpu, &x, Some(&delta), &layer.ffn_norm, &xn, 0, eps)?;
            self.project(&xn, &layer.gate_up, &gate_up)?;
            let (g, u) = if gate_up.len() == 1 {
                (
                    Columns {
                        tensor: &gate_up[0],
                        col: 0,
                    },
                    Columns {
                        tensor: &gate_up[0],
                        col: ffn,
                    },
                )
            } else {
                (
                    Columns {
                        tensor: &gate_up[0],
                        col: 0,
                    },
                    Columns {
                        tensor: &gate_up[1],
                        col: 0,
                    },
                )
            };
            ops::silu_mul(&gpu, g, u, &act)?;
            self.linear(&act, &layer.down, None, &delta)?;
            if l + 1 < n {
                ops::rms_norm(
                    &gpu,
                    &x,
                    Some(&delta),
                    &self.layers[l + 1].attn_norm,
                    &xn,
                    0,
                    eps,
                )?;
            } else if sample {
                // Only the last position's logits are needed: add and norm that row alone.
                ops::rms_norm(
                    &gpu,
                    &x,
                    Some(&delta),
                    &self.final_norm,
                    &a.last,
                    t - 1,
                    eps,
                )?;
            }
        }
        if sample {
            let head = self.output.as_ref().unwrap_or(&self.embed);
            self.linear(&a.last, head, None, &a.logits)?;
            ops::argmax_into(&gpu, &a.logits, 0, &self.tokens, self.pos + t)?;
        }
        self.pos += t;
        Ok(())
    }
}
