//! What `pertoken generate` and `pertoken bench` share about a model: where its weights come
//! from, the replay of a sequence through the CPU reference, and a step's time by kernel.

use std::cell::OnceCell;

use pertoken_cost::{Catalog, RopePairing};
use pertoken_gpu::{DType, Timing};
use pertoken_model::weights::{reference_decoder, to_reference};
use pertoken_model::{GgufWeights, ModelSpec, SafetensorsWeights, Synthetic, WeightSource};
use pertoken_reference::decoder::{Weights, argmax};

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

/// A model's CPU reference (f64), its f32 weights read once, on first use, for every replay.
pub(crate) struct Reference<'a> {
    pub source: &'a dyn WeightSource,
    weights: OnceCell<Weights>,
}

impl<'a> Reference<'a> {
    pub(crate) fn new(source: &'a dyn WeightSource) -> Reference<'a> {
        Reference {
            source,
            weights: OnceCell::new(),
        }
    }

    /// Feeds `seq[..start]` to the reference, then each later token, and checks that each is
    /// its greedy choice: exactly, or, with `tie = Some(f)`, within `f` of the largest logit's
    /// magnitude (a near tie the GPU's f32 may break the other way). Returns the reference's
    /// logits after the whole sequence.
    pub(crate) fn replay(
        &self,
        seq: &[u32],
        start: usize,
        tie: Option<f64>,
    ) -> Result<Vec<f64>, String> {
        let weights = match self.weights.get() {
            Some(w) => w,
            None => {
                let w = to_reference(self.source).map_err(|e| e.to_string())?;
                self.weights.get_or_init(|| w)
            }
        };
        let spec = self.source.spec();
        let mut cpu = reference_decoder(spec, weights).map_err(|e| e.to_string())?;
        let mut want = cpu.step(&seq[..start]).map_err(|e| e.to_string())?;
        for i in start..seq.len() {
            let chose = seq[i] as usize;
            let best = argmax(&want).ok_or("the reference's logits are all NaN")?;
            let margin = want[best] - want[chose.min(want.len() - 1)];
            let allowed = tie.map_or(-1.0, |f| f * scale(&want));
            if chose != best && margin > allowed {
                return Err(format!(
                    "token {i}: the GPU chose {chose}, the reference {best} (its logit higher \
                     by {margin:.3e})"
                ));
            }
            if i + 1 < seq.len() {
                want = cpu.step(&[seq[i]]).map_err(|e| e.to_string())?;
            }
        }
        Ok(want)
    }
}

/// The largest magnitude of `v`.
pub(crate) fn scale(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

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
