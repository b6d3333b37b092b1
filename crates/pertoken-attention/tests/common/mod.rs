//! Shared by the attention test files: the comparison against the f64 reference every test makes.

use pertoken_reference::{AttentionShape, Comparison, Tolerance, attention_windowed, compare};

/// The tolerance of most tests: outputs are convex combinations of values in [-1, 1], computed
/// with f32 exponentials and sums over `kv_len` keys.
pub(crate) fn per_key_tolerance(kv_len: usize) -> Tolerance {
    Tolerance {
        abs: 2e-5,
        rel: 2e-5,
    }
    .for_reduction(kv_len, 1.0)
}

/// `got` against the f64 reference attention of `q: [n_heads, q_len, d]` over
/// `k, v: [n_kv_heads, kv_len, d]` at scale 1/√d.
#[allow(dead_code)] // window.rs uses only the windowed form
pub(crate) fn against_reference(
    got: &[f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    shape: AttentionShape,
    tolerance: Tolerance,
) -> Comparison {
    against_reference_windowed(got, (q, k, v), shape, None, tolerance)
}

/// [`against_reference`] with a sliding window of `window` keys.
pub(crate) fn against_reference_windowed(
    got: &[f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    shape: AttentionShape,
    window: Option<usize>,
    tolerance: Tolerance,
) -> Comparison {
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let want = attention_windowed(q, k, v, shape, scale, window).unwrap();
    compare(got, &want, tolerance)
}
