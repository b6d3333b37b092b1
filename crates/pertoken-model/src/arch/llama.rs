//! Llama 2/3, Mistral, SmolLM2 (`llama`): the block every other family adds to. Pre-norm
//! RMSNorm, SwiGLU, RoPE over whole heads; llama.cpp's converter permutes q and k so that
//! adjacent elements pair up. Llama 3's frequency scaling comes as `rope_freqs.weight`.

use pertoken_cost::RopePairing;

use super::{Family, Keys, own_tensor};
use crate::{ModelSpec, Result};

pub(super) const FAMILY: Family = Family {
    name: "llama",
    models: "Llama 2/3, Mistral, SmolLM2",
    pairing: RopePairing::Interleaved,
    read,
    place: own_tensor,
};

fn read(_: &Keys<'_>, _: &mut ModelSpec) -> Result<()> {
    Ok(())
}
