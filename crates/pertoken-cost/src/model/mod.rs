//! Model shapes: the built-in catalog, user files, and Hugging Face `config.json` import.

use serde::Deserialize;

use crate::{Arch, CostError, Result};

/// A decoder-only transformer's shape (Llama-style: RMSNorm, gated MLP, grouped-query
/// attention, optionally mixture-of-experts MLPs).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Catalog name (`llama-3.1-8b`).
    pub name: String,
    /// Where the shape comes from.
    pub source: String,
    /// Transformer blocks.
    pub layers: u64,
    /// Model (residual) width.
    pub hidden: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads (grouped-query attention; equal to `heads` for multi-head attention).
    pub kv_heads: u64,
    /// Width of one head.
    pub head_dim: u64,
    /// Intermediate width of each (gated) MLP.
    pub ffn: u64,
    /// Vocabulary size.
    pub vocab: u64,
    /// The output projection shares the embedding's weights.
    #[serde(default)]
    pub tied_embeddings: bool,
    /// The q, k and v projections have biases (Qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
    /// MLP experts per layer (1 for a dense model).
    #[serde(default = "one")]
    pub experts: u64,
    /// Experts each token is routed to.
    #[serde(default = "one")]
    pub active_experts: u64,
    /// Attention window, if the model uses sliding-window attention.
    #[serde(default)]
    pub sliding_window: Option<u64>,
    /// Rotary position embedding: base frequency and frequency scaling.
    #[serde(default)]
    pub rope: Rope,
    /// RMSNorm's epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_eps: f64,
    /// What the architecture adds to a Llama block (Gemma 3's sandwich norms, q/k norms, ...).
    #[serde(default)]
    pub arch: Arch,
    /// Multi-head latent attention (DeepSeek-V2/V3): keys and values cached as one compressed
    /// latent per token and layer. Absent: grouped-query attention over `kv_heads`.
    #[serde(default)]
    pub mla: Option<Mla>,
    /// A mixture of experts' layout beyond `experts` and `active_experts`: shared experts and
    /// leading dense layers (DeepSeek-V3).
    #[serde(default)]
    pub moe: MoeLayout,
}

/// DeepSeek's multi-head latent attention (`config.json` names). Per token and layer the cache
/// holds `kv_lora_rank + qk_rope_head_dim` elements, shared by every head. A decode step
/// multiplies the queries into the latent space (the key up-projection absorbed into q) and the
/// attention's latent output by the value up-projection: per key and head `2·(2·kv_lora_rank +
/// qk_rope_head_dim)` FLOPs. A prefill decompresses keys and values first and attends per head
/// at `2·(qk_nope + qk_rope + v_head_dim)` FLOPs a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mla {
    /// Rank of the query's down-projection (0: queries projected directly, as DeepSeek-V2-Lite).
    #[serde(default)]
    pub q_lora_rank: u64,
    /// Rank of the compressed key-value latent.
    pub kv_lora_rank: u64,
    /// Per head, the query and key width without RoPE.
    pub qk_nope_head_dim: u64,
    /// Per head, the width RoPE turns (its key part is shared by the heads and cached).
    pub qk_rope_head_dim: u64,
    /// Per head, the value width.
    pub v_head_dim: u64,
}

/// Shared experts and dense layers of a mixture of experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoeLayout {
    /// Experts every token passes through besides its routed ones, each `ffn` wide
    /// (`n_shared_experts`).
    pub shared_experts: u64,
    /// The first this-many layers have one dense MLP instead of experts
    /// (`first_k_dense_replace`).
    pub dense_layers: u64,
    /// The dense layers' MLP width (`intermediate_size`), where `dense_layers` > 0.
    pub dense_ffn: u64,
}

fn one() -> u64 {
    1
}

fn default_rms_eps() -> f64 {
    1e-5
}

fn default_theta() -> f64 {
    10_000.0
}

/// Rotary position embedding (RoPE): pair `f` of a head of width `d` turns by
/// `position · θ^(−2f/d)`, the frequencies optionally rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rope {
    /// The base θ (`rope_theta`; 10000 for Llama 2, 500000 for Llama 3).
    #[serde(default = "default_theta")]
    pub theta: f64,
    /// Llama 3's frequency scaling (`rope_scaling` with `rope_type = "llama3"`), if any.
    #[serde(default)]
    pub scaling: Option<RopeScaling>,
}

impl Default for Rope {
    fn default() -> Self {
        Rope {
            theta: default_theta(),
            scaling: None,
        }
    }
}

/// Which elements of a head RoPE turns together. This is a property of a checkpoint's layout,
/// not of the model: the same model is stored both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum RopePairing {
    /// Hugging Face's rotate-half: element `f` with `f + d/2`.
    Halves,
    /// Adjacent elements `2f` and `2f + 1`: Meta's original layout, and what llama.cpp's
    /// converter writes into GGUF files of the llama architecture (it permutes q and k).
    Interleaved,
}

