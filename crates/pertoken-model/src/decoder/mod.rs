//! The decoder on the GPU: weights uploaded once, one [`KvCache`] per layer and sequence,
//! activations made once, and a forward pass that reads as the model's equation (see
//! [`pertoken_reference::decoder`] for the same pass on the CPU).
//!
//! A forward pass records every layer's dispatches into the pending encoder and ends with
//! argmax on the GPU, writing each sequence's next token into the token buffer that the next
//! step's embedding gather reads: a step is one submission, and steps need no host round trip.
//! With `batch` sequences, [`Decoder::decode`] steps them all at once: the linear layers run at
//! M = batch, attention over each sequence's own cache.

mod buffers;
mod forward;
mod layer;
mod memory;
mod paged;

pub use memory::{MemoryPlan, plan_memory};
pub use paged::{Feed, PagedKv, SeqStep};

use pertoken_attention::KvCache;
use pertoken_gpu::{DType, Gpu, Tensor};

use crate::weights::{Role, WeightSource};
use crate::{ModelError, ModelSpec, Result};
use buffers::Activations;
use layer::{GpuLayer, fetch, fusible, load_layer, upload, upload_vector};
use paged::PagedState;

/// How much a decoder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Positions each sequence's KV cache holds (prompt plus generated tokens).
    pub context: usize,
    /// Most tokens one forward pass takes; longer prompts run in chunks of this many.
    pub max_tokens: usize,
    /// Sequences decoded together.
    pub batch: usize,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            context: 1024,
            max_tokens: 256,
            batch: 1,
        }
    }
}

type SequenceState = (Vec<Vec<KvCache>>, Activations, Tensor);

/// Every sequence's KV caches (none for a paged decoder: its pools hold them), the activations
/// and the token buffer for `options`.
fn sequences(
    gpu: &Gpu,
    spec: &ModelSpec,
    first: &GpuLayer,
    options: DecoderOptions,
    paged: bool,
) -> Result<SequenceState> {
    let m = &spec.shape;
    let mut caches = Vec::with_capacity(options.batch);
    for _ in 0..if paged { 0 } else { options.batch } {
        let mut seq = Vec::with_capacity(m.layers as usize);
        for _ in 0..m.layers {
            seq.push(KvCache::new(
                gpu,
                m.kv_heads as usize,
                options.context,
                m.head_dim as usize,
                DType::F32,
            )?);
        }
        caches.push(seq);
    }
    let act = Activations::new(gpu, spec, options, &first.qkv, &first.gate_up)?;
    let tokens = Tensor::zeros(gpu, &[options.batch * (options.context + 1)], DType::U32)?;
    Ok((caches, act, tokens))
}

/// A decoder (Llama's block plus what the model's [`pertoken_cost::Arch`] adds) running on one
/// [`Gpu`].
#[derive(Debug)]
pub struct Decoder {
    gpu: Gpu,
    spec: ModelSpec,
    embed: Tensor,
    output: Option<Tensor>,
    final_norm: Tensor,
    layers: Vec<GpuLayer>,
    /// `[sequence][layer]` (empty when paged).
    caches: Vec<Vec<KvCache>>,
    /// The block pools and tables of a paged decoder ([`Decoder::load_paged`]).
    paged: Option<PagedState>,
    /// RoPE's frequencies of each layer (layers with the same RoPE share one tensor).
    freqs: Vec<Tensor>,
    act: Activations,
    /// Every token of every sequence, `[batch, context + 1]`: the prompt, then each argmax.
    tokens: Tensor,
    options: DecoderOptions,
    /// Positions each sequence has run (its caches' length).
    pos: Vec<usize>,
    /// The row of `act.logits` holding each sequence's last logits, if any.
    logits_row: Vec<Option<usize>>,
    weight_bytes: u64,
    /// Linear kernels chosen by [`Decoder::tune`], by (weight shape, dtype, rows of x).
    kernels: std::collections::HashMap<LinearKey, pertoken_matmul::Kernel>,
    /// Whether decode steps fuse the SwiGLU gate into the down projection's GEMV.
    pub(crate) fuse_gate: bool,
    /// Whether decode steps fuse the RMSNorms and residual adds into the GEMVs.
    pub(crate) fuse_norm: bool,
}

/// A linear layer's problem, as [`Decoder::tune`] keys its choices: weight `[n, k]`, dtype,
/// rows of x.
type LinearKey = (usize, usize, DType, usize);

