//! Steps over a paged KV cache: any mix of sequences, each at its own position, decode rows and
//! prompt chunks together, in one submission whose dispatch count does not depend on how many
//! sequences share it. The caller (a scheduler) owns the block allocation and says, per step,
//! which blocks hold each sequence's positions.

use pertoken_attention::{KvPool, PagedRows, PagedScratch, paged_attention_into};
use pertoken_gpu::{DType, Tensor};

use super::Decoder;
use super::buffers::rows;
use super::forward::head_rope;
use crate::ops;
use crate::{ModelError, ModelSpec, Result};

/// How a paged decoder holds keys and values: `blocks` blocks of `block` positions per layer,
/// shared by every sequence, in f16 (the default, as llama.cpp's) or f32. With
/// `window_blocks`, each sliding-window layer (Gemma 3's local layers) holds a pool of its own
/// of that many blocks, addressed through each sequence's second block table
/// ([`SeqStep::window_blocks`]), from which a scheduler frees the blocks that have slid out of
/// every query's window: such a layer holds only its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedKv {
    /// Blocks in each layer's pool.
    pub blocks: usize,
    /// Positions per block.
    pub block: usize,
    /// f16 or f32.
    pub dtype: DType,
    /// Blocks in each sliding-window layer's pool; `None`: those layers use the others' pools
    /// and tables.
    pub window_blocks: Option<usize>,
}

impl PagedKv {
    /// Bytes of K and V of every layer.
    pub fn bytes(&self, spec: &ModelSpec) -> u64 {
        let m = &spec.shape;
        let windowed = (0..m.layers)
            .filter(|&l| self.in_window_group(spec, l as usize))
            .count() as u64;
        2 * ((m.layers - windowed) * self.bytes_per_tensor(spec)
            + windowed * self.pool_bytes(spec, self.window_blocks.unwrap_or(0)))
    }

    /// Bytes of one (full-context) layer's K (or V) pool.
    pub fn bytes_per_tensor(&self, spec: &ModelSpec) -> u64 {
        self.pool_bytes(spec, self.blocks)
    }

    fn pool_bytes(&self, spec: &ModelSpec, blocks: usize) -> u64 {
        let m = &spec.shape;
        KvPool::bytes_of(
            blocks,
            (m.kv_heads as usize, m.head_dim as usize),
            self.block,
            self.dtype,
        )
    }

    /// Whether layer `l` of `spec` keeps its keys in the sliding-window pool.
    pub fn in_window_group(&self, spec: &ModelSpec, l: usize) -> bool {
        self.window_blocks.is_some() && spec.shape.layer_window(l as u64).is_some()
    }
}

/// What a step feeds one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed<'a> {
    /// These tokens at positions `pos ..` (a prompt, a chunk of one, or a preempted sequence's
    /// prompt and output run again).
    Tokens(&'a [u32]),
    /// The one token an earlier step chose for position `pos` (it stays on the GPU).
    Next,
}

/// One sequence's part of a step.
#[derive(Debug, Clone, Copy)]
pub struct SeqStep<'a> {
    /// Its slot: a row of the block table and of the token buffer, below the decoder's batch.
    pub seq: usize,
    /// The position of its first token in this step.
    pub pos: usize,
    /// Its tokens.
    pub feed: Feed<'a>,
    /// The blocks holding its positions `0 .. pos + tokens`, in order.
    pub blocks: &'a [u32],
    /// With a sliding-window pool ([`PagedKv::window_blocks`]): the window layers' blocks for
    /// the same positions, in order; entries of blocks wholly before the first key this step's
    /// queries see (position `pos + 1 − window`) are never read and may be anything (freed).
    /// Empty otherwise.
    pub window_blocks: &'a [u32],
    /// Whether its last token's logits choose a next token (the last chunk of a prompt, and
    /// every decode row).
    pub sample: bool,
}

impl SeqStep<'_> {
    /// Rows it runs: its tokens, or 1 for [`Feed::Next`].
    pub fn rows(&self) -> usize {
        match self.feed {
            Feed::Tokens(t) => t.len(),
            Feed::Next => 1,
        }
    }
}

