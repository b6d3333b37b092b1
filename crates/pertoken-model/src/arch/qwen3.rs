//! Qwen3 (`qwen3`): Llama's block with each head of q and k RMS-normed before RoPE
//! (`attn_q_norm`, `attn_k_norm`), the head width from `key_length`, rotate-half pairing.

use pertoken_cost::RopePairing;

use super::{Family, Keys, own_tensor};
use crate::{ModelSpec, Result};

pub(super) const FAMILY: Family = Family {
    name: "qwen3",
    models: "Qwen3 dense",
    pairing: RopePairing::Halves,
    read,
    place: own_tensor,
};

fn read(_: &Keys<'_>, spec: &mut ModelSpec) -> Result<()> {
    spec.shape.arch.qk_norm = true;
    Ok(())
}
