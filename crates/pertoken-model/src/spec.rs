//! What the decoder needs to know of a model: its shape (pertoken-cost's [`Model`], the one
//! description both crates use) and how its checkpoint lays out RoPE's pairs.

use pertoken_cost::{Model, RopePairing};

use crate::{ModelError, Result};

/// A model's shape plus the layout facts of the checkpoint it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Layers, widths, heads, vocabulary, RoPE, norm epsilon, tied head, biases.
    pub shape: Model,
    /// Which elements RoPE turns together in these q/k weights.
    pub pairing: RopePairing,
    /// Per-pair divisors of RoPE's frequencies, `[rotary_dims / 2]`, where the checkpoint
    /// stores them (a GGUF file's `rope_freqs.weight`: llama.cpp's form of Llama 3's scaling;
    /// Phi-3's LongRoPE factors). Applied to `θ^(−2f/d)` in place of `shape.rope.scaling`, on
    /// the layers that use the model's RoPE.
    pub rope_factors: Option<Vec<f32>>,
    /// The longest context these RoPE factors serve, where longer ones need factors this
    /// decoder does not apply (Phi-3's long LongRoPE factors).
    pub context_limit: Option<usize>,
}

impl ModelSpec {
    /// A spec with no stored RoPE factors.
    pub fn new(shape: Model, pairing: RopePairing) -> ModelSpec {
        ModelSpec {
            shape,
            pairing,
            rope_factors: None,
            context_limit: None,
        }
    }

    /// Checks that this decoder runs the shape: a dense model of one of the architectures of
    /// `arch/` whose widths the kernels take.
    pub fn check(&self) -> Result<()> {
        let m = &self.shape;
        let bad = |reason: String| {
            Err(ModelError::Unsupported {
                model: m.name.clone(),
                reason,
            })
        };
        m.validate().map_err(|e| ModelError::Unsupported {
            model: m.name.clone(),
            reason: e.to_string(),
        })?;
        if m.experts > 1 {
            return bad(format!(
                "mixture-of-experts MLPs ({} experts) are not supported yet; dense models are \
                 (Llama 2/3, Mistral, SmolLM2, Qwen2/3, Gemma 3, Phi-3)",
                m.experts
            ));
        }
        if m.mla.is_some() {
            return bad(
                "multi-head latent attention (DeepSeek) is not supported by the decoder; the cost \
                 model (`pertoken cost`) covers it"
                    .into(),
            );
        }
        if let Some(f) = &self.rope_factors
            && (f.len() as u64 != m.rotary_dims() / 2
                || f.iter().any(|&x| !(x.is_finite() && x > 0.0)))
        {
            return bad(format!(
                "RoPE factors: {} values, expected rotary_dims / 2 = {}, each positive and finite",
                f.len(),
                m.rotary_dims() / 2
            ));
        }
        if !m.head_dim.is_multiple_of(2) || m.head_dim > pertoken_attention::MAX_HEAD_DIM as u64 {
            return bad(format!(
                "head_dim {} must be even and at most {}",
                m.head_dim,
                pertoken_attention::MAX_HEAD_DIM
            ));
        }
        Ok(())
    }

    /// Query width (heads · head_dim).
    pub fn q_width(&self) -> usize {
        (self.shape.heads * self.shape.head_dim) as usize
    }

    /// Key (and value) width (kv_heads · head_dim).
    pub fn kv_width(&self) -> usize {
        (self.shape.kv_heads * self.shape.head_dim) as usize
    }

    /// RoPE's angular frequency of each pair layer `l` turns, `θ^(−2f/d)` (`d` the rotary
    /// width) divided by the stored factors, or with Llama 3's scaling where the shape has it,
    /// as f32 for the kernel (computed in f64). Sliding-window layers with their own base
    /// ([`pertoken_cost::Arch::local_rope_theta`]) take neither.
    pub fn rope_frequencies(&self, l: usize) -> Vec<f32> {
        let d = self.shape.rotary_dims() as usize;
        let rope = self.shape.layer_rope(l as u64);
        let global = self.shape.layer_rope_is_global(l as u64);
        (0..d / 2)
            .map(|f| {
                let inv = rope.theta.powf(-2.0 * f as f64 / d as f64);
                if let (Some(factors), true) = (&self.rope_factors, global) {
                    return (inv / f64::from(factors[f])) as f32;
                }
                let scaled = match rope.scaling {
                    None => inv,
                    Some(s) => {
                        let ctx = s.original_context as f64;
                        let wavelength = std::f64::consts::TAU / inv;
                        let (long, short) = (ctx / s.low_freq_factor, ctx / s.high_freq_factor);
                        if wavelength > long {
                            inv / s.factor
                        } else if wavelength < short {
                            inv
                        } else {
                            let t = (ctx / wavelength - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            inv * (t + (1.0 - t) / s.factor)
                        }
                    }
                };
                scaled as f32
            })
            .collect()
    }
}
