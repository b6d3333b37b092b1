//! What a decoder will take, checked against the adapter before anything is uploaded.

use pertoken_gpu::{BUFFER_ALIGN, Gpu};

use super::{DecoderOptions, PagedKv};
use crate::weights::{Role, WeightSource};
use crate::{ModelError, ModelSpec, Oversize, Result};

/// The bytes a decoder needs. Not counted: attention's partial results, which each layer's
/// cache grows on demand when a longer context takes more key splits (bounded by the split
/// cap; 1.6 KB for a 2-layer test model at 2,000 positions). If they pass a memory limit, that
/// step is an out-of-memory error naming the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Every weight, as stored.
    pub weights: u64,
    /// The largest single weight tensor (a fused q/k/v or gate/up counts as one).
    pub largest_weight: u64,
    /// K and V caches of every layer and sequence.
    pub kv: u64,
    /// One layer's K (or V) cache tensor.
    pub kv_per_tensor: u64,
    /// Activations, the token buffer and the RoPE frequencies.
    pub activations: u64,
    /// Alignment: every buffer is padded to [`BUFFER_ALIGN`] bytes, so this allows that much
    /// for each (a bound, not exact).
    pub padding: u64,
}

impl MemoryPlan {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.activations + self.padding
    }

    /// The total's parts, in words, for an error.
    fn parts(&self) -> String {
        format!(
            "weights {} + KV cache {} + activations {} + alignment {}",
            self.weights, self.kv, self.activations, self.padding
        )
    }

    /// Checks the plan against the adapter's buffer and binding limits, against the handle's
    /// memory limit where it has one, and, on CPU adapters (whose "device memory" is this
    /// machine's RAM), against the memory available.
    pub fn check(&self, gpu: &Gpu, model: &str) -> Result<()> {
        self.check_freeing(gpu, model, 0)
    }

    /// [`MemoryPlan::check`] where `freeing` bytes the handle holds now will be freed before
    /// this plan's buffers are made (a reshape's old KV caches).
    pub(crate) fn check_freeing(&self, gpu: &Gpu, model: &str, freeing: u64) -> Result<()> {
        let caps = gpu.capabilities();
        let adapter = gpu.adapter().name.clone();
        let err = |what: String, bytes, limit, limit_name, advice: &str| {
            ModelError::TooLarge(Box::new(Oversize {
                model: model.to_owned(),
                adapter: adapter.clone(),
                what,
                bytes,
                limit,
                limit_name,
                advice: advice.to_owned(),
            }))
        };
        if self.largest_weight > caps.max_buffer_size {
            return Err(err(
                "the largest weight tensor".into(),
                self.largest_weight,
                caps.max_buffer_size,
                "max_buffer_size",
                "Use a smaller weight format (q4_0 or q4_1 instead of f16).",
            ));
        }
        if self.kv_per_tensor > caps.max_storage_binding {
            return Err(err(
                "one layer's K cache".into(),
                self.kv_per_tensor,
                caps.max_storage_binding,
                "max_storage_buffer_binding_size",
                "Use a shorter context.",
            ));
        }
        if let Some(limit) = gpu.memory_limit() {
            let held = gpu.memory_in_use().saturating_sub(freeing);
            let free = limit.saturating_sub(held);
            if self.total() > free {
                return Err(err(
                    self.parts(),
                    self.total(),
                    free,
                    "PERTOKEN_MEMORY_LIMIT (GpuOptions::memory_limit), less what this handle's \
                     tensors already hold",
                    "Raise the memory limit, or use a smaller weight format, a shorter context \
                     or fewer sequences.",
                ));
            }
        }
        if caps.cpu
            && let Some(avail) = available_ram()
            && self.total() > avail
        {
            return Err(err(
                self.parts(),
                self.total(),
                avail,
                "MemAvailable in /proc/meminfo",
                "Use a smaller weight format or a shorter context, or a smaller model.",
            ));
        }
        Ok(())
    }
}