impl Decoder {
    /// Uploads `source`'s weights to `gpu` and makes the caches and activations, after checking
    /// that everything fits the adapter.
    pub fn load(gpu: &Gpu, source: &dyn WeightSource, options: DecoderOptions) -> Result<Decoder> {
        Self::load_with(gpu, source, options, None)
    }

    /// [`Decoder::load`] with keys and values in per-layer pools of blocks that every sequence
    /// shares (`kv`), for [`Decoder::step`]: `options.batch` is the most sequences at once,
    /// `options.context` the most positions of one, `options.max_tokens` the most rows of a
    /// step.
    pub fn load_paged(
        gpu: &Gpu,
        source: &dyn WeightSource,
        options: DecoderOptions,
        kv: PagedKv,
    ) -> Result<Decoder> {
        Self::load_with(gpu, source, options, Some(kv))
    }

    fn load_with(
        gpu: &Gpu,
        source: &dyn WeightSource,
        options: DecoderOptions,
        kv: Option<PagedKv>,
    ) -> Result<Decoder> {
        let spec = source.spec().clone();
        spec.check()?;
        if options.context == 0 || options.max_tokens == 0 || options.batch == 0 {
            return Err(ModelError::Invalid {
                op: "Decoder::load",
                reason: "context, max_tokens and batch must be at least 1".into(),
            });
        }
        if let Some(limit) = spec.context_limit
            && options.context > limit
        {
            return Err(ModelError::Unsupported {
                model: spec.shape.name.clone(),
                reason: format!(
                    "a context of {} positions: past {limit} this model switches to its long \
                     RoPE factors, which this decoder does not apply yet; use a context of at \
                     most {limit}",
                    options.context
                ),
            });
        }
        let mut plan = plan_memory(gpu, source, options)?;
        if let Some(kv) = kv {
            let scratch =
                pertoken_attention::PagedScratch::bytes_for(gpu, spec.shape.head_dim as usize);
            plan = plan.paged(&spec, options, (kv, scratch));
        }
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
        let fusion = fusible(source)?;
        let mut layers = Vec::with_capacity(m.layers as usize);
        for l in 0..m.layers as usize {
            layers.push(load_layer(gpu, source, l, fusion)?);
        }
        let mut freqs: Vec<Tensor> = Vec::with_capacity(layers.len());
        let mut made: Vec<(Vec<f32>, Tensor)> = Vec::new();
        for l in 0..layers.len() {
            let f = spec.rope_frequencies(l);
            if let Some((_, t)) = made.iter().find(|(g, _)| *g == f) {
                freqs.push(t.clone());
            } else {
                let t = Tensor::from_slice(gpu, &f, &[f.len()])?;
                made.push((f, t.clone()));
                freqs.push(t);
            }
        }
        let (caches, act, tokens) = sequences(gpu, &spec, &layers[0], options, kv.is_some())?;
        let paged = match kv {
            Some(kv) => Some(PagedState::new(gpu, &spec, options, kv)?),
            None => None,
        };
        Ok(Decoder {
            gpu: gpu.clone(),
            weight_bytes: plan.weights,
            spec,
            embed,
            output,
            final_norm,
            layers,
            caches,
            paged,
            freqs,
            act,
            tokens,
            options,
            pos: vec![0; options.batch],
            logits_row: vec![None; options.batch],
            kernels: std::collections::HashMap::new(),
            fuse_gate: !gpu.capabilities().cpu,
            fuse_norm: !gpu.capabilities().cpu,
        })
    }

    /// Chooses the kernel of every distinct linear layer at each of `rows` rows of x through
    /// `tuner` (cached winners, or candidates measured now on this adapter, or the heuristic,
    /// by its mode), for the forward passes to use. Returns how each was chosen, as
    /// `(problem, "tuned" | "cached" | "heuristic")`.
    pub fn tune(
        &mut self,
        tuner: &mut pertoken_matmul::Tuner,
        rows: &[usize],
    ) -> Result<Vec<(String, &'static str)>> {
        self.tune_with_progress(tuner, rows, &mut |_, _, _| {})
    }

