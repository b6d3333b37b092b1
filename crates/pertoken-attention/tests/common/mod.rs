//! Shared by the attention test files: the comparison against the f64 reference every test makes.

use pertoken_reference::{AttentionShape, Comparison, Tolerance, attention, compare};

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
pub(crate) fn against_reference(
    got: &[f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    shape: AttentionShape,
    tolerance: Tolerance,
) -> Comparison {
    let want = attention(q, k, v, shape, 1.0 / (shape.head_dim as f64).sqrt()).unwrap();
    compare(got, &want, tolerance)
}
