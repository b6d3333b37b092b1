//! Weights from a GGUF file (v2/v3), memory-mapped: tensors are uploaded as stored.

use std::borrow::Cow;
use std::path::Path;

use pertoken_cost::{Arch, Model, Rope};
use pertoken_formats::FormatError;
use pertoken_formats::gguf::{GgmlType, Gguf, TensorInfo};
use pertoken_gpu::DType;

use super::{HostTensor, Role, WeightSource};
use crate::arch::{self, Family, Keys, Place};
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

/// A GGUF model of one of the architectures of [`crate::arch`].
pub struct GgufWeights {
    file: Gguf,
    spec: ModelSpec,
    family: &'static Family,
    arch: String,
}

impl std::fmt::Debug for GgufWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWeights")
            .field("file", &self.file.file())
            .field("arch", &self.arch)
            .field("spec", &self.spec)
            .finish()
    }
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
        let Some(family) = arch::family(&arch) else {
            return Err(ModelError::Unsupported {
                model: file.file().to_owned(),
                reason: format!(
                    "architecture {arch:?}: this decoder runs {}",
                    arch::supported()
                ),
            });
        };
        let keys = Keys {
            file: &file,
            arch: &arch,
        };
        let heads = keys.u64_of("attention.head_count")?;
        let hidden = keys.u64_of("embedding_length")?;
        // As llama.cpp: the head width is `key_length` where stated, else hidden / heads
        // (`rope.dimension_count` is the rotated width, less than that in Phi-3's partial rotary).
        let head_dim = keys
            .u64_opt("attention.key_length")?
            .unwrap_or(hidden / heads.max(1));
        if let Some(v) = keys.u64_opt("attention.value_length")?
            && v != head_dim
        {
            return Err(ModelError::Unsupported {
                model: file.file().to_owned(),
                reason: format!(
                    "value heads of {v} elements and key heads of {head_dim}: the KV cache \
                     holds both at one width"
                ),
            });
        }
        let embd = file.tensor("token_embd.weight")?;
        let vocab = match keys.u64_opt("vocab_size")? {
            Some(v) => v,
            None => embd.shape_row_major()[0],
        };
        let name = file
            .get("general.name")
            .and_then(|v| v.as_str())
            .map_or_else(|| file.file().to_owned(), str::to_owned);
        let shape = Model {
            name,
            source: format!("GGUF metadata of {}", file.file()),
            layers: keys.u64_of("block_count")?,
            hidden,
            heads,
            kv_heads: keys.u64_opt("attention.head_count_kv")?.unwrap_or(heads),
            head_dim,
            ffn: keys.u64_of("feed_forward_length")?,
            vocab,
            tied_embeddings: file.tensor("output.weight").is_err(),
            qkv_bias: file.tensor("blk.0.attn_q.bias").is_ok()
                || file.tensor("blk.0.attn_qkv.bias").is_ok(),
            experts: keys.u64_opt("expert_count")?.unwrap_or(1).max(1),
            active_experts: keys.u64_opt("expert_used_count")?.unwrap_or(1).max(1),
            sliding_window: None,
            rope: Rope {
                theta: keys.f64_opt("rope.freq_base")?.unwrap_or(10_000.0),
                scaling: None,
            },
            rms_eps: keys
                .f64_opt("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            arch: Arch::default(),
            mla: None,
            moe: Default::default(),
        };
        let mut spec = ModelSpec::new(shape, family.pairing);
        // RoPE turns `rope.dimension_count` elements of each head (all of them unless fewer
        // are stated: Phi-3's partial rotary).
        if let Some(rot) = keys.u64_opt("rope.dimension_count")?
            && rot < head_dim
        {
            spec.shape.arch.rotary_dims = Some(rot);
        }
        (family.read)(&keys, &mut spec)?;
        read_rope_scaling(&keys, &mut spec)?;
        let w = GgufWeights {
            spec,
            family,
            arch: arch.clone(),
            file,
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

    /// The tensor holding `role`'s weight, and the rows of it that are the weight where the
    /// file fuses several into one.
    fn info(&self, role: Role) -> Result<Option<Located<'_>>> {
        if role == Role::Output && self.spec.shape.tied_embeddings {
            return Ok(None);
        }
        let want: Vec<u64> = role.shape(&self.spec).iter().map(|&d| d as u64).collect();
        let keys = Keys {
            file: &self.file,
            arch: &self.arch,
        };
        Ok(Some(match (self.family.place)(&keys, &self.spec, role) {
            Place::Tensor(name) => (self.file.tensor_checked(&name, &want, &types())?, None),
            Place::Rows {
                name,
                start,
                rows,
                total,
            } => {
                let mut whole = want.clone();
                whole[0] = total as u64;
                let info = self.file.tensor_checked(&name, &whole, &types())?;
                (info, Some((start, rows)))
            }
        }))
    }
}

