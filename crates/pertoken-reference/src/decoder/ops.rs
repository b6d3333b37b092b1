//! The decoder's small ops, in f64: RMSNorm, RoPE (both pairings, Llama 3 scaling), SwiGLU's
//! gate, and greedy argmax.

use pertoken_cost::{Rope, RopePairing};

/// RMSNorm of one row: `x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, &w)| v * inv * f64::from(w))
        .collect()
}

/// RoPE's angular frequency of each pair of a head of width `head_dim`: `θ^(−2f/d)`, with
/// Llama 3's scaling applied where the model has it (Hugging Face's
/// `_compute_llama3_parameters`, computed here in f64).
pub fn rope_frequencies(rope: &Rope, head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|f| {
            let base = rope.theta.powf(-2.0 * f as f64 / head_dim as f64);
            let Some(s) = rope.scaling else {
                return base;
            };
            let wavelen = 2.0 * std::f64::consts::PI / base;
            let old = s.original_context as f64;
            if wavelen < old / s.high_freq_factor {
                base
            } else if wavelen > old / s.low_freq_factor {
                base / s.factor
            } else {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * base / s.factor + smooth * base
            }
        })
        .collect()
}

/// Rotates one head in place for `position`.
pub fn rope(head: &mut [f64], position: usize, freqs: &[f64], pairing: RopePairing) {
    let half = head.len() / 2;
    for (f, &freq) in freqs.iter().enumerate().take(half) {
        let (i, j) = match pairing {
            RopePairing::Halves => (f, f + half),
            RopePairing::Interleaved => (2 * f, 2 * f + 1),
        };
        let (s, c) = (position as f64 * freq).sin_cos();
        let (a, b) = (head[i], head[j]);
        head[i] = a * c - b * s;
        head[j] = b * c + a * s;
    }
}

/// SwiGLU's gate: `silu(g) · u`, `silu(z) = z / (1 + e^−z)`.
pub fn silu_mul(g: &[f64], u: &[f64]) -> Vec<f64> {
    g.iter()
        .zip(u)
        .map(|(&z, &u)| z / (1.0 + (-z).exp()) * u)
        .collect()
}

/// GeGLU's gate (Gemma): `gelu(g) · u` with GELU's tanh approximation,
/// `0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))` (ggml's `gelu`, Hugging Face's
/// `gelu_pytorch_tanh`).
pub fn gelu_tanh_mul(g: &[f64], u: &[f64]) -> Vec<f64> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    g.iter()
        .zip(u)
        .map(|(&z, &u)| 0.5 * z * (1.0 + (c * (z + 0.044715 * z * z * z)).tanh()) * u)
        .collect()
}

/// Index of the largest value (the first of equal ones); `None` if every value is NaN or
/// there are none.
pub fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pertoken_cost::RopeScaling;

    #[test]
    fn rms_norm_by_hand() {
        // mean(9, 16) = 12.5; 1/sqrt(12.5 + 0.5) = 1/sqrt(13).
        let y = rms_norm(&[3.0, -4.0], &[2.0, 0.5], 0.5);
        let inv = 1.0 / 13f64.sqrt();
        assert!((y[0] - 6.0 * inv).abs() < 1e-15 && (y[1] + 2.0 * inv).abs() < 1e-15);
    }

    #[test]
    fn rope_pairings_rotate_different_elements() {
        let freqs = [1.0, 0.5];
        let mut a = [1.0, 2.0, 3.0, 4.0];
        rope(&mut a, 1, &freqs, RopePairing::Halves);
        // Pair 0 is (x0, x2) turned by 1 rad.
        let (s, c) = 1f64.sin_cos();
        assert!((a[0] - (c - 3.0 * s)).abs() < 1e-15 && (a[2] - (3.0 * c + s)).abs() < 1e-15);
        let mut b = [1.0, 2.0, 3.0, 4.0];
        rope(&mut b, 1, &freqs, RopePairing::Interleaved);
        // Pair 0 is (x0, x1).
        assert!((b[0] - (c - 2.0 * s)).abs() < 1e-15 && (b[1] - (2.0 * c + s)).abs() < 1e-15);
        let mut z = [1.0, 2.0, 3.0, 4.0];
        rope(&mut z, 0, &freqs, RopePairing::Interleaved);
        assert_eq!(z, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn llama3_scaling_keeps_high_stretches_low_and_blends_between() {
        let plain = Rope {
            theta: 500_000.0,
            scaling: None,
        };
        let scaled = Rope {
            scaling: Some(RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context: 8192,
            }),
            ..plain
        };
        let (p, s) = (
            rope_frequencies(&plain, 128),
            rope_frequencies(&scaled, 128),
        );
        assert_eq!(p[0], 1.0);
        assert_eq!(s[0], 1.0, "short wavelengths are kept");
        assert!(
            (s[63] - p[63] / 8.0).abs() < 1e-18,
            "long ones divided by the factor"
        );
        let mid = (0..64)
            .find(|&f| {
                let w = 2.0 * std::f64::consts::PI / p[f];
                w > 2048.0 && w < 8192.0
            })
            .expect("a medium wavelength");
        assert!(s[mid] < p[mid] && s[mid] > p[mid] / 8.0);
    }

    #[test]
    fn argmax_takes_the_first_largest_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, f64::NAN, 3.0]), Some(1));
        assert_eq!(argmax(&[f64::NAN, -1.0]), Some(1));
        assert_eq!(argmax(&[f64::NAN]), None);
    }
}
