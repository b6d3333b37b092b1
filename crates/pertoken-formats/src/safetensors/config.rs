//! `config.json` of a Llama-family Hugging Face checkpoint (Llama, SmolLM, Mistral, Qwen2).

use std::path::Path;

use serde::Deserialize;

use crate::error::{FormatError, Result};

/// RoPE frequency scaling (`rope_scaling` in config.json).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        /// The frequency divisor.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained at.
        original_max_position_embeddings: u64,
    },
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Another kind (`dynamic`, `yarn`, ...), not implemented: a decoder should refuse it.
    Other {
        /// Its `rope_type`.
        rope_type: String,
    },
}

/// The fields of a Llama-family config.json that a decoder needs, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `architectures`, e.g. `["LlamaForCausalLM"]`.
    pub architectures: Vec<String>,
    /// `model_type`, e.g. "llama", "qwen2" (empty if absent).
    pub model_type: String,
    /// Model width.
    pub hidden_size: u64,
    /// MLP width.
    pub intermediate_size: u64,
    /// Number of decoder layers.
    pub num_hidden_layers: u64,
    /// Query heads.
    pub num_attention_heads: u64,
    /// Key/value heads (default: `num_attention_heads`).
    pub num_key_value_heads: u64,
    /// Per-head width (default: `hidden_size / num_attention_heads`).
    pub head_dim: u64,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base (default 10000).
    pub rope_theta: f64,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// Whether the LM head reuses the embedding (default false).
    pub tie_word_embeddings: bool,
    /// Longest context.
    pub max_position_embeddings: u64,
    /// Whether q/k/v projections have biases (`attention_bias`, or model_type "qwen2").
    pub qkv_bias: bool,
    /// `bos_token_id`, if given.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` (one or a list), possibly empty.
    pub eos_token_ids: Vec<u32>,
    /// `torch_dtype`, e.g. "bfloat16", if given.
    pub torch_dtype: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawScaling {
    #[serde(alias = "type")]
    rope_type: String,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<u64>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: String,
    hidden_size: u64,
    intermediate_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    num_key_value_heads: Option<u64>,
    head_dim: Option<u64>,
    vocab_size: u64,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawScaling>,
    #[serde(default)]
    tie_word_embeddings: bool,
    max_position_embeddings: u64,
    #[serde(default)]
    attention_bias: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    torch_dtype: Option<String>,
}

impl LlamaConfig {
    /// Reads and checks `path` (a config.json).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, "read", e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and checks config.json text; `file` names it in messages.
    pub fn from_json(text: &str, file: &str) -> Result<Self> {
        let bad = |reason: String| FormatError::Config {
            file: file.to_owned(),
            what: "config.json",
            reason,
        };
        let raw: Raw = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        for (name, v) in [
            ("hidden_size", raw.hidden_size),
            ("intermediate_size", raw.intermediate_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", heads),
            ("num_key_value_heads", kv_heads),
            ("vocab_size", raw.vocab_size),
            ("max_position_embeddings", raw.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is 0")));
            }
        }
        if !heads.is_multiple_of(kv_heads) {
            return Err(bad(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            )));
        }
        let head_dim = match raw.head_dim {
            Some(0) => return Err(bad("head_dim is 0".into())),
            Some(d) => d,
            None if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
            None => {
                return Err(bad(format!(
                    "hidden_size {} is not a multiple of num_attention_heads {heads}, and no \
                     head_dim is given",
                    raw.hidden_size
                )));
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(bad(format!("{name} is {v}")))
            }
        };
        let rms_norm_eps = positive("rms_norm_eps", raw.rms_norm_eps)?;
        let rope_theta = positive("rope_theta", raw.rope_theta.unwrap_or(10000.0))?;
        let rope_scaling = match raw.rope_scaling {
            None => None,
            Some(s) => scaling(s).map_err(|r| bad(format!("rope_scaling: {r}")))?,
        };
        let eos_token_ids = match raw.eos_token_id {
            None => vec![],
            Some(OneOrMany::One(id)) => vec![id],
            Some(OneOrMany::Many(ids)) => ids,
        };
        Ok(Self {
            qkv_bias: raw.attention_bias || raw.model_type == "qwen2",
            architectures: raw.architectures,
            model_type: raw.model_type,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            vocab_size: raw.vocab_size,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: raw.tie_word_embeddings,
            max_position_embeddings: raw.max_position_embeddings,
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
            torch_dtype: raw.torch_dtype,
        })
    }
}

fn scaling(s: RawScaling) -> Result<Option<RopeScaling>, String> {
    let need = |name: &str, v: Option<f64>| {
        v.filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("rope_type {:?} needs a positive {name}", s.rope_type))
    };
    Ok(Some(match s.rope_type.as_str() {
        "default" => return Ok(None),
        "llama3" => {
            let low = need("low_freq_factor", s.low_freq_factor)?;
            let high = need("high_freq_factor", s.high_freq_factor)?;
            if high <= low {
                return Err(format!(
                    "high_freq_factor {high} is not above low_freq_factor {low}"
                ));
            }
            RopeScaling::Llama3 {
                factor: need("factor", s.factor)?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: s
                    .original_max_position_embeddings
                    .filter(|&n| n > 0)
                    .ok_or("rope_type \"llama3\" needs original_max_position_embeddings")?,
            }
        }
        "linear" => RopeScaling::Linear {
            factor: need("factor", s.factor)?,
        },
        other => RopeScaling::Other {
            rope_type: other.to_owned(),
        },
    }))
}