/// A paged decoder's own state: each layer's pool, the block tables, a step's row descriptions
/// and sampled slots, and attention's scratch.
#[derive(Debug)]
pub(crate) struct PagedState {
    pools: Vec<KvPool>,
    /// `[batch, max_blocks]`.
    table: Tensor,
    /// The sliding-window layers' tables, `[batch, max_blocks]`, with a window pool.
    window_table: Option<Tensor>,
    /// `[max_tokens, 4]`: (token slot, sequence, position, 0) of each row.
    rows: Tensor,
    /// `[batch]`: where each sampled row's token goes, then the token.
    picked: Tensor,
    scratch: PagedScratch,
    kv: PagedKv,
    max_blocks: usize,
}

impl PagedState {
    pub(crate) fn new(
        gpu: &pertoken_gpu::Gpu,
        spec: &ModelSpec,
        options: super::DecoderOptions,
        kv: PagedKv,
    ) -> Result<PagedState> {
        let m = &spec.shape;
        if kv.block == 0 || kv.blocks == 0 {
            return Err(ModelError::Invalid {
                op: "Decoder::load_paged",
                reason: "the KV cache needs at least one block of at least one position".into(),
            });
        }
        if kv.window_blocks == Some(0) {
            return Err(ModelError::Invalid {
                op: "Decoder::load_paged",
                reason: "a sliding-window pool needs at least one block".into(),
            });
        }
        let max_blocks = options.context.div_ceil(kv.block);
        let mut pools = Vec::with_capacity(m.layers as usize);
        for l in 0..m.layers as usize {
            let blocks = if kv.in_window_group(spec, l) {
                kv.window_blocks.unwrap_or(kv.blocks)
            } else {
                kv.blocks
            };
            pools.push(KvPool::new(
                gpu,
                blocks,
                (m.kv_heads as usize, m.head_dim as usize),
                kv.block,
                kv.dtype,
            )?);
        }
        let windowed = (0..m.layers as usize).any(|l| kv.in_window_group(spec, l));
        Ok(PagedState {
            pools,
            table: Tensor::zeros(gpu, &[options.batch, max_blocks], DType::U32)?,
            window_table: if windowed {
                Some(Tensor::zeros(
                    gpu,
                    &[options.batch, max_blocks],
                    DType::U32,
                )?)
            } else {
                None
            },
            rows: Tensor::zeros(gpu, &[options.max_tokens, 4], DType::U32)?,
            picked: Tensor::zeros(gpu, &[options.batch], DType::U32)?,
            scratch: PagedScratch::for_adapter(gpu, m.head_dim as usize)?,
            kv,
            max_blocks,
        })
    }
}

impl Decoder {
    /// The paged KV cache's layout, if this decoder is paged ([`Decoder::load_paged`]).
    pub fn paged_kv(&self) -> Option<PagedKv> {
        self.paged.as_ref().map(|p| p.kv)
    }

