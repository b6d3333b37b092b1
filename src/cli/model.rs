//! What `pertoken generate` and `pertoken bench` share about a model: where its weights come
//! from, the replay of a sequence through the CPU reference, and a step's time by kernel.

use pertoken_cost::{Catalog, RopePairing};
use pertoken_gpu::DType;
use pertoken_model::{GgufWeights, ModelSpec, SafetensorsWeights, Synthetic, WeightSource};

use super::CliError;

/// A model's weights, from wherever they come.
pub(crate) enum Loaded {
    Gguf(Box<GgufWeights>),
    Safetensors(Box<SafetensorsWeights>),
    Synthetic(Box<Synthetic>),
}

impl Loaded {
    /// The GGUF file or the safetensors checkpoint given, if either is.
    pub(crate) fn open_file(
        gguf: Option<&std::path::Path>,
        safetensors: Option<&std::path::Path>,
    ) -> Result<Option<Loaded>, CliError> {
        Ok(match (gguf, safetensors) {
            (Some(path), _) => Some(Loaded::Gguf(Box::new(GgufWeights::open(path)?))),
            (None, Some(path)) => Some(Loaded::Safetensors(Box::new(SafetensorsWeights::open(
                path,
            )?))),
            (None, None) => None,
        })
    }

    /// The catalog model `name` with seeded random weights in `format`.
    pub(crate) fn synthetic(name: &str, format: DType, seed: u64) -> Result<Loaded, CliError> {
        let shape = Catalog::builtin().model(name)?.clone();
        let spec = ModelSpec::new(shape, RopePairing::Halves);
        Ok(Loaded::Synthetic(Box::new(Synthetic::new(
            spec, format, seed,
        )?)))
    }

    pub(crate) fn source(&self) -> &dyn WeightSource {
        match self {
            Loaded::Gguf(g) => g.as_ref(),
            Loaded::Safetensors(s) => s.as_ref(),
            Loaded::Synthetic(s) => s.as_ref(),
        }
    }
}

pub(crate) use pertoken_bench::{Reference, by_op};
