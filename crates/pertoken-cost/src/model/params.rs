//! Parameter counts, KV-cache sizes and attention FLOPs per key, from the shape.

use super::{Model, Params};

impl Model {
    /// Attention parameters of one layer: q, k, v, o projections (and q/k/v biases); with
    /// [`Mla`](super::Mla) the query's down- and up-projections, the key-value latent's
    /// down-projection (with the shared RoPE key), its up-projection to keys and values, the
    /// output projection and the two latent norms.
    pub fn attention_params(&self) -> u64 {
        if let Some(a) = self.mla {
            let qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
            let q = match a.q_lora_rank {
                0 => self.hidden * self.heads * qk,
                r => self.hidden * r + r + r * self.heads * qk,
            };
            let kv_a = self.hidden * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank;
            let kv_b = a.kv_lora_rank * self.heads * (a.qk_nope_head_dim + a.v_head_dim);
            let o = self.heads * a.v_head_dim * self.hidden;
            return q + kv_a + kv_b + o;
        }
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        self.hidden * q + 2 * self.hidden * kv + q * self.hidden + bias
    }

    /// Parameters of one expert's gated MLP (or a dense model's): gate, up and down projections.
    pub fn mlp_params(&self) -> u64 {
        3 * self.hidden * self.ffn
    }

    /// Layers whose MLP is a set of routed experts (0 for a dense model).
    pub fn moe_layers(&self) -> u64 {
        if self.experts > 1 {
            self.layers - self.moe.dense_layers
        } else {
            0
        }
    }

    /// MLP parameters every token passes through, all layers: a dense model's MLPs, or a mixture
    /// of experts' dense layers and shared experts.
    pub fn dense_mlp_params(&self) -> u64 {
        if self.experts <= 1 {
            return self.layers * self.mlp_params();
        }
        self.moe.dense_layers * 3 * self.hidden * self.moe.dense_ffn
            + self.moe_layers() * self.moe.shared_experts * self.mlp_params()
    }

    /// Router parameters, all layers (0 for a dense model).
    pub fn router_params(&self) -> u64 {
        self.moe_layers() * self.hidden * self.experts
    }

    /// Routed experts' parameters a token touches, all layers (0 for a dense model).
    pub fn active_expert_params(&self) -> u64 {
        self.moe_layers() * self.active_experts * self.mlp_params()
    }

    /// Norm weights of one layer: the attention's and the MLP's input norms, Gemma's two
    /// output norms ([`Arch::post_norms`](crate::Arch)) and the per-head q and k norms
    /// ([`Arch::qk_norm`](crate::Arch)).
    pub fn norm_params(&self) -> u64 {
        let post = if self.arch.post_norms {
            2 * self.hidden
        } else {
            0
        };
        let qk = if self.arch.qk_norm {
            2 * self.head_dim
        } else {
            0
        };
        2 * self.hidden + post + qk
    }

    /// Parameter counts, total and active.
    pub fn params(&self) -> Params {
        let norms = self.norm_params();
        let fixed = self.layers * (self.attention_params() + norms)
            + self.dense_mlp_params()
            + self.router_params();
        let embedding = self.vocab * self.hidden * if self.tied_embeddings { 1 } else { 2 };
        let final_norm = self.hidden;
        let routed = self.moe_layers() * self.mlp_params();
        Params {
            total: embedding + final_norm + fixed + routed * self.experts,
            active: embedding + final_norm + fixed + routed * self.active_experts,
            embedding,
        }
    }

    /// Heads of cache a layer keeps per token: `kv_heads`, or 1 with [`Mla`](super::Mla)'s one
    /// latent (which tensor parallelism must then hold on every device).
    pub fn kv_cache_heads(&self) -> u64 {
        if self.mla.is_some() { 1 } else { self.kv_heads }
    }

    /// Cache elements one layer keeps per token: K and V, `2·kv_heads·head_dim`, or MLA's latent
    /// and shared RoPE key, `kv_lora_rank + qk_rope_head_dim`.
    pub fn kv_elements_per_layer(&self) -> u64 {
        match self.mla {
            Some(a) => a.kv_lora_rank + a.qk_rope_head_dim,
            None => 2 * self.kv_heads * self.head_dim,
        }
    }

    /// Bytes of cache per token, all layers, at `bytes_per_element`: what a token's keys and
    /// values take when written, and per key read.
    pub fn kv_bytes_per_token(&self, bytes_per_element: f64) -> f64 {
        (self.layers * self.kv_elements_per_layer()) as f64 * bytes_per_element
    }

    /// Bytes of cache one sequence of `context` tokens holds: each layer its whole context, or
    /// only its window where it has one (sliding-window layers free what slides out, as vLLM's
    /// and SGLang's hybrid allocators and pertoken's window pool do).
    pub fn kv_bytes_per_sequence(&self, context: u64, bytes_per_element: f64) -> f64 {
        let held: u64 = (0..self.layers)
            .map(|l| self.layer_window(l).map_or(context, |w| context.min(w)))
            .sum();
        (held * self.kv_elements_per_layer()) as f64 * bytes_per_element
    }

    /// Attention FLOPs per layer for one query token and one key: QKᵀ and PV over every head.
    /// A decode token (`absorbed`) attends in MLA's latent space; a prefill token over the
    /// decompressed heads. Without MLA the two are `4·heads·head_dim`.
    pub fn attention_flops_per_key(&self, absorbed: bool) -> f64 {
        let per_head = match self.mla {
            Some(a) if absorbed => 2 * (2 * a.kv_lora_rank + a.qk_rope_head_dim),
            Some(a) => 2 * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim),
            None => 4 * self.head_dim,
        };
        (self.heads * per_head) as f64
    }
}
