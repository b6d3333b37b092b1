//! Weights from Hugging Face safetensors (one file or shards) with the model's `config.json`:
//! f32 and f16 uploaded as stored, bf16 converted to f16.

use std::path::Path;

use pertoken_cost::{Model, Rope, RopePairing, RopeScaling};
use pertoken_formats::safetensors::{self as st, Floats, LlamaConfig, Safetensors};
use pertoken_gpu::DType;

use super::{HostTensor, Role, WeightSource};
use crate::{ModelError, ModelSpec, Result};

/// A Hugging Face Llama-family checkpoint: `config.json` beside `model.safetensors` (or its
/// shards and index).
#[derive(Debug)]
pub struct SafetensorsWeights {
    files: Safetensors,
    spec: ModelSpec,
    path: String,
}

impl SafetensorsWeights {
    /// Opens the checkpoint in `dir` (a folder holding `config.json` and the weights), or the
    /// weights file `path` with the `config.json` beside it.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsWeights> {
        let path = path.as_ref();
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let config = LlamaConfig::open(dir.join("config.json"))?;
        let files = Safetensors::open(path)?;
        let name = dir.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        // What the block adds, by model_type: Llama's block for llama, mistral and qwen2
        // (biases), q/k norms for qwen3; others (Gemma's norms are stored as w, not 1 + w, and
        // its block differs) are refused rather than run as Llama's.
        let arch = match config.model_type.as_str() {
            "" | "llama" | "mistral" | "qwen2" => pertoken_cost::Arch::default(),
            "qwen3" => pertoken_cost::Arch {
                qk_norm: true,
                ..Default::default()
            },
            other => {
                return Err(ModelError::Unsupported {
                    model: name,
                    reason: format!(
                        "model_type {other:?} in config.json: safetensors checkpoints of llama, \
                         mistral, qwen2 and qwen3 run; for Gemma 3 and Phi-3 use a GGUF file \
                         (--gguf)"
                    ),
                });
            }
        };
        let scaling = match &config.rope_scaling {
            None => None,
            Some(st::RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => Some(RopeScaling {
                factor: *factor,
                low_freq_factor: *low_freq_factor,
                high_freq_factor: *high_freq_factor,
                original_context: *original_max_position_embeddings,
            }),
            Some(other) => {
                return Err(ModelError::Unsupported {
                    model: name,
                    reason: format!(
                        "rope_scaling {other:?} in config.json: only Llama 3's (rope_type \
                         \"llama3\") is implemented"
                    ),
                });
            }
        };
        let shape = Model {
            name,
            source: format!("config.json in {}", dir.display()),
            layers: config.num_hidden_layers,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            ffn: config.intermediate_size,
            vocab: config.vocab_size,
            tied_embeddings: config.tie_word_embeddings
                || files.tensor(&hf_tensor_name(Role::Output)).is_err(),
            qkv_bias: config.qkv_bias,
            experts: 1,
            active_experts: 1,
            sliding_window: None,
            rope: Rope {
                theta: config.rope_theta,
                scaling,
            },
            rms_eps: config.rms_norm_eps,
            arch,
            mla: None,
            moe: Default::default(),
        };
        let w = SafetensorsWeights {
            files,
            // Hugging Face's q and k are laid out for rotate-half.
            spec: ModelSpec::new(shape, RopePairing::Halves),
            path: path.display().to_string(),
        };
        w.spec.check()?;
        for role in Role::all(&w.spec) {
            w.stored(role)?;
        }
        Ok(w)
    }

    fn get(&self, role: Role) -> Result<Option<st::TensorRef<'_>>> {
        if role == Role::Output && self.spec.shape.tied_embeddings {
            return Ok(None);
        }
        let want: Vec<u64> = role.shape(&self.spec).iter().map(|&d| d as u64).collect();
        Ok(Some(
            self.files.tensor_checked(&hf_tensor_name(role), &want)?,
        ))
    }
}

/// The Hugging Face name of a weight.
pub fn hf_tensor_name(role: Role) -> String {
    let layer = |l: usize, s: &str| format!("model.layers.{l}.{s}");
    match role {
        Role::Embed => "model.embed_tokens.weight".into(),
        Role::Output => "lm_head.weight".into(),
        Role::FinalNorm => "model.norm.weight".into(),
        Role::AttnNorm(l) => layer(l, "input_layernorm.weight"),
        Role::Q(l) => layer(l, "self_attn.q_proj.weight"),
        Role::K(l) => layer(l, "self_attn.k_proj.weight"),
        Role::V(l) => layer(l, "self_attn.v_proj.weight"),
        Role::QBias(l) => layer(l, "self_attn.q_proj.bias"),
        Role::KBias(l) => layer(l, "self_attn.k_proj.bias"),
        Role::VBias(l) => layer(l, "self_attn.v_proj.bias"),
        Role::O(l) => layer(l, "self_attn.o_proj.weight"),
        Role::FfnNorm(l) => layer(l, "post_attention_layernorm.weight"),
        Role::Gate(l) => layer(l, "mlp.gate_proj.weight"),
        Role::Up(l) => layer(l, "mlp.up_proj.weight"),
        Role::Down(l) => layer(l, "mlp.down_proj.weight"),
        Role::QNorm(l) => layer(l, "self_attn.q_norm.weight"),
        Role::KNorm(l) => layer(l, "self_attn.k_norm.weight"),
        // Gemma's names (its pre-MLP norm is `pre_feedforward_layernorm`, and its
        // `post_attention_layernorm` is this post-norm): the safetensors loader takes Llama-
        // and Qwen2-style configs only, which have neither.
        Role::PostAttnNorm(l) => layer(l, "post_attention_norm.weight"),
        Role::PostFfnNorm(l) => layer(l, "post_feedforward_layernorm.weight"),
    }
}

impl WeightSource for SafetensorsWeights {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn tensor(&self, role: Role) -> Result<Option<HostTensor<'_>>> {
        let Some(t) = self.get(role)? else {
            return Ok(None);
        };
        let (dtype, bytes) = match t.to_f16_or_f32()? {
            Floats::F32(b) => (DType::F32, b),
            Floats::F16(b) => (DType::F16, b),
        };
        Ok(Some(HostTensor {
            name: format!("{} ({})", t.name, t.file),
            dtype,
            shape: t.shape.iter().map(|&d| d as usize).collect(),
            bytes,
        }))
    }

    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        Ok(self.get(role)?.map(|t| {
            let dtype = if t.dtype == st::Dtype::F32 {
                DType::F32
            } else {
                DType::F16
            };
            (dtype, t.shape.iter().map(|&d| d as usize).collect())
        }))
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.spec.shape.name, self.path)
    }
}
