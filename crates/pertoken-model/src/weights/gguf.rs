//! Weights from a GGUF file (v2/v3), memory-mapped: tensors are uploaded as stored.

use std::borrow::Cow;
use std::path::Path;

use pertoken_cost::{Model, Rope, RopePairing};
use pertoken_formats::FormatError;
use pertoken_formats::gguf::{GgmlType, Gguf};
use pertoken_gpu::DType;

use super::{HostTensor, Role, WeightSource};
use crate::{ModelError, ModelSpec, Result};

/// The formats the kernels read ([`DType::WEIGHTS`]), as ggml types: each tensor is read in
/// its own.
fn types() -> Vec<GgmlType> {
    DType::WEIGHTS
        .iter()
        .filter_map(|d| GgmlType::named(d.name()))
        .collect()
}

fn dtype_of(t: GgmlType) -> DType {
    DType::weight_named(&t.to_string().to_lowercase()).unwrap_or(DType::F32)
}

/// A GGUF model of the llama (Llama 2/3, Mistral, SmolLM2) or qwen2 architecture.
#[derive(Debug)]
pub struct GgufWeights {
    file: Gguf,
    spec: ModelSpec,
}

impl GgufWeights {
    /// Opens and checks `path`: metadata gives the shape; every tensor the model needs must be
    /// present with that shape and a supported type.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufWeights> {
        GgufWeights::from_gguf(Gguf::open(path)?)
    }

    /// Reads the model in a parsed file.
    pub fn from_gguf(file: Gguf) -> Result<GgufWeights> {
        let arch = file.str_of("general.architecture")?.to_owned();
        let pairing = match arch.as_str() {
            // llama.cpp's converter permutes q and k of the llama architecture so that
            // adjacent elements pair up; qwen2 keeps Hugging Face's halves.
            "llama" => RopePairing::Interleaved,
            "qwen2" => RopePairing::Halves,
            other => {
                return Err(ModelError::Unsupported {
                    model: file.file().to_owned(),
                    reason: format!(
                        "architecture {other:?}: this decoder runs llama (Llama 2/3, Mistral, \
                         SmolLM2) and qwen2 GGUF files"
                    ),
                });
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let heads = file.u64_of(&key("attention.head_count"))?;
        let hidden = file.u64_of(&key("embedding_length"))?;
        let head_dim = match file.u64_opt(&key("attention.key_length"))? {
            Some(d) => d,
            None => file
                .u64_opt(&key("rope.dimension_count"))?
                .unwrap_or(hidden / heads.max(1)),
        };
        let embd = file.tensor("token_embd.weight")?;
        let vocab = match file.u64_opt(&key("vocab_size"))? {
            Some(v) => v,
            None => embd.shape_row_major()[0],
        };
        // Linear and YaRN scaling (rope.scaling.type) are not implemented; Llama 3's scaling
        // comes as per-pair factors (rope_freqs.weight), read below.
        if let Some(kind) = file.get(&key("rope.scaling.type")).and_then(|v| v.as_str())
            && kind != "none"
        {
            return Err(ModelError::Unsupported {
                model: file.file().to_owned(),
                reason: format!(
                    "RoPE scaling of type {kind:?} is not implemented; Llama 3's (stored as \
                     rope_freqs.weight) is"
                ),
            });
        }
        let rope_factors = match file.tensor("rope_freqs.weight") {
            Err(_) => None,
            Ok(_) => {
                let info =
                    file.tensor_checked("rope_freqs.weight", &[head_dim / 2], &[GgmlType::F32])?;
                Some(bytemuck_f32(file.tensor_bytes(info)))
            }
        };
        let name = file
            .get("general.name")
            .and_then(|v| v.as_str())
            .map_or_else(|| file.file().to_owned(), str::to_owned);
        let shape = Model {
            name,
            source: format!("GGUF metadata of {}", file.file()),
            layers: file.u64_of(&key("block_count"))?,
            hidden,
            heads,
            kv_heads: file
                .u64_opt(&key("attention.head_count_kv"))?
                .unwrap_or(heads),
            head_dim,
            ffn: file.u64_of(&key("feed_forward_length"))?,
            vocab,
            tied_embeddings: file.tensor("output.weight").is_err(),
            qkv_bias: file.tensor("blk.0.attn_q.bias").is_ok(),
            experts: file.u64_opt(&key("expert_count"))?.unwrap_or(1).max(1),
            active_experts: file.u64_opt(&key("expert_used_count"))?.unwrap_or(1).max(1),
            sliding_window: None,
            rope: Rope {
                theta: file
                    .f32_opt(&key("rope.freq_base"))?
                    .map_or(10_000.0, decimal),
                scaling: None,
            },
            rms_eps: file
                .f32_opt(&key("attention.layer_norm_rms_epsilon"))?
                .map_or(1e-5, decimal),
        };
        let w = GgufWeights {
            file,
            spec: ModelSpec {
                shape,
                pairing,
                rope_factors,
            },
        };
        w.spec.check()?;
        // Every tensor the model needs, present with its shape and a supported type.
        for role in Role::all(&w.spec) {
            w.info(role)?;
        }
        Ok(w)
    }

    /// The parsed file (its metadata carries the tokenizer).
    pub fn gguf(&self) -> &Gguf {
        &self.file
    }

    fn info(&self, role: Role) -> Result<Option<&pertoken_formats::gguf::TensorInfo>> {
        if role == Role::Output && self.spec.shape.tied_embeddings {
            return Ok(None);
        }
        let want: Vec<u64> = role.shape(&self.spec).iter().map(|&d| d as u64).collect();
        Ok(Some(self.file.tensor_checked(
            &tensor_name(role),
            &want,
            &types(),
        )?))
    }
}

fn bytemuck_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// An f32 as the f64 of its shortest decimal form: GGUF stores 1e-5 as an f32, and the model
/// means 1e-5, not 9.9999997e-6.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The GGUF name of a weight.
pub fn tensor_name(role: Role) -> String {
    let blk = |l: usize, s: &str| format!("blk.{l}.{s}");
    match role {
        Role::Embed => "token_embd.weight".into(),
        Role::Output => "output.weight".into(),
        Role::FinalNorm => "output_norm.weight".into(),
        Role::AttnNorm(l) => blk(l, "attn_norm.weight"),
        Role::Q(l) => blk(l, "attn_q.weight"),
        Role::K(l) => blk(l, "attn_k.weight"),
        Role::V(l) => blk(l, "attn_v.weight"),
        Role::QBias(l) => blk(l, "attn_q.bias"),
        Role::KBias(l) => blk(l, "attn_k.bias"),
        Role::VBias(l) => blk(l, "attn_v.bias"),
        Role::O(l) => blk(l, "attn_output.weight"),
        Role::FfnNorm(l) => blk(l, "ffn_norm.weight"),
        Role::Gate(l) => blk(l, "ffn_gate.weight"),
        Role::Up(l) => blk(l, "ffn_up.weight"),
        Role::Down(l) => blk(l, "ffn_down.weight"),
    }
}

impl WeightSource for GgufWeights {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn tensor(&self, role: Role) -> Result<Option<HostTensor<'_>>> {
        let Some(info) = self.info(role)? else {
            return Ok(None);
        };
        let bytes = self.file.tensor_bytes(info);
        if bytes.len() as u64 != info.size_bytes {
            return Err(FormatError::Corrupt {
                file: self.file.file().to_owned(),
                reason: format!("tensor {}: its data is not in the file", info.name),
            }
            .into());
        }
        Ok(Some(HostTensor {
            name: format!("{} ({})", info.name, self.file.file()),
            dtype: dtype_of(info.ggml_type),
            shape: info.shape_row_major().iter().map(|&d| d as usize).collect(),
            bytes: Cow::Borrowed(bytes),
        }))
    }

    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        Ok(self.info(role)?.map(|i| {
            (
                dtype_of(i.ggml_type),
                i.shape_row_major().iter().map(|&d| d as usize).collect(),
            )
        }))
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.spec.shape.name, self.file.file())
    }
}