/// Linear RoPE scaling (Gemma 3 4B and up: every frequency of the global layers divided by the
/// factor) as stored per-pair factors, and Llama 3's as `rope_freqs.weight`; YaRN is refused.
fn read_rope_scaling(keys: &Keys<'_>, spec: &mut ModelSpec) -> Result<()> {
    let file = keys.file;
    let rot = spec.shape.rotary_dims();
    match keys.str_opt("rope.scaling.type") {
        None | Some("none") => {}
        Some("linear") => {
            let factor = keys.f64_opt("rope.scaling.factor")?.unwrap_or(1.0);
            if !(factor.is_finite() && factor >= 1.0) {
                return Err(ModelError::Unsupported {
                    model: file.file().to_owned(),
                    reason: format!("linear RoPE scaling by {factor}: expected a factor >= 1"),
                });
            }
            spec.rope_factors = Some(vec![factor as f32; rot as usize / 2]);
        }
        // Phi-3's LongRoPE: its factors came stored (arch/phi3.rs).
        Some("longrope") if spec.rope_factors.is_some() => {}
        Some(kind) => {
            return Err(ModelError::Unsupported {
                model: file.file().to_owned(),
                reason: format!(
                    "RoPE scaling of type {kind:?} is not implemented; linear, Llama 3's \
                     (stored as rope_freqs.weight) and Phi-3's LongRoPE (stored factors) are"
                ),
            });
        }
    }
    if let Some(f) = keys.f32_vector("rope_freqs.weight", rot / 2)? {
        spec.rope_factors = Some(f);
    }
    Ok(())
}

/// A weight's tensor, and its rows there where the file fuses several weights into one.
type Located<'a> = (&'a TensorInfo, Option<(usize, usize)>);

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
        Role::QNorm(l) => blk(l, "attn_q_norm.weight"),
        Role::KNorm(l) => blk(l, "attn_k_norm.weight"),
        Role::PostAttnNorm(l) => blk(l, "post_attention_norm.weight"),
        Role::PostFfnNorm(l) => blk(l, "post_ffw_norm.weight"),
    }
}

impl WeightSource for GgufWeights {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn tensor(&self, role: Role) -> Result<Option<HostTensor<'_>>> {
        let Some((info, part)) = self.info(role)? else {
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
        let mut shape: Vec<usize> = info.shape_row_major().iter().map(|&d| d as usize).collect();
        let (bytes, name) = match part {
            None => (bytes, format!("{} ({})", info.name, self.file.file())),
            // Rows of a fused tensor: each row is whole blocks, so its bytes are a range.
            Some((start, rows)) => {
                let row_bytes = bytes.len() / shape[0].max(1);
                shape[0] = rows;
                (
                    &bytes[start * row_bytes..(start + rows) * row_bytes],
                    format!(
                        "{} rows {start}..{} ({})",
                        info.name,
                        start + rows,
                        self.file.file()
                    ),
                )
            }
        };
        Ok(Some(HostTensor {
            name,
            dtype: dtype_of(info.ggml_type),
            shape,
            bytes: Cow::Borrowed(bytes),
        }))
    }

    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        Ok(self.info(role)?.map(|(i, part)| {
            let mut shape: Vec<usize> = i.shape_row_major().iter().map(|&d| d as usize).collect();
            if let Some((_, rows)) = part {
                shape[0] = rows;
            }
            (dtype_of(i.ggml_type), shape)
        }))
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.spec.shape.name, self.file.file())
    }
}
