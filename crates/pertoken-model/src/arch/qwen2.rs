//! Qwen2 and Qwen2.5 (`qwen2`): Llama's block with biases on q, k and v (found by their
//! tensors), and Hugging Face's rotate-half pairing.

use pertoken_cost::RopePairing;

use super::{Family, Keys, own_tensor};
use crate::{ModelSpec, Result};

pub(super) const FAMILY: Family = Family {
    name: "qwen2",
    models: "Qwen2, Qwen2.5",
    pairing: RopePairing::Halves,
    read,
    place: own_tensor,
};

fn read(_: &Keys<'_>, _: &mut ModelSpec) -> Result<()> {
    Ok(())
}
