//! Tiny models written as GGUF files the way llama.cpp's converters write each architecture:
//! its keys (the window pattern, the second RoPE base, the head width) and its tensors (Phi-3's
//! fused q/k/v and gate|up).

use pertoken_formats::gguf::GgmlType;
use pertoken_formats::gguf::write::GgufBuilder;
use pertoken_gpu::DType;
use pertoken_model::weights::tensor_name;
use pertoken_model::{Role, WeightSource};

pub fn ggml(dtype: DType) -> GgmlType {
    GgmlType::named(dtype.name()).unwrap_or(GgmlType::F32)
}

/// `source` as a GGUF file of `arch`, leaving out the tensor named `skip`; `ffn_meta` is the
/// FFN width the metadata states. Phi-3 files fuse q/k/v into `attn_qkv` and gate/up into
/// `ffn_up`, as its converter does.
pub fn gguf_of(
    source: &dyn WeightSource,
    arch: &str,
    skip: Option<&str>,
    ffn_meta: u64,
) -> GgufBuilder {
    let mut b = gguf_meta(source, arch, ffn_meta);
    let spec = source.spec();
    let mut fused: Vec<(String, Vec<Role>)> = Vec::new();
    if arch == "phi3" {
        for l in 0..spec.shape.layers as usize {
            let qkv = vec![Role::Q(l), Role::K(l), Role::V(l)];
            fused.push((format!("blk.{l}.attn_qkv.weight"), qkv));
            fused.push((tensor_name(Role::Up(l)), vec![Role::Gate(l), Role::Up(l)]));
        }
    }
    for role in Role::all(spec) {
        let Some(t) = source.tensor(role).unwrap() else {
            continue;
        };
        let name = tensor_name(role);
        if Some(name.as_str()) == skip {
            continue;
        }
        if let Some((name, parts)) = fused.iter().find(|(_, p)| p.contains(&role)) {
            // Written once, at its first part.
            if parts[0] == role {
                let mut bytes = Vec::new();
                let mut rows = 0;
                for &p in parts {
                    let t = source.tensor(p).unwrap().unwrap();
                    rows += t.shape[0];
                    bytes.extend_from_slice(&t.bytes);
                }
                let dims = [t.shape[1] as u64, rows as u64];
                b.add_tensor(name.clone(), ggml(t.dtype), &dims, bytes);
            }
            continue;
        }
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        b.add_tensor(name, ggml(t.dtype), &dims, t.bytes.to_vec());
    }
    if let Some(f) = &spec.rope_factors {
        let name = if arch == "phi3" {
            "rope_factors_short.weight"
        } else {
            "rope_freqs.weight"
        };
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        b.add_tensor(name, GgmlType::F32, &[f.len() as u64], bytes);
    }
    b
}

/// The metadata of `source` as a GGUF file of `arch`, no tensors.
pub fn gguf_meta(source: &dyn WeightSource, arch: &str, ffn_meta: u64) -> GgufBuilder {
    let m = &source.spec().shape;
    let mut b = GgufBuilder::new();
    let k = |s: &str| format!("{arch}.{s}");
    b.set("general.architecture", arch)
        .set("general.name", "tiny test model")
        .set(k("block_count"), m.layers as u32)
        .set(k("embedding_length"), m.hidden as u32)
        .set(k("feed_forward_length"), ffn_meta as u32)
        .set(k("attention.head_count"), m.heads as u32)
        .set(k("attention.head_count_kv"), m.kv_heads as u32)
        .set(k("rope.dimension_count"), m.rotary_dims() as u32)
        .set(k("rope.freq_base"), m.rope.theta as f32)
        .set(k("attention.layer_norm_rms_epsilon"), m.rms_eps as f32);
    if m.head_dim != m.hidden / m.heads {
        b.set(k("attention.key_length"), m.head_dim as u32)
            .set(k("attention.value_length"), m.head_dim as u32);
    }
    if let Some(w) = m.sliding_window {
        b.set(k("attention.sliding_window"), w as u32);
    }
    if let Some(n) = m.arch.global_every {
        b.set(k("attention.sliding_window_pattern"), n as u32);
    }
    if let Some(t) = m.arch.local_rope_theta {
        b.set(k("rope.freq_base_swa"), t as f32);
    }
    if let Some(c) = m.arch.logit_softcap {
        b.set(k("final_logit_softcapping"), c as f32);
    }
    if let Some(f) = m.arch.rope_attn_factor {
        b.set(k("rope.scaling.attn_factor"), f as f32);
    }
    b
}