/// Llama 3's RoPE frequency scaling: wavelengths longer than
/// `original_context / low_freq_factor` are stretched by `factor`, those shorter than
/// `original_context / high_freq_factor` kept, and those between interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    /// How much the long wavelengths are stretched (8 for Llama 3.1, 32 for Llama 3.2).
    pub factor: f64,
    /// Wavelengths past `original_context / low_freq_factor` are scaled fully.
    pub low_freq_factor: f64,
    /// Wavelengths below `original_context / high_freq_factor` are not scaled.
    pub high_freq_factor: f64,
    /// The context length the model was first trained at (8192 for Llama 3).
    pub original_context: u64,
}

/// Parameter counts of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Every parameter.
    pub total: u64,
    /// Parameters one token touches (all but the unused experts).
    pub active: u64,
    /// Embedding (and untied output head) parameters, included in both counts.
    pub embedding: u64,
}

impl Model {
    /// Checks the shape is self-consistent.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| CostError::InvalidModel {
            name: self.name.clone(),
            reason,
        };
        for (field, v) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("ffn", self.ffn),
            ("vocab", self.vocab),
            ("experts", self.experts),
            ("active_experts", self.active_experts),
        ] {
            if v == 0 {
                return Err(bad(format!("{field} must be at least 1")));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(bad(format!(
                "heads ({}) must be a multiple of kv_heads ({})",
                self.heads, self.kv_heads
            )));
        }
        if !(self.rope.theta.is_finite() && self.rope.theta > 1.0) {
            return Err(bad(format!(
                "rope.theta must be a finite number above 1, not {}",
                self.rope.theta
            )));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(bad(format!(
                "rms_eps must be a positive finite number, not {}",
                self.rms_eps
            )));
        }
        if let Some(s) = self.rope.scaling {
            let ok = s.factor.is_finite()
                && s.factor >= 1.0
                && s.low_freq_factor.is_finite()
                && s.high_freq_factor.is_finite()
                && s.low_freq_factor > 0.0
                && s.high_freq_factor > s.low_freq_factor
                && s.original_context > 0;
            if !ok {
                return Err(bad(format!(
                    "rope.scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and \
                     original_context >= 1 (got {s:?})"
                )));
            }
        }
        self.arch.check(self.head_dim).map_err(bad)?;
        if self.sliding_window == Some(0) {
            return Err(bad("sliding_window must be at least 1".into()));
        }
        if let Some(a) = self.mla
            && (a.kv_lora_rank == 0
                || a.qk_nope_head_dim + a.qk_rope_head_dim == 0
                || a.v_head_dim == 0)
        {
            return Err(bad(format!(
                "mla needs kv_lora_rank, qk_nope_head_dim + qk_rope_head_dim and v_head_dim of at \
                 least 1 (got {a:?})"
            )));
        }
        if self.moe != MoeLayout::default() && self.experts <= 1 {
            return Err(bad(
                "moe.shared_experts and moe.dense_layers need experts > 1".into(),
            ));
        }
        if self.moe.dense_layers >= self.layers && self.moe.dense_layers > 0 {
            return Err(bad(format!(
                "moe.dense_layers ({}) must leave at least one of the {} layers to the experts",
                self.moe.dense_layers, self.layers
            )));
        }
        if self.moe.dense_layers > 0 && self.moe.dense_ffn == 0 {
            return Err(bad(
                "moe.dense_layers needs moe.dense_ffn, the dense MLP's width".into(),
            ));
        }
        if self.active_experts > self.experts {
            return Err(bad(format!(
                "active_experts ({}) exceeds experts ({})",
                self.active_experts, self.experts
            )));
        }
        Ok(())
    }

    /// The attention window of layer `l`: the model's sliding window, except on the global
    /// layers of a pattern ([`Arch::global_every`]); `None` attends to the whole context.
    pub fn layer_window(&self, l: u64) -> Option<u64> {
        match self.arch.global_every {
            Some(n) if (l + 1).is_multiple_of(n) => None,
            _ => self.sliding_window,
        }
    }

    /// RoPE of layer `l`: the sliding-window layers' own base (and no scaling) where
    /// [`Arch::local_rope_theta`] is set, else the model's.
    pub fn layer_rope(&self, l: u64) -> Rope {
        match (self.layer_window(l), self.arch.local_rope_theta) {
            (Some(_), Some(theta)) => Rope {
                theta,
                scaling: None,
            },
            _ => self.rope,
        }
    }

    /// Whether layer `l` uses the model's RoPE (not the sliding-window layers' own).
    pub fn layer_rope_is_global(&self, l: u64) -> bool {
        self.layer_window(l).is_none() || self.arch.local_rope_theta.is_none()
    }

    /// The elements of each head RoPE turns.
    pub fn rotary_dims(&self) -> u64 {
        self.arch.rotary_dims.unwrap_or(self.head_dim)
    }

    /// The factor on q·k: the architecture's, else 1/√head_dim.
    pub fn query_scale(&self) -> f64 {
        self.arch
            .query_scale
            .unwrap_or(1.0 / (self.head_dim as f64).sqrt())
    }

    /// Keys a token at 1-based `position` attends to, averaged over the layers (each its
    /// window or the whole context).
    pub fn attended(&self, position: u64) -> f64 {
        let sum: u64 = (0..self.layers)
            .map(|l| self.layer_window(l).map_or(position, |w| position.min(w)))
            .sum();
        sum as f64 / self.layers.max(1) as f64
    }
}

mod hf;
mod params;

#[cfg(test)]
mod tests;
