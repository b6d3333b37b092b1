//! Attention, `softmax(q·kᵀ·scale + mask)·v`, with f64 accumulation.
//!
//! Layouts are row-major: `q` is `[n_heads, q_len, head_dim]`, `k` and `v` are
//! `[n_kv_heads, kv_len, head_dim]`, the output is `[n_heads, q_len, head_dim]`. Grouped-query
//! attention maps query head `h` to KV head `h / (n_heads / n_kv_heads)` (MQA is
//! `n_kv_heads = 1`). With `causal`, query `i` attends keys `j ≤ i + (kv_len − q_len)`: the
//! queries are the last `q_len` positions of a `kv_len`-long sequence, as in prefill
//! (`q_len = kv_len`) and decode (`q_len = 1`).

/// The shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads; divides `n_heads`.
    pub n_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Queries per head.
    pub q_len: usize,
    /// Keys (and values) per KV head.
    pub kv_len: usize,
    /// Mask keys after each query's position.
    pub causal: bool,
}

/// Why the reference refused an attention call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttentionError {
    /// A zero dimension, or heads that do not group.
    #[error("attention: invalid shape {shape:?}: {reason}")]
    Shape {
        /// The shape.
        shape: AttentionShape,
        /// What is wrong.
        reason: String,
    },
    /// A slice whose length does not match the shape.
    #[error("attention: {what} has {got} elements, the shape needs {expected}")]
    Length {
        /// `q`, `k` or `v`.
        what: &'static str,
        /// Elements given.
        got: usize,
        /// Elements needed.
        expected: usize,
    },
}

