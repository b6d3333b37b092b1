//! What `pertoken generate` and `pertoken bench` share about a model: where its weights come
//! from, the replay of a sequence through the CPU reference, and a step's time by kernel.

use pertoken_cost::{Catalog, RopePairing};
use pertoken_gpu::{DType, Timing};
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

pub(crate) use pertoken_bench::{Reference, scale};

/// Launches timed alone ([`pertoken_gpu::Gpu::time_each`]) summed by op: `(op, launches,
/// seconds)`, the costliest first.
pub(crate) fn by_op(log: &[(&'static str, Timing)]) -> Vec<(&'static str, usize, f64)> {
    let mut out: Vec<(&'static str, usize, f64)> = Vec::new();
    for (op, t) in log {
        match out.iter_mut().find(|(o, _, _)| o == op) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.seconds;
            }
            None => out.push((op, 1, t.seconds)),
        }
    }
    out.sort_by(|x, y| y.2.total_cmp(&x.2));
    out
}
