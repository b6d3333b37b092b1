//! The CPU reference (f64) of a model, for checking what the GPU chose.

use std::cell::OnceCell;

use pertoken_model::WeightSource;
use pertoken_model::weights::{reference_decoder, to_reference};
use pertoken_reference::decoder::{Weights, argmax};

/// A model's CPU reference (f64), its f32 weights read once, on first use, for every replay.
pub struct Reference<'a> {
    /// The model.
    pub source: &'a dyn WeightSource,
    weights: OnceCell<Weights>,
}

impl std::fmt::Debug for Reference<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reference({})", self.source.describe())
    }
}

impl<'a> Reference<'a> {
    /// The reference of `source` (nothing read yet).
    pub fn new(source: &'a dyn WeightSource) -> Reference<'a> {
        Reference {
            source,
            weights: OnceCell::new(),
        }
    }

    /// Feeds `seq[..start]` to the reference, then each later token, and checks that each is
    /// its greedy choice: exactly, or, with `tie = Some(f)`, within `f` of the largest logit's
    /// magnitude (a near tie the GPU's f32 may break the other way). Returns the reference's
    /// logits after the whole sequence.
    pub fn replay(&self, seq: &[u32], start: usize, tie: Option<f64>) -> Result<Vec<f64>, String> {
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
pub fn scale(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}
