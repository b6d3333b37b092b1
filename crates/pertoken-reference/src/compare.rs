//! Comparing a kernel's output with the reference.

use std::fmt;

/// How far an output may be from the reference, element by element.
///
/// An element passes when `|actual − expected| ≤ max(abs, rel·|expected|)` (gemm's rule): `abs`
/// covers outputs near zero, where a relative bound means nothing, and `rel` the rest. NaN or
/// infinity where the reference is finite always fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute bound.
    pub abs: f64,
    /// Relative bound.
    pub rel: f64,
}

impl Tolerance {
    /// f32 storage and f32 arithmetic, one rounding per operation.
    pub const F32: Tolerance = Tolerance {
        abs: 1e-5,
        rel: 1e-5,
    };
    /// f16 storage with f32 accumulation: one f16 rounding (2⁻¹¹ ≈ 4.9e-4) dominates.
    pub const F16: Tolerance = Tolerance {
        abs: 1e-3,
        rel: 1e-3,
    };

    /// This tolerance for an output that sums `k` products of inputs of magnitude about
    /// `scale`: rounding errors of a length-`k` sum grow like √k·scale², so both bounds are
    /// widened by that factor (never narrowed).
    pub fn for_reduction(self, k: usize, scale: f64) -> Tolerance {
        let f = ((k.max(1) as f64).sqrt() * scale * scale).max(1.0);
        Tolerance {
            abs: self.abs * f,
            rel: self.rel * f,
        }
    }
}

/// What [`compare`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Largest `|actual − expected|`.
    pub max_abs: f64,
    /// Largest `|actual − expected| / |expected|`, over elements whose expected value is not 0.
    pub max_rel: f64,
    /// Normalized mean squared error: `Σ(actual − expected)² / Σ expected²`.
    pub nmse: f64,
    /// Index of the element that exceeds the tolerance by the largest factor (or of the first
    /// non-finite one), with its actual and expected values.
    pub worst: Option<(usize, f64, f64)>,
    /// How many elements fail the tolerance.
    pub failures: usize,
    /// How many elements were compared.
    pub len: usize,
    /// The tolerance used.
    pub tolerance: Tolerance,
}

impl Comparison {
    /// True when every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.failures == 0
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} elements out of tolerance (abs {:.1e}, rel {:.1e}); max abs err {:.3e}, \
             max rel err {:.3e}, NMSE {:.3e}",
            self.failures,
            self.len,
            self.tolerance.abs,
            self.tolerance.rel,
            self.max_abs,
            self.max_rel,
            self.nmse
        )?;
        if let Some((i, a, e)) = self.worst {
            write!(f, "; worst at index {i}: got {a}, expected {e}")?;
        }
        Ok(())
    }
}

/// Compares `actual` with `expected` element by element.
///
/// A length mismatch counts every missing element as a failure (and reports the first missing
/// index as the worst), so a short output can never pass.
pub fn compare<A>(actual: &[A], expected: &[f64], tolerance: Tolerance) -> Comparison
where
    A: Copy + Into<f64>,
{
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    let mut err2 = 0.0f64;
    let mut ref2 = 0.0f64;
    let mut failures = 0usize;
    let mut worst: Option<(usize, f64, f64)> = None;
    let mut worst_ratio = 0.0f64;

    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let a: f64 = a.into();
        let diff = (a - e).abs();
        let bound = tolerance.abs.max(tolerance.rel * e.abs());
        let ratio = if diff.is_nan() || (diff.is_infinite()) {
            f64::INFINITY
        } else {
            diff / bound
        };
        if ratio > 1.0 || !a.is_finite() && e.is_finite() {
            failures += 1;
        }
        if ratio > worst_ratio || worst.is_none() {
            worst_ratio = ratio;
            worst = Some((i, a, e));
        }
        if diff.is_finite() {
            max_abs = max_abs.max(diff);
            if e != 0.0 {
                max_rel = max_rel.max(diff / e.abs());
            }
            err2 += diff * diff;
        } else {
            max_abs = f64::INFINITY;
            max_rel = f64::INFINITY;
            err2 = f64::INFINITY;
        }
        ref2 += e * e;
    }

    let len = actual.len().max(expected.len());
    let common = actual.len().min(expected.len());
    if len != common {
        failures += len - common;
        if worst_ratio <= 1.0 {
            worst = Some((
                common,
                f64::NAN,
                expected.get(common).copied().unwrap_or(f64::NAN),
            ));
        }
    }
    let nmse = if ref2 > 0.0 { err2 / ref2 } else { err2 };
    Comparison {
        max_abs,
        max_rel,
        nmse,
        worst,
        failures,
        len,
        tolerance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_inputs_pass_with_zero_error() {
        let c = compare(&[1.0f32, -2.0, 3.5], &[1.0, -2.0, 3.5], Tolerance::F32);
        assert!(c.passed(), "{c}");
        assert_eq!((c.max_abs, c.max_rel, c.nmse), (0.0, 0.0, 0.0));
    }

    #[test]
    fn reports_the_worst_index_and_errors() {
        let c = compare(&[1.0f32, 2.5, 3.0], &[1.0, 2.0, 3.0], Tolerance::F32);
        assert!(!c.passed());
        assert_eq!(c.failures, 1);
        assert_eq!(c.worst, Some((1, 2.5, 2.0)));
        assert_eq!(c.max_abs, 0.5);
        assert_eq!(c.max_rel, 0.25);
        approx::assert_relative_eq!(c.nmse, 0.25 / 14.0);
    }

    #[test]
    fn nan_fails_even_with_huge_tolerance() {
        let tol = Tolerance {
            abs: 1e30,
            rel: 1e30,
        };
        let c = compare(&[1.0f32, f32::NAN], &[1.0, 2.0], tol);
        assert_eq!(c.failures, 1);
        assert_eq!(c.worst.map(|w| w.0), Some(1));
        let c = compare(&[f32::INFINITY], &[2.0], tol);
        assert_eq!(c.failures, 1);
    }

    #[test]
    fn short_output_fails() {
        let c = compare(&[1.0f32], &[1.0, 2.0], Tolerance::F32);
        assert_eq!(c.failures, 1);
        assert_eq!(c.worst.map(|w| w.0), Some(1));
    }

    #[test]
    fn abs_bound_covers_values_near_zero() {
        let c = compare(&[1e-6f32], &[0.0], Tolerance::F32);
        assert!(c.passed(), "{c}");
        let c = compare(&[1e-4f32], &[0.0], Tolerance::F32);
        assert!(!c.passed(), "{c}");
    }

    #[test]
    fn reduction_tolerance_grows_with_k() {
        let t = Tolerance::F32.for_reduction(400, 1.0);
        assert_eq!(t.abs, 2e-4);
        assert_eq!(Tolerance::F32.for_reduction(0, 1.0), Tolerance::F32);
    }
}