    /// One step of the sequences `seqs` name, all at once: their rows run through every layer
    /// together (the linears at M = the step's rows; RoPE with the cache write, attention over
    /// each sequence's blocks, the embedding gather and argmax once each for all of them), and
    /// each sampling sequence's greedy next token is written after its last position. Returns
    /// those tokens, in the order of `seqs`. Waits for the GPU.
    pub fn step(&mut self, seqs: &[SeqStep<'_>]) -> Result<Vec<u32>> {
        let n = self.check_step(seqs)?;
        let gpu = self.gpu.clone();
        let ctx1 = self.options.context + 1;
        let (paged, tokens) = (self.paged.as_ref().expect("checked"), &self.tokens);
        // Rows: every unsampled row first, then the sampled ones, so that the final norm, the
        // head and argmax read one contiguous range at the end.
        let mut meta: Vec<u32> = Vec::with_capacity(4 * n);
        let mut tail: Vec<u32> = Vec::new();
        let mut picked: Vec<u32> = Vec::new();
        let mut table = vec![0u32; self.options.batch * paged.max_blocks];
        let mut window_table = paged
            .window_table
            .as_ref()
            .map(|_| vec![0u32; self.options.batch * paged.max_blocks]);
        for s in seqs {
            let len = s.rows();
            if let Feed::Tokens(t) = s.feed {
                tokens.write_range(s.seq * ctx1 + s.pos, t)?;
            }
            table[s.seq * paged.max_blocks..][..s.blocks.len()].copy_from_slice(s.blocks);
            if let Some(w) = &mut window_table {
                w[s.seq * paged.max_blocks..][..s.window_blocks.len()]
                    .copy_from_slice(s.window_blocks);
            }
            for i in 0..len {
                let p = s.pos + i;
                let row = [(s.seq * ctx1 + p) as u32, s.seq as u32, p as u32, 0];
                if s.sample && i + 1 == len {
                    tail.extend(row);
                    picked.push((s.seq * ctx1 + p + 1) as u32);
                } else {
                    meta.extend(row);
                }
            }
        }
        let sampled = picked.len();
        meta.extend(tail);
        paged.rows.write_range(0, &meta)?;
        paged.table.write(&table)?;
        if let (Some(t), Some(w)) = (&paged.window_table, &window_table) {
            t.write(w)?;
        }
        if sampled > 0 {
            paged.picked.write_range(0, &picked)?;
        }
        let max_len = seqs.iter().map(|s| s.pos + s.rows()).max().unwrap_or(1);
        self.forward_paged(n, sampled, max_len)?;
        if sampled == 0 {
            gpu.sync()?;
            return Ok(Vec::new());
        }
        let got = self
            .paged
            .as_ref()
            .expect("checked")
            .picked
            .to_vec::<u32>()?;
        let vocab = self.spec.shape.vocab;
        if let Some(i) = got[..sampled].iter().position(|&t| u64::from(t) >= vocab) {
            return Err(ModelError::Invalid {
                op: "step",
                reason: format!(
                    "the model produced no valid token for sampled row {i} (every logit NaN): \
                     the weights or a kernel are broken"
                ),
            });
        }
        Ok(got[..sampled].to_vec())
    }

    /// The logits of the last step's `i`-th sampled sequence (in the order of its `seqs`).
    /// Waits for the GPU.
    pub fn step_logits(&self, i: usize) -> Result<Vec<f32>> {
        let v = self.spec.shape.vocab as usize;
        let all = self.act.logits.to_vec::<f32>()?;
        if (i + 1) * v > all.len() {
            return Err(ModelError::Invalid {
                op: "step_logits",
                reason: format!("sampled row {i}: the decoder holds {}", all.len() / v),
            });
        }
        Ok(all[i * v..(i + 1) * v].to_vec())
    }

    /// Checks a step against the decoder's shape and the pool; returns its rows.
    fn check_step(&self, seqs: &[SeqStep<'_>]) -> Result<usize> {
        let bad = |reason: String| ModelError::Invalid { op: "step", reason };
        let Some(paged) = &self.paged else {
            return Err(bad(
                "this decoder holds one contiguous cache per sequence: load it with \
                 Decoder::load_paged to run steps over a paged cache"
                    .into(),
            ));
        };
        if seqs.is_empty() {
            return Err(bad("a step needs at least one sequence".into()));
        }
        let mut seen = vec![false; self.options.batch];
        let mut n = 0;
        let vocab = self.spec.shape.vocab;
        for s in seqs {
            let len = s.rows();
            if s.seq >= self.options.batch {
                return Err(bad(format!(
                    "sequence slot {}: the decoder holds {}",
                    s.seq, self.options.batch
                )));
            }
            if std::mem::replace(&mut seen[s.seq], true) {
                return Err(bad(format!("sequence slot {} appears twice", s.seq)));
            }
            if len == 0 {
                return Err(bad(format!("sequence slot {} has no tokens", s.seq)));
            }
            if let Feed::Tokens(t) = s.feed
                && let Some(&tok) = t.iter().find(|&&t| u64::from(t) >= vocab)
            {
                return Err(bad(format!(
                    "token id {tok} is past the vocabulary of {vocab}"
                )));
            }
            if s.feed == Feed::Next && s.pos == 0 {
                return Err(bad(format!(
                    "sequence slot {} has no earlier token to continue: feed its prompt",
                    s.seq
                )));
            }
            let end = s.pos + len;
            if end > self.options.context {
                return Err(bad(format!(
                    "sequence slot {} reaches position {end}, past the context of {}",
                    s.seq, self.options.context
                )));
            }
            let need = end.div_ceil(paged.kv.block);
            if s.blocks.len() < need || s.blocks.len() > paged.max_blocks {
                return Err(bad(format!(
                    "sequence slot {} holds {end} positions in {} blocks of {}: it needs {need}",
                    s.seq,
                    s.blocks.len(),
                    paged.kv.block
                )));
            }
            if let Some(&b) = s.blocks.iter().find(|&&b| b as usize >= paged.kv.blocks) {
                return Err(bad(format!(
                    "block {b} is past the pool's {}",
                    paged.kv.blocks
                )));
            }
            if let (Some(_), Some(pool)) = (&paged.window_table, paged.kv.window_blocks) {
                let w = self.spec.shape.sliding_window.unwrap_or(u64::MAX) as usize;
                if s.window_blocks.len() < need || s.window_blocks.len() > paged.max_blocks {
                    return Err(bad(format!(
                        "sequence slot {} holds {end} positions in {} sliding-window blocks of \
                         {}: it needs {need}",
                        s.seq,
                        s.window_blocks.len(),
                        paged.kv.block
                    )));
                }
                // The blocks from the first key the step's first query sees must be real.
                let first = (s.pos + 1).saturating_sub(w) / paged.kv.block;
                if let Some(&b) = s.window_blocks[first..need]
                    .iter()
                    .find(|&&b| b as usize >= pool)
                {
                    return Err(bad(format!(
                        "sliding-window block {b} of sequence slot {} is past the pool's {pool}",
                        s.seq
                    )));
                }
            }
            n += len;
        }
        if n > self.options.max_tokens {
            return Err(bad(format!(
                "{n} rows are more than the step's budget of {} (max_tokens)",
                self.options.max_tokens
            )));
        }
        Ok(n)
    }

    /// The forward pass of a step's `n` rows (already described on the GPU), the last `sampled`
    /// of them through the head and argmax.
    fn forward_paged(&mut self, n: usize, sampled: usize, max_len: usize) -> Result<()> {
        let gpu = self.gpu.clone();
        let m = &self.spec.shape;
        let (heads, d, eps) = (m.heads as usize, m.head_dim as usize, m.rms_eps as f32);
        let v = self.views(n)?;
        let q = self
            .act
            .q
            .view(&[self.act.q.len() / (heads * d), heads, d])?;
        let attn_tokens = rows(&self.act.attn_tokens, n)?;
        let attn = self.act.attn_tokens.view(&[q.shape()[0], heads, d])?;
        // With every row sampled (decode alone), the norms may fuse into the GEMVs.
        let fused = sampled == n && self.fuses_norms(&v, &attn_tokens)?;
        let mut paged = self.paged.take().expect("checked");
        let step = PagedRows {
            rows: &paged.rows,
            table: &paged.table,
            n,
            max_len,
        };
        let window_step = paged
            .window_table
            .as_ref()
            .map(|table| PagedRows { table, ..step });
        let kv = paged.kv;
        let result = (|| -> Result<()> {
            ops::embed_rows(
                &gpu,
                &self.embed,
                (&self.tokens, step.rows, n),
                &v.x,
                self.embed_scale(),
            )?;
            if !fused {
                ops::rms_norm(&gpu, &v.x, None, &self.layers[0].attn_norm, &v.xn, 0, eps)?;
            }
            for l in 0..self.layers.len() {
                self.qkv(l, &v, fused)?;
                let cols = self.qkv_columns(&v.qkv);
                let rope = head_rope(&self.spec, &self.freqs[l], &self.layers[l]);
                let pool = &paged.pools[l];
                let step = match window_step {
                    Some(w) if kv.in_window_group(&self.spec, l) => w,
                    _ => step,
                };
                ops::rope_paged(&gpu, cols, step, &rope, &q, pool)?;
                let options = self.attention_options(l);
                paged_attention_into(&gpu, &q, pool, step, &attn, options, &mut paged.scratch)?;
                if fused {
                    self.finish_layer_fused(l, &v, &attn_tokens)?;
                } else {
                    let last = (sampled > 0).then_some((n - sampled, sampled));
                    self.finish_layer(l, &v, &attn_tokens, last)?;
                }
            }
            if sampled > 0 {
                let logits = self.head(sampled, fused)?;
                ops::argmax_rows(&gpu, &logits, (0, sampled), &self.tokens, &paged.picked)?;
            }
            Ok(())
        })();
        self.paged = Some(paged);
        result
    }
}
