//! What a decoder block adds to Llama's, as data: the GPU decoder and the f64 reference both
//! read it (each with its own code), the cost model reads the attention pattern. Llama, Mistral,
//! SmolLM2 and Qwen2 are the default (every field off); the loaders of pertoken-model fill it in
//! per architecture (Gemma 3, Qwen3, Phi-3).

use serde::Deserialize;

/// A gated MLP's activation of its gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `z / (1 + e^−z)`: SwiGLU (Llama, Qwen, Phi-3).
    #[default]
    Silu,
    /// `0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))`: GeGLU (Gemma).
    GeluTanh,
}

/// The architecture's additions to a pre-norm Llama block, each off by default.
///
/// One layer `l` computes, for the residual stream `x`:
/// ```text
/// h = rms_norm(x, attn_norm)
/// q, k, v = h·wqᵀ, h·wkᵀ, h·wvᵀ
/// q, k = rms_norm(q_head, q_norm), rms_norm(k_head, k_norm)   per head   (qk_norm)
/// q, k = rope(q, k) over the first rotary_dims of each head, base of layer l (· rope_attn_factor)
/// a = attention(q · query_scale, cache, window layer_window(l))·woᵀ
/// x = x + rms_norm(a, post_attn_norm)                               (post_norms; else x + a)
/// h = rms_norm(x, ffn_norm)
/// f = (activation(h·gateᵀ) · h·upᵀ)·downᵀ
/// x = x + rms_norm(f, post_ffn_norm)                                (post_norms; else x + f)
/// ```
/// with `x = embed[token] · √hidden` where `embed_scale`, and logits `c·tanh(l / c)` where
/// `logit_softcap` is `c`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Arch {
    /// Gemma's sandwich: the attention's and the MLP's outputs are RMS-normed (their own
    /// weights) before the residual add.
    pub post_norms: bool,
    /// Each head of q and of k is RMS-normed (weights `[head_dim]`) before RoPE (Gemma 3, Qwen3).
    pub qk_norm: bool,
    /// The token embedding is multiplied by √hidden (Gemma).
    pub embed_scale: bool,
    /// The MLP gate's activation.
    pub activation: Activation,
    /// The factor on q·k (1/√head_dim when absent).
    pub query_scale: Option<f64>,
    /// With `Model::sliding_window`: every this-many-th layer (layers `n−1, 2n−1, …`) attends
    /// to the whole context and the others to the window (Gemma 3: 6). Absent: every layer
    /// uses the window.
    pub global_every: Option<u64>,
    /// RoPE base of the sliding-window layers (Gemma 3: 10000), where it differs from
    /// `rope.theta`; those layers take no frequency scaling.
    pub local_rope_theta: Option<f64>,
    /// Final logits are soft-capped: `c·tanh(logit / c)`.
    pub logit_softcap: Option<f64>,
    /// RoPE turns only the first this-many elements of each head (Phi-3's partial rotary);
    /// absent: all of `head_dim`.
    pub rotary_dims: Option<u64>,
    /// The turned elements are multiplied by this (Phi-3 LongRoPE's attention factor,
    /// llama.cpp's `rope.scaling.attn_factor`).
    pub rope_attn_factor: Option<f64>,
}

impl Arch {
    /// Checks the values against a head width; the reason names the field.
    pub fn check(&self, head_dim: u64) -> std::result::Result<(), String> {
        let positive = |name: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(format!("{name} must be a positive finite number, not {x}"))
            }
            _ => Ok(()),
        };
        positive("arch.query_scale", self.query_scale)?;
        positive("arch.logit_softcap", self.logit_softcap)?;
        positive("arch.rope_attn_factor", self.rope_attn_factor)?;
        if let Some(t) = self.local_rope_theta
            && !(t.is_finite() && t > 1.0)
        {
            return Err(format!(
                "arch.local_rope_theta must be a finite number above 1, not {t}"
            ));
        }
        if self.global_every == Some(0) {
            return Err("arch.global_every must be at least 1".into());
        }
        if let Some(r) = self.rotary_dims
            && (r == 0 || r % 2 != 0 || r > head_dim)
        {
            return Err(format!(
                "arch.rotary_dims {r} must be even, at least 2 and at most head_dim {head_dim}"
            ));
        }
        Ok(())
    }
}