fn available_ram() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sizes what `source` on `gpu` with `options` will take.
pub fn plan_memory(
    _gpu: &Gpu,
    source: &dyn WeightSource,
    options: DecoderOptions,
) -> Result<MemoryPlan> {
    let spec = source.spec();
    let mut weights = 0u64;
    let mut largest = 0u64;
    let mut fused = 0u64;
    let mut buffers = 0u64;
    for role in Role::all(spec) {
        let Some((dtype, shape)) = source.stored(role)? else {
            continue;
        };
        buffers += 1;
        let (elems, block) = dtype.block();
        let n: u64 = shape.iter().map(|&d| d as u64).product();
        // Norms and biases are uploaded as f32.
        let bytes = if role.is_vector() {
            4 * n
        } else {
            n / elems as u64 * block as u64
        };
        weights += bytes;
        // q, k, v (and gate, up) are uploaded as one tensor.
        match role {
            Role::Q(_) | Role::Gate(_) => fused = bytes,
            Role::K(_) | Role::V(_) | Role::Up(_) => fused += bytes,
            _ => fused = bytes,
        }
        largest = largest.max(fused);
    }
    let mut plan = MemoryPlan::new(spec, options, weights, largest);
    plan.padding += buffers * BUFFER_ALIGN;
    Ok(plan)
}

impl MemoryPlan {
    /// This plan with the per-sequence caches replaced by `kv`'s block pools (and the paged
    /// step's tables, row descriptions and attention's split scratch, `scratch` bytes).
    pub(crate) fn paged(
        mut self,
        spec: &ModelSpec,
        options: DecoderOptions,
        (kv, scratch): (PagedKv, u64),
    ) -> Self {
        let m = &spec.shape;
        let contiguous_buffers = 2 * m.layers * options.batch as u64;
        self.kv = kv.bytes(spec);
        self.kv_per_tensor = kv.bytes_per_tensor(spec);
        let max_blocks = options.context.div_ceil(kv.block.max(1)) as u64;
        self.activations +=
            4 * (options.batch as u64 * (max_blocks + 1) + 4 * options.max_tokens as u64) + scratch;
        self.padding =
            (self.padding / BUFFER_ALIGN - contiguous_buffers + 2 * m.layers + 3) * BUFFER_ALIGN;
        self
    }

    /// The plan for weights of `weights` bytes (the largest tensor `largest_weight`) and the
    /// per-sequence state `options` asks for: every sequence's KV caches, the activations (rows
    /// for the longest pass, one row of norm and logits per sequence) and the token buffer.
    pub(crate) fn new(
        spec: &ModelSpec,
        options: DecoderOptions,
        weights: u64,
        largest_weight: u64,
    ) -> MemoryPlan {
        let m = &spec.shape;
        let kv_per_tensor = m.kv_heads * options.context as u64 * m.head_dim * 4;
        let batch = options.batch as u64;
        let t = options.max_tokens.max(options.batch) as u64;
        let q = m.heads * m.head_dim;
        // Per row: x, xn and delta; q/k/v; q, attention's output heads-first and tokens-first;
        // gate/up; silu(gate)·up (buffers.rs). Per sequence: its last norm and logits, and in
        // a batch its q and attention output. Then the token buffer and RoPE's frequencies.
        let per_row = 3 * m.hidden + 4 * q + 2 * m.kv_heads * m.head_dim + 3 * m.ffn;
        let per_seq = m.hidden + m.vocab + if batch > 1 { 2 * q } else { 0 };
        let activations = 4
            * (t * per_row
                + batch * per_seq
                + batch * (options.context as u64 + 1)
                + m.head_dim / 2);
        // Activation buffers: at most 14 (q/k/v and gate/up split) and two per sequence; KV
        // caches; the token buffer and the frequencies.
        let buffers = 14 + 2 * batch + 2 * m.layers * batch + 2;
        MemoryPlan {
            weights,
            largest_weight,
            kv: 2 * m.layers * batch * kv_per_tensor,
            kv_per_tensor,
            activations,
            padding: buffers * BUFFER_ALIGN,
        }
    }
}