    /// [`Decoder::tune`], calling `progress(done, total, problem)` before each problem (tuning
    /// one takes seconds to minutes on a CPU adapter) and once at the end.
    pub fn tune_with_progress(
        &mut self,
        tuner: &mut pertoken_matmul::Tuner,
        rows: &[usize],
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<Vec<(String, &'static str)>> {
        let mut weights: Vec<(&Tensor, Option<&Tensor>)> = Vec::new();
        let first = &self.layers[0];
        for p in [&first.qkv, &first.gate_up] {
            weights.extend(p.parts());
        }
        weights.push((&first.o, None));
        weights.push((&first.down, None));
        weights.push((self.output.as_ref().unwrap_or(&self.embed), None));
        let mut problems = Vec::new();
        for &m in rows {
            for &(w, bias) in &weights {
                let [n, k] = w.shape()[..] else { continue };
                let key = (n, k, w.dtype(), m);
                if !problems.iter().any(|(k2, _, _)| *k2 == key) {
                    problems.push((key, w, bias));
                }
            }
        }
        let mut how = Vec::new();
        let mut chosen = Vec::new();
        for (i, &(key, w, bias)) in problems.iter().enumerate() {
            let (n, k, dtype, m) = key;
            let name = format!("{m}x{k}x{n} {dtype}");
            progress(i, problems.len(), &name);
            let x = Tensor::zeros(&self.gpu, &[m, k], DType::F32)?;
            x.fill(0.5f32)?;
            let choice = tuner.linear(&x, w, bias)?;
            how.push((name, choice.source()));
            chosen.push((key, choice.kernel()));
        }
        progress(problems.len(), problems.len(), "");
        self.kernels.extend(chosen);
        Ok(how)
    }

    /// Fuses the SwiGLU gate into the down projection's GEMV at decode (`true`), or runs it as
    /// its own pass (`false`). By default on GPUs, where the GEMV is memory-bound and the
    /// gate's exponentials are free, and off on CPU adapters, where every invocation of the
    /// GEMV recomputing the gate for its rows costs more than the pass it saves.
    pub fn set_fuse_gate(&mut self, fuse: bool) {
        self.fuse_gate = fuse;
    }

    /// Whether decode steps whose linears all run the GEMV kernel fuse each RMSNorm into the
    /// linears that read its output (the GEMV sums the squares of the x values it loads) and
    /// each residual add into the linear before it (which adds into the residual stream): two
    /// passes fewer per layer, and one before the head. On by default on GPUs, off on CPU
    /// adapters, where the fused step was measured slower.
    pub fn set_fuse_norm(&mut self, fuse: bool) {
        self.fuse_norm = fuse;
    }

    pub(crate) fn kernel_for(&self, key: LinearKey) -> Option<pertoken_matmul::Kernel> {
        self.kernels.get(&key).copied()
    }

    /// Makes the caches, activations and token buffer for `options` (another batch or context)
    /// and forgets every sequence; the weights stay. The memory plan is checked first.
    pub fn reshape(&mut self, options: DecoderOptions) -> Result<()> {
        self.not_paged("Decoder::reshape")?;
        if options.context == 0 || options.max_tokens == 0 || options.batch == 0 {
            return Err(ModelError::Invalid {
                op: "Decoder::reshape",
                reason: "context, max_tokens and batch must be at least 1".into(),
            });
        }
        // The weights are in place: only the new per-sequence state is still to be made.
        // The old KV caches go first; the old activations stay until the new ones are made.
        let old_kv = MemoryPlan::new(&self.spec, self.options, 0, 0).kv;
        MemoryPlan::new(&self.spec, options, 0, 0).check_freeing(
            &self.gpu,
            &self.spec.shape.name,
            old_kv,
        )?;
        self.caches.clear();
        let (caches, act, tokens) =
            sequences(&self.gpu, &self.spec, &self.layers[0], options, false)?;
        self.caches = caches;
        self.act = act;
        self.tokens = tokens;
        self.options = options;
        self.pos = vec![0; options.batch];
        self.logits_row = vec![None; options.batch];
        Ok(())
    }

    /// The adapter it runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The model.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Bytes of weights on the GPU.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Positions the first sequence has run.
    pub fn position(&self) -> usize {
        self.pos[0]
    }

    /// Positions sequence `b` has run.
    pub fn position_of(&self, b: usize) -> usize {
        self.pos.get(b).copied().unwrap_or(0)
    }

    /// The options it was loaded with.
    pub fn options(&self) -> DecoderOptions {
        self.options
    }

    /// Forgets every sequence: the next prefill starts at position 0.
    pub fn reset(&mut self) -> Result<()> {
        for seq in &mut self.caches {
            for c in seq {
                c.truncate(0)?;
            }
        }
        self.pos.fill(0);
        self.logits_row.fill(None);
        Ok(())
    }

    /// Runs `prompt` on the first sequence ([`Decoder::prefill_sequence`] 0).
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.prefill_sequence(0, prompt)
    }

