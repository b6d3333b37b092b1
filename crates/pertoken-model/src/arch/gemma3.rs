//! Gemma 3 (`gemma3`, llama.cpp's `src/models/gemma3.cpp`): the embedding scaled by √hidden,
//! four norms a layer (the attention's and the MLP's outputs normed before their residual adds;
//! the file stores each weight as 1 + w, used as stored), each head of q and k normed before
//! RoPE, GELU-tanh GeGLU, and sliding-window attention on five layers of six with their own
//! RoPE base (10000), the sixth global (the model's base, and its linear scaling). Head width
//! from `key_length`; the head is tied; logits soft-capped where the file says.

use pertoken_cost::{Activation, Arch, RopePairing};

use super::{Family, Keys, own_tensor};
use crate::{ModelSpec, Result};

pub(super) const FAMILY: Family = Family {
    name: "gemma3",
    models: "Gemma 3 text",
    pairing: RopePairing::Halves,
    read,
    place: own_tensor,
};

fn read(k: &Keys<'_>, spec: &mut ModelSpec) -> Result<()> {
    let m = &mut spec.shape;
    m.sliding_window = k.u64_opt("attention.sliding_window")?.filter(|&w| w > 0);
    // llama.cpp scales q by 1/√head_dim, except on the 27B model (62 layers), whose scale
    // is 1/√(hidden / heads) (llama-model.cpp, LLM_ARCH_GEMMA3).
    let query_scale = if m.layers == 62 {
        1.0 / ((m.hidden / m.heads) as f64).sqrt()
    } else {
        1.0 / (m.head_dim as f64).sqrt()
    };
    m.arch = Arch {
        post_norms: true,
        qk_norm: true,
        embed_scale: true,
        activation: Activation::GeluTanh,
        query_scale: Some(query_scale),
        global_every: Some(k.u64_opt("attention.sliding_window_pattern")?.unwrap_or(6)),
        local_rope_theta: Some(k.f64_opt("rope.freq_base_swa")?.unwrap_or(10_000.0)),
        logit_softcap: k.f64_opt("final_logit_softcapping")?,
        rotary_dims: None,
        rope_attn_factor: None,
    };
    Ok(())
}
