//! Hugging Face `config.json` import.

use super::*;

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

/// DeepSeek's latent attention, where the config has `kv_lora_rank`.
fn mla(v: &serde_json::Value) -> Option<Mla> {
    let f = |k: &str| v.get(k).and_then(|x| x.as_u64());
    Some(Mla {
        q_lora_rank: f("q_lora_rank").unwrap_or(0),
        kv_lora_rank: f("kv_lora_rank")?,
        qk_nope_head_dim: f("qk_nope_head_dim")?,
        qk_rope_head_dim: f("qk_rope_head_dim")?,
        v_head_dim: f("v_head_dim")?,
    })
}

/// Every how-many-th layer attends to the whole context where the others keep a window:
/// Gemma 3's `sliding_window_pattern`, or a `layer_types` list (gpt-oss) whose full-attention
/// layers fall at `n−1, 2n−1, …`.
fn global_every(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.get("sliding_window_pattern").and_then(|x| x.as_u64()) {
        return Some(n);
    }
    let types = v.get("layer_types")?.as_array()?;
    let full: Vec<usize> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| t.as_str() == Some("full_attention"))
        .map(|(i, _)| i)
        .collect();
    let n = full.first()? + 1;
    let periodic = (0..types.len()).all(|i| full.contains(&i) == (i + 1).is_multiple_of(n));
    (periodic && n < types.len() + 1).then_some(n as u64)
}

impl Model {
    /// Imports a Hugging Face `config.json` (llama, mistral, qwen2, mixtral and
    /// deepseek-style keys). `name` names the result.
    pub fn from_hf_config(name: &str, json: &str) -> Result<Model> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| CostError::Parse {
            file: format!("{name} (config.json)"),
            line: e.line(),
            message: e.to_string(),
        })?;
        // Multimodal configs (Gemma 3) keep the decoder's shape under text_config.
        let v = v.get("text_config").cloned().unwrap_or(v);
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
        let mla = mla(&v);
        let head_dim = get(&["head_dim"])
            .or(mla.map(|a| a.qk_nope_head_dim + a.qk_rope_head_dim))
            .unwrap_or(hidden / heads);
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
        let moe = if experts > 1 {
            let dense_layers = get(&["first_k_dense_replace"]).unwrap_or(0);
            MoeLayout {
                shared_experts: get(&["n_shared_experts", "num_shared_experts"]).unwrap_or(0),
                dense_layers,
                dense_ffn: if dense_layers > 0 {
                    get(&["intermediate_size"]).unwrap_or(0)
                } else {
                    0
                },
            }
        } else {
            MoeLayout::default()
        };
        let arch = Arch {
            global_every: global_every(&v),
            ..Arch::default()
        };
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
            arch,
            mla,
            moe,
        };
        m.validate()?;
        Ok(m)
    }
}
