//! What a decoder will take, checked against the adapter before anything is uploaded.

use pertoken_gpu::Gpu;

use super::DecoderOptions;
use crate::weights::{Role, WeightSource};
use crate::{ModelError, ModelSpec, Oversize, Result};

/// The bytes a decoder needs.
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
    /// Activations and the token buffer (a bound, not exact).
    pub activations: u64,
}

impl MemoryPlan {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.activations
    }

    /// Checks the plan against the adapter's buffer and binding limits and, on CPU adapters
    /// (whose "device memory" is this machine's RAM), against the memory available.
    pub fn check(&self, gpu: &Gpu, model: &str) -> Result<()> {
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
        if caps.cpu
            && let Some(avail) = available_ram()
            && self.total() > avail
        {
            return Err(err(
                format!(
                    "weights {} + KV cache {} + activations {}",
                    self.weights, self.kv, self.activations
                ),
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
    for role in Role::all(spec) {
        let Some((dtype, shape)) = source.stored(role)? else {
            continue;
        };
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
    Ok(MemoryPlan::new(spec, options, weights, largest))
}

impl MemoryPlan {
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
        let activations = 4
            * (t * (4 * m.hidden + 3 * q + 2 * m.kv_heads * m.head_dim + 3 * m.ffn)
                + batch * (m.hidden + m.vocab + 2 * q))
            + 4 * batch * (options.context as u64 + 1);
        MemoryPlan {
            weights,
            largest_weight,
            kv: 2 * m.layers * batch * kv_per_tensor,
            kv_per_tensor,
            activations,
        }
    }
}
