//! Seeded random inputs.
//!
//! Tests never use zeros or ones: they hide indexing bugs (a transposed read of a constant matrix
//! is still right). These draw uniform values from a seeded ChaCha8 stream, which is reproducible
//! across platforms and crate versions.

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `len` values uniform in `[-1, 1)`, from `seed`.
pub fn uniform_f32(seed: u64, len: usize) -> Vec<f32> {
    uniform_f32_in(seed, len, -1.0, 1.0)
}

/// `len` values uniform in `[lo, hi)`, from `seed`.
///
/// # Panics
/// If `lo >= hi` or either is not finite.
pub fn uniform_f32_in(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    assert!(
        lo.is_finite() && hi.is_finite() && lo < hi,
        "empty range {lo}..{hi}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// A `rows × cols` matrix uniform in `[-1, 1)`, from `seed`.
pub fn uniform_array2(seed: u64, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_vec((rows, cols), uniform_f32(seed, rows * cols))
        .expect("rows·cols values by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_different_seed_different_values() {
        assert_eq!(uniform_f32(7, 100), uniform_f32(7, 100));
        assert_ne!(uniform_f32(7, 100), uniform_f32(8, 100));
    }

    #[test]
    fn values_are_in_range_and_not_constant() {
        let v = uniform_f32_in(1, 10_000, -2.0, 3.0);
        assert!(v.iter().all(|&x| (-2.0..3.0).contains(&x)));
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!((mean - 0.5).abs() < 0.1, "mean {mean}");
        assert!(v.iter().filter(|&&x| x == 0.0).count() < 3);
    }

    #[test]
    fn array_has_shape() {
        let a = uniform_array2(3, 4, 5);
        assert_eq!(a.dim(), (4, 5));
    }
}