impl AttentionShape {
    fn check(&self) -> Result<(), AttentionError> {
        let bad = |reason: &str| AttentionError::Shape {
            shape: *self,
            reason: reason.into(),
        };
        if [
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.q_len,
            self.kv_len,
        ]
        .contains(&0)
        {
            return Err(bad("every dimension must be at least 1"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad("n_heads must be a multiple of n_kv_heads"));
        }
        if self.causal && self.q_len > self.kv_len {
            return Err(bad(
                "causal attention needs q_len ≤ kv_len (queries are the last positions)",
            ));
        }
        Ok(())
    }

    /// `1/√head_dim`, the usual scale.
    pub fn default_scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

/// Attention in f64. Returns `[n_heads, q_len, head_dim]`.
pub fn attention<T: Copy + Into<f64>>(
    q: &[T],
    k: &[T],
    v: &[T],
    shape: AttentionShape,
    scale: f64,
) -> Result<Vec<f64>, AttentionError> {
    attention_windowed(q, k, v, shape, scale, None)
}

/// [`attention`] where a query at position `P` (`i + kv_len − q_len`) sees only the keys at
/// positions after `P − window` (sliding-window attention: Gemma's local layers, Mistral).
pub fn attention_windowed<T: Copy + Into<f64>>(
    q: &[T],
    k: &[T],
    v: &[T],
    shape: AttentionShape,
    scale: f64,
    window: Option<usize>,
) -> Result<Vec<f64>, AttentionError> {
    shape.check()?;
    if window == Some(0) {
        return Err(AttentionError::Shape {
            shape,
            reason: "a sliding window holds at least one key".into(),
        });
    }
    let AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim: d,
        q_len,
        kv_len,
        causal,
    } = shape;
    for (what, got, expected) in [
        ("q", q.len(), n_heads * q_len * d),
        ("k", k.len(), n_kv_heads * kv_len * d),
        ("v", v.len(), n_kv_heads * kv_len * d),
    ] {
        if got != expected {
            return Err(AttentionError::Length {
                what,
                got,
                expected,
            });
        }
    }
    let group = n_heads / n_kv_heads;
    let offset = kv_len - q_len.min(kv_len);
    let mut out = vec![0.0f64; n_heads * q_len * d];
    let mut scores = vec![0.0f64; kv_len];
    for h in 0..n_heads {
        let kvh = h / group;
        let kbase = kvh * kv_len * d;
        for i in 0..q_len {
            let qrow = &q[(h * q_len + i) * d..(h * q_len + i + 1) * d];
            let last = if causal {
                (i + offset).min(kv_len - 1)
            } else {
                kv_len - 1
            };
            // The window's first key: those before it are never looked at.
            let first = window.map_or(0, |w| (i + offset + 1).saturating_sub(w));
            let mut max = f64::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate().take(last + 1).skip(first) {
                let krow = &k[kbase + j * d..kbase + (j + 1) * d];
                let dot: f64 = qrow
                    .iter()
                    .zip(krow)
                    .map(|(&a, &b)| a.into() * b.into())
                    .sum();
                *s = dot * scale;
                max = max.max(*s);
            }
            // Subtract the max before exponentiating: large logits cannot overflow.
            let mut denom = 0.0;
            for s in scores.iter_mut().take(last + 1).skip(first) {
                *s = (*s - max).exp();
                denom += *s;
            }
            let orow = &mut out[(h * q_len + i) * d..(h * q_len + i + 1) * d];
            for (j, &p) in scores.iter().enumerate().take(last + 1).skip(first) {
                let vrow = &v[kbase + j * d..kbase + (j + 1) * d];
                for (o, &x) in orow.iter_mut().zip(vrow) {
                    *o += p / denom * x.into();
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::uniform_f32;

    fn shape(
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        q_len: usize,
        kv_len: usize,
        causal: bool,
    ) -> AttentionShape {
        AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
            q_len,
            kv_len,
            causal,
        }
    }

    #[test]
    fn one_query_two_keys_by_hand() {
        // q = [1], keys [0] and [ln 3], scale 1: weights 1/4 and 3/4; values 2 and 6 → 5.
        let q = [1.0f64];
        let k = [0.0f64, 3.0f64.ln()];
        let v = [2.0f64, 6.0];
        let out = attention(&q, &k, &v, shape(1, 1, 1, 1, 2, false), 1.0).unwrap();
        assert!((out[0] - 5.0).abs() < 1e-12, "{out:?}");
    }

    #[test]
    fn a_sliding_window_sees_only_the_latest_keys() {
        // Keys [0, ln 3, 0] at positions 0..3, the query at position 2 (q_len 1, causal).
        // Window 2: keys 1 and 2, weights 3/4 and 1/4 of values 6 and 2 → 5. Window 1: key 2
        // alone → 2. A window past the context is no window.
        let (q, k, v) = ([1.0f64], [0.0, 3.0f64.ln(), 0.0], [100.0, 6.0, 2.0]);
        let s = shape(1, 1, 1, 1, 3, true);
        let at = |w| attention_windowed(&q, &k, &v, s, 1.0, w).unwrap()[0];
        assert!((at(Some(2)) - 5.0).abs() < 1e-12);
        assert!((at(Some(1)) - 2.0).abs() < 1e-12);
        assert_eq!(at(Some(3)), at(None));
        assert!(attention_windowed(&q, &k, &v, s, 1.0, Some(0)).is_err());
    }

    #[test]
    fn causal_mask_ignores_later_keys() {
        let s = shape(2, 1, 8, 3, 5, true);
        let q = uniform_f32(1, 2 * 3 * 8);
        let k = uniform_f32(2, 5 * 8);
        let mut v = uniform_f32(3, 5 * 8);
        let a = attention(&q, &k, &v, s, s.default_scale()).unwrap();
        // Query 0 sits at position 2 (offset kv_len − q_len = 2): keys 3 and 4 are masked for it,
        // key 4 for query 1. Changing value 4 must leave queries 0 and 1 alone.
        for x in &mut v[4 * 8..] {
            *x += 10.0;
        }
        let b = attention(&q, &k, &v, s, s.default_scale()).unwrap();
        for h in 0..2 {
            for i in 0..3 {
                let row = (h * 3 + i) * 8;
                let same = a[row..row + 8] == b[row..row + 8];
                assert_eq!(same, i < 2, "head {h} query {i}");
            }
        }
    }

    #[test]
    fn gqa_equals_attention_over_duplicated_kv_heads() {
        let (nh, nkv, d, ql, kl) = (8, 2, 4, 3, 6);
        let q = uniform_f32(4, nh * ql * d);
        let k = uniform_f32(5, nkv * kl * d);
        let v = uniform_f32(6, nkv * kl * d);
        let gqa = attention(&q, &k, &v, shape(nh, nkv, d, ql, kl, true), 0.5).unwrap();
        let dup = |x: &[f32]| -> Vec<f32> {
            (0..nh)
                .flat_map(|h| x[(h / 4) * kl * d..(h / 4 + 1) * kl * d].to_vec())
                .collect()
        };
        let mha = attention(&q, &dup(&k), &dup(&v), shape(nh, nh, d, ql, kl, true), 0.5).unwrap();
        assert_eq!(gqa, mha);
    }

    #[test]
    fn large_logits_do_not_overflow() {
        // Logits around 1e4: exp would overflow without the max subtraction.
        let q = [100.0f64; 4];
        let k = [100.0f64, 100.0, 100.0, 100.0, 99.0, 99.0, 99.0, 99.0];
        let v = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let out = attention(&q, &k, &v, shape(1, 1, 4, 1, 2, false), 1.0).unwrap();
        assert!(out.iter().all(|x| x.is_finite()));
        // The first key's logit is 400 higher: all weight on it.
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn bad_shapes_and_lengths() {
        assert!(attention::<f32>(&[], &[], &[], shape(3, 2, 4, 1, 1, false), 1.0).is_err());
        assert!(attention::<f32>(&[], &[], &[], shape(1, 1, 4, 3, 2, true), 1.0).is_err());
        let e = attention(
            &[1.0f32; 3],
            &[1.0; 4],
            &[1.0; 4],
            shape(1, 1, 4, 1, 1, false),
            1.0,
        );
        assert_eq!(
            e.unwrap_err(),
            AttentionError::Length {
                what: "q",
                got: 3,
                expected: 4
            }
        );
    }
}