    /// Runs `prompt` on sequence `b` from its current position, in chunks of at most
    /// `max_tokens`, and leaves its greedy next token in the token buffer. Records; a download
    /// or [`Gpu::sync`] submits.
    pub fn prefill_sequence(&mut self, b: usize, prompt: &[u32]) -> Result<()> {
        self.not_paged("prefill")?;
        self.check_sequence(b)?;
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
        self.room_for(b, prompt.len())?;
        self.tokens.write_range(self.slot(b, self.pos[b]), prompt)?;
        let chunks = prompt.len().div_ceil(self.options.max_tokens);
        for (i, chunk) in prompt.chunks(self.options.max_tokens).enumerate() {
            // Only the last chunk's last position needs logits (and a next token, which would
            // overwrite the next chunk's first one).
            self.forward(b, chunk.len(), i + 1 == chunks)?;
        }
        Ok(())
    }

    /// One generation step of every sequence: each runs the token its last step chose and
    /// chooses the next, the linear layers over all of them at once.
    pub fn decode(&mut self) -> Result<()> {
        self.not_paged("decode")?;
        if let Some(b) = self.pos.iter().position(|&p| p == 0) {
            return Err(ModelError::Invalid {
                op: "decode",
                reason: format!("sequence {b} has nothing to continue: prefill a prompt first"),
            });
        }
        for b in 0..self.options.batch {
            self.room_for(b, 1)?;
        }
        if self.options.batch == 1 {
            self.forward(0, 1, true)
        } else {
            self.forward_batch()
        }
    }

    /// The first sequence so far ([`Decoder::tokens_of`] 0).
    pub fn tokens(&self) -> Result<Vec<u32>> {
        self.tokens_of(0)
    }

    /// Sequence `b` so far: its prompt, then every chosen token, with the next one last
    /// (`position_of(b) + 1` tokens). Waits for the GPU.
    pub fn tokens_of(&self, b: usize) -> Result<Vec<u32>> {
        self.check_sequence(b)?;
        let all = self.tokens.to_vec::<u32>()?;
        let start = self.slot(b, 0);
        let seq = all[start..=start + self.pos[b]].to_vec();
        if let Some(i) = seq
            .iter()
            .position(|&t| u64::from(t) >= self.spec.shape.vocab)
        {
            return Err(ModelError::Invalid {
                op: "tokens",
                reason: format!(
                    "the model produced no valid token at position {i} of sequence {b} (every \
                     logit NaN): the weights or a kernel are broken"
                ),
            });
        }
        Ok(seq)
    }

    /// The first sequence's last logits ([`Decoder::logits_of`] 0).
    pub fn logits(&self) -> Result<Vec<f32>> {
        self.logits_of(0)
    }

    /// The logits of sequence `b`'s last position, from the last forward pass that ran it.
    /// Waits for the GPU.
    pub fn logits_of(&self, b: usize) -> Result<Vec<f32>> {
        self.check_sequence(b)?;
        let Some(row) = self.logits_row[b] else {
            return Err(ModelError::Invalid {
                op: "logits",
                reason: format!("sequence {b} has no logits: run it first"),
            });
        };
        let v = self.spec.shape.vocab as usize;
        let all = self.act.logits.to_vec::<f32>()?;
        Ok(all[row * v..(row + 1) * v].to_vec())
    }

    /// Where sequence `b`'s token at position `p` lives in the token buffer.
    fn slot(&self, b: usize, p: usize) -> usize {
        b * (self.options.context + 1) + p
    }

    /// An error for the per-sequence calls on a paged decoder.
    fn not_paged(&self, op: &'static str) -> Result<()> {
        if self.paged.is_some() {
            return Err(ModelError::Invalid {
                op,
                reason: "this decoder is paged: run its sequences with Decoder::step".into(),
            });
        }
        Ok(())
    }

    fn check_sequence(&self, b: usize) -> Result<()> {
        if b >= self.options.batch {
            return Err(ModelError::Invalid {
                op: "decoder",
                reason: format!("sequence {b}: the decoder holds {}", self.options.batch),
            });
        }
        Ok(())
    }

    fn room_for(&self, b: usize, t: usize) -> Result<()> {
        if self.pos[b] + t > self.options.context {
            return Err(ModelError::Invalid {
                op: "decoder",
                reason: format!(
                    "the context holds {} positions: {} used + {t} more does not fit; load \
                     with a longer context",
                    self.options.context, self.pos[b]
                ),
            });
        }
        Ok(())
    }
}
