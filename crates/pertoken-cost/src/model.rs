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

/// The `rope_scaling` of a config.json, where it is Llama 3's kind.
fn rope_scaling(v: &serde_json::Value) -> Option<RopeScaling> {
    let r = v.get("rope_scaling")?;
    let kind = r.get("rope_type").or_else(|| r.get("type"))?.as_str()?;
    if kind != "llama3" {
        return None;
    }
    let f = |k: &str| r.get(k).and_then(|x| x.as_f64());
    Some(RopeScaling {
        factor: f("factor")?,
        low_freq_factor: f("low_freq_factor")?,
        high_freq_factor: f("high_freq_factor")?,
        original_context: r.get("original_max_position_embeddings")?.as_u64()?,
    })
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

    /// Attention parameters of one layer: q, k, v, o projections (and q/k/v biases).
    pub fn attention_params(&self) -> u64 {
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        self.hidden * q + 2 * self.hidden * kv + q * self.hidden + bias
    }

    /// Parameters of one expert's gated MLP: gate, up and down projections.
    pub fn mlp_params(&self) -> u64 {
        3 * self.hidden * self.ffn
    }

    /// Parameter counts, total and active.
    pub fn params(&self) -> Params {
        let router = if self.experts > 1 {
            self.hidden * self.experts
        } else {
            0
        };
        let norms = 2 * self.hidden;
        let per_layer_fixed = self.attention_params() + router + norms;
        let embedding = self.vocab * self.hidden * if self.tied_embeddings { 1 } else { 2 };
        let final_norm = self.hidden;
        let total = embedding
            + final_norm
            + self.layers * (per_layer_fixed + self.experts * self.mlp_params());
        let active = embedding
            + final_norm
            + self.layers * (per_layer_fixed + self.active_experts * self.mlp_params());
        Params {
            total,
            active,
            embedding,
        }
    }

    /// Bytes of K and V cache per token, all layers, at `bytes_per_element`.
    pub fn kv_bytes_per_token(&self, bytes_per_element: f64) -> f64 {
        (2 * self.layers * self.kv_heads * self.head_dim) as f64 * bytes_per_element
    }

    /// Imports a Hugging Face `config.json` (llama, mistral, qwen2, mixtral and
    /// deepseek-style keys). `name` names the result.
    pub fn from_hf_config(name: &str, json: &str) -> Result<Model> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| CostError::Parse {
            file: format!("{name} (config.json)"),
            line: e.line(),
            message: e.to_string(),
        })?;
        let get = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_u64()));
        let need = |keys: &[&str]| {
            get(keys).ok_or_else(|| CostError::InvalidModel {
                name: name.to_owned(),
                reason: format!("config.json has none of {keys:?}"),
            })
        };
        let hidden = need(&["hidden_size", "d_model", "n_embd"])?;
        let heads = need(&["num_attention_heads", "n_head"])?;
        let kv_heads = get(&["num_key_value_heads"]).unwrap_or(heads);
        let head_dim = get(&["head_dim"]).unwrap_or(hidden / heads);
        let experts = get(&["num_local_experts", "n_routed_experts", "num_experts"]).unwrap_or(1);
        let active_experts = if experts > 1 {
            get(&["num_experts_per_tok"]).unwrap_or(1)
        } else {
            1
        };
        let ffn = if experts > 1 {
            get(&["moe_intermediate_size"]).or_else(|| get(&["intermediate_size"]))
        } else {
            get(&["intermediate_size", "ffn_dim", "n_inner"])
        }
        .ok_or_else(|| CostError::InvalidModel {
            name: name.to_owned(),
            reason: "config.json has no intermediate_size".into(),
        })?;
        let model_type = v.get("model_type").and_then(|t| t.as_str()).unwrap_or("");
        let m = Model {
            name: name.to_owned(),
            source: format!("imported from a Hugging Face config.json (model_type {model_type:?})"),
            layers: need(&["num_hidden_layers", "n_layer", "num_layers"])?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            ffn,
            vocab: need(&["vocab_size"])?,
            tied_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|t| t.as_bool())
                .unwrap_or(false),
            qkv_bias: v
                .get("attention_bias")
                .and_then(|t| t.as_bool())
                .unwrap_or(model_type == "qwen2"),
            experts,
            active_experts,
            sliding_window: v
                .get("sliding_window")
                .and_then(|t| t.as_u64())
                .filter(|_| v.get("use_sliding_window").and_then(|u| u.as_bool()) != Some(false)),
            rope: Rope {
                theta: v
                    .get("rope_theta")
                    .and_then(|t| t.as_f64())
                    .unwrap_or_else(default_theta),
                scaling: rope_scaling(&v),
            },
            rms_eps: v
                .get("rms_norm_eps")
                .and_then(|t| t.as_f64())
                .unwrap_or_else(default_rms_eps),
            arch: Arch::default(),
        };
        m.validate()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn model(name: &str) -> Model {
        Catalog::builtin().model(name).expect("built in").clone()
    }

    #[test]
    fn parameter_counts_match_the_published_ones() {
        // Published counts: the model cards' safetensors parameter totals.
        for (name, published) in [
            ("llama-3.2-1b", 1_235_814_400u64),
            ("llama-3.2-3b", 3_212_749_824),
            ("llama-3.1-8b", 8_030_261_248),
            ("llama-3.1-70b", 70_553_706_496),
            ("mistral-7b", 7_241_732_096),
            ("qwen2.5-7b", 7_615_616_512),
            ("mixtral-8x7b", 46_702_792_704),
        ] {
            assert_eq!(model(name).params().total, published, "{name}");
        }
        // Mixtral's card: 12.9B active parameters per token.
        let active = model("mixtral-8x7b").params().active as f64;
        assert!((active / 1e9 - 12.9).abs() < 0.05, "{active}");
    }

    #[test]
    fn tiny_model_by_hand() {
        let m = model("tiny");
        // Attention: q 64·64 + k 64·32 + v 64·32 + o 64·64 = 12288. MLP: 3·64·128 = 24576.
        // Norms 2·64. Per layer 36992; two layers 73984. Embedding and head 2·1000·64 = 128000.
        // Final norm 64. Total 202048.
        assert_eq!(m.attention_params(), 12288);
        assert_eq!(m.mlp_params(), 24576);
        assert_eq!(m.params().total, 202_048);
        assert_eq!(m.params().active, 202_048);
        // KV: 2 (K and V) · 2 layers · 2 heads · 16 dims · 2 bytes = 256 bytes per token.
        assert_eq!(m.kv_bytes_per_token(2.0), 256.0);
    }

    #[test]
    fn llama_3_1_8b_kv_cache_is_128_kib_per_token() {
        // 2 · 32 layers · 8 KV heads · 128 · 2 bytes = 131072 bytes; 8K tokens = 1 GiB in f16.
        let m = model("llama-3.1-8b");
        assert_eq!(m.kv_bytes_per_token(2.0), 131_072.0);
        assert_eq!(m.kv_bytes_per_token(2.0) * 8192.0, (1u64 << 30) as f64);
    }

    #[test]
    fn hugging_face_configs_import() {
        let llama = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":4096,
            "intermediate_size":14336,"num_attention_heads":32,"num_hidden_layers":32,
            "num_key_value_heads":8,"vocab_size":128256,"tie_word_embeddings":false,
            "model_type":"llama","rope_theta":500000.0}"#;
        let m = Model::from_hf_config("llama-3.1-8b", llama).unwrap();
        assert_eq!(m.params().total, 8_030_261_248);
        assert_eq!(m.head_dim, 128);

        let qwen = r#"{"hidden_size":3584,"intermediate_size":18944,"num_attention_heads":28,
            "num_hidden_layers":28,"num_key_value_heads":4,"vocab_size":152064,
            "tie_word_embeddings":false,"model_type":"qwen2","sliding_window":131072,
            "use_sliding_window":false}"#;
        let m = Model::from_hf_config("qwen2.5-7b", qwen).unwrap();
        assert!(m.qkv_bias);
        assert_eq!(m.sliding_window, None);
        assert_eq!(m.params().total, 7_615_616_512);

        let mixtral = r#"{"hidden_size":4096,"intermediate_size":14336,"num_attention_heads":32,
            "num_hidden_layers":32,"num_key_value_heads":8,"vocab_size":32000,
            "num_local_experts":8,"num_experts_per_tok":2,"model_type":"mixtral",
            "sliding_window":null}"#;
        let m = Model::from_hf_config("mixtral", mixtral).unwrap();
        assert_eq!(m.params().total, 46_702_792_704);

        let err =
            Model::from_hf_config("broken", "{\n\"hidden_size\": 4096,\n oops }").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = Model::from_hf_config("partial", r#"{"hidden_size": 64}"#).unwrap_err();
        assert!(err.to_string().contains("num_attention_heads"), "{err}");
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        let mut m = model("tiny");
        m.kv_heads = 3;
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("multiple of kv_heads")
        );
        let mut m = model("tiny");
        m.active_experts = 2;
        assert!(m.validate().is_err());
    }
}
