//! Matrix multiply with f64 accumulation.

use ndarray::{Array2, ArrayView2};

/// Why a reference op refused its inputs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The inner dimensions of a matmul differ.
    #[error("matmul: inner dimensions differ: a is {a:?}, b is {b:?} (need a = [M,K], b = [K,N])")]
    InnerDimMismatch {
        /// Shape of the left operand.
        a: [usize; 2],
        /// Shape of the right operand.
        b: [usize; 2],
    },
    /// A bias whose length is not the output width.
    #[error("linear: bias has {got} elements, the output has {n} columns")]
    BiasLength {
        /// Output columns.
        n: usize,
        /// Bias length given.
        got: usize,
    },
}

/// `a · b` for `a: [M,K]`, `b: [K,N]`, each element widened to f64 and accumulated in f64.
///
/// Accepts any element type that widens to f64 without loss (f32, `half::f16`, f64). The result
/// is exact to f64 rounding, which is far below the error of any f32 or f16 kernel.
pub fn matmul<T>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Result<Array2<f64>, ReferenceError>
where
    T: Copy + Into<f64>,
{
    if a.ncols() != b.nrows() {
        return Err(ReferenceError::InnerDimMismatch {
            a: [a.nrows(), a.ncols()],
            b: [b.nrows(), b.ncols()],
        });
    }
    let a64 = a.mapv(Into::into);
    let b64 = b.mapv(Into::into);
    // ndarray's f64 `dot` (matrixmultiply's dgemm) accumulates every product in f64.
    Ok(a64.dot(&b64))
}

/// `x · wᵀ (+ bias)` for `x: [M,K]`, `w: [N,K]` (PyTorch's `Linear` layout), `bias: [N]`, with
/// f64 accumulation.
pub fn linear<T>(
    x: ArrayView2<'_, T>,
    w: ArrayView2<'_, T>,
    bias: Option<&[T]>,
) -> Result<Array2<f64>, ReferenceError>
where
    T: Copy + Into<f64>,
{
    if x.ncols() != w.ncols() {
        return Err(ReferenceError::InnerDimMismatch {
            a: [x.nrows(), x.ncols()],
            b: [w.ncols(), w.nrows()],
        });
    }
    if let Some(b) = bias
        && b.len() != w.nrows()
    {
        return Err(ReferenceError::BiasLength {
            n: w.nrows(),
            got: b.len(),
        });
    }
    let mut y = matmul(x, w.t())?;
    if let Some(b) = bias {
        for mut row in y.rows_mut() {
            for (v, &bj) in row.iter_mut().zip(b) {
                *v += bj.into();
            }
        }
    }
    Ok(y)
}

/// [`matmul`] on row-major slices: `a` is `m×k`, `b` is `k×n`; returns `m×n` row-major.
///
/// # Panics
/// If a slice's length does not match its shape: this is a test helper, and a wrong length is a
/// bug in the test.
pub fn matmul_f32(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let a = ArrayView2::from_shape((m, k), a).expect("a has m·k elements");
    let b = ArrayView2::from_shape((k, n), b).expect("b has k·n elements");
    let c = matmul(a, b).expect("inner dimensions agree by construction");
    c.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matches_a_hand_computation() {
        let a = array![[1.5f32, -2.0, 0.25], [3.0, 0.5, -1.0]];
        let b = array![[2.0f32, 1.0], [-0.5, 4.0], [8.0, -2.0]];
        let c = matmul(a.view(), b.view()).unwrap();
        // Row 0: 1.5·2 + (−2)(−0.5) + 0.25·8 = 6;  1.5·1 + (−2)·4 + 0.25(−2) = −7
        // Row 1: 3·2 + 0.5(−0.5) + (−1)·8 = −2.25;  3·1 + 0.5·4 + (−1)(−2) = 7
        assert_eq!(c, array![[6.0, -7.0], [-2.25, 7.0]]);
    }

    #[test]
    fn accumulates_in_f64() {
        // 1 + 1e-8 − 1 is lost in f32 but kept in f64.
        let a = array![[1.0f32, 1e-8, -1.0]];
        let b = array![[1.0f32], [1.0], [1.0]];
        let c = matmul(a.view(), b.view()).unwrap();
        assert!((c[[0, 0]] - 1e-8).abs() < 1e-15, "{}", c[[0, 0]]);
    }

    #[test]
    fn rejects_mismatched_inner_dims() {
        let a = Array2::<f32>::zeros((2, 3));
        let b = Array2::<f32>::zeros((4, 2));
        assert_eq!(
            matmul(a.view(), b.view()).unwrap_err(),
            ReferenceError::InnerDimMismatch {
                a: [2, 3],
                b: [4, 2]
            }
        );
    }

    #[test]
    fn linear_is_x_times_w_transposed_plus_bias() {
        let x = array![[1.0f32, 2.0], [0.5, -1.0]];
        let w = array![[3.0f32, -1.0], [0.25, 4.0], [2.0, 2.0]];
        let y = linear(x.view(), w.view(), Some(&[0.5, -0.5, 1.0])).unwrap();
        // Row 0: 1·3 + 2·(−1) + 0.5 = 1.5;  1·0.25 + 2·4 − 0.5 = 7.75;  1·2 + 2·2 + 1 = 7
        // Row 1: 1.5 + 1 + 0.5 = 3;  0.125 − 4 − 0.5 = −4.375;  1 − 2 + 1 = 0
        assert_eq!(y, array![[1.5, 7.75, 7.0], [3.0, -4.375, 0.0]]);
        assert!(matches!(
            linear(x.view(), w.view(), Some(&[1.0])),
            Err(ReferenceError::BiasLength { n: 3, got: 1 })
        ));
    }

    #[test]
    fn f16_inputs_widen_exactly() {
        let a = array![[half::f16::from_f32(0.1)]];
        let b = array![[half::f16::from_f32(3.0)]];
        let c = matmul(a.view(), b.view()).unwrap();
        assert_eq!(c[[0, 0]], f64::from(half::f16::from_f32(0.1)) * 3.0);
    }
}
