//! Checking operands and describing the problem they pose.

use pertoken_gpu::{DType, Error, Result, Tensor};

/// The `[M, K, N]` of one matmul (per batch entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Columns of B and C.
    pub n: usize,
}

impl MatmulShape {
    /// Floating-point operations: 2·M·N·K.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// A checked matmul or linear: shapes, dtypes and batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    /// Batch entries (1 when neither operand has a batch dimension).
    pub batch: usize,
    /// Per-entry shape.
    pub shape: MatmulShape,
    /// A's (x's) dtype: F32 or F16.
    pub a_dtype: DType,
    /// B's (w's) dtype.
    pub b_dtype: DType,
    /// B is a Linear weight `[N, K]`.
    pub b_trans: bool,
    /// A has a batch dimension (else it is shared by every entry).
    pub a_batched: bool,
    /// B has a batch dimension.
    pub b_batched: bool,
}

impl Problem {
    /// Bytes the problem must move at least: each operand read once, C (f32) written once.
    pub fn min_bytes(&self) -> f64 {
        let MatmulShape { m, k, n } = self.shape;
        let bytes = |dt: DType, len: usize| {
            let (elems, bytes) = dt.block();
            (len / elems * bytes) as f64
        };
        let a = bytes(self.a_dtype, m * k)
            * if self.a_batched {
                self.batch as f64
            } else {
                1.0
            };
        let b = bytes(self.b_dtype, k * n)
            * if self.b_batched {
                self.batch as f64
            } else {
                1.0
            };
        a + b + 4.0 * (self.batch * m * n) as f64
    }

    /// Floating-point operations over the whole batch.
    pub fn flops(&self) -> f64 {
        self.batch as f64 * self.shape.flops()
    }

    /// The output's shape.
    pub fn out_shape(&self, leading: &[usize]) -> Vec<usize> {
        let mut s = leading.to_vec();
        s.push(self.shape.n);
        s
    }
}

fn invalid(op: &'static str, t: &Tensor, reason: impl Into<String>) -> Error {
    Error::InvalidShape {
        op,
        shape: t.shape().to_vec(),
        reason: reason.into(),
    }
}

fn check_activation(op: &'static str, t: &Tensor) -> Result<()> {
    match t.dtype() {
        DType::F32 | DType::F16 => Ok(()),
        other => Err(Error::DTypeMismatch {
            op,
            expected: DType::F32,
            got: other,
        }),
    }
}

fn check_u32(op: &'static str, t: &Tensor) -> Result<()> {
    if u32::try_from(t.len()).is_err() {
        return Err(invalid(
            op,
            t,
            "more than 2³²−1 elements; the kernels index with u32",
        ));
    }
    Ok(())
}

/// Checks `a · b` for `a: [M,K]` or `[B,M,K]` and `b: [K,N]` or `[B,K,N]` (f32 or f16 each).
pub fn check_matmul(a: &Tensor, b: &Tensor) -> Result<Problem> {
    const OP: &str = "matmul";
    check_activation(OP, a)?;
    if b.dtype().is_quantized() {
        return Err(Error::Unsupported {
            op: OP,
            reason: format!(
                "{} weights are stored [N, K]; use linear(x, w) for x·wᵀ",
                b.dtype()
            ),
        });
    }
    check_activation(OP, b)?;
    check_u32(OP, a)?;
    check_u32(OP, b)?;
    let (a_batch, m, k) = match a.shape() {
        [m, k] => (None, *m, *k),
        [bt, m, k] => (Some(*bt), *m, *k),
        _ => return Err(invalid(OP, a, "expected [M, K] or [B, M, K]")),
    };
    let (b_batch, k2, n) = match b.shape() {
        [k, n] => (None, *k, *n),
        [bt, k, n] => (Some(*bt), *k, *n),
        _ => return Err(invalid(OP, b, "expected [K, N] or [B, K, N]")),
    };
    let mismatch = |expected: &str| Error::ShapeMismatch {
        op: OP,
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
        expected: expected.into(),
    };
    if k != k2 {
        return Err(mismatch(
            "a = [.., M, K] and b = [.., K, N]: a's columns must equal b's rows",
        ));
    }
    let batch = match (a_batch, b_batch) {
        (Some(x), Some(y)) if x != y => return Err(mismatch("equal batch sizes")),
        (Some(x), _) | (None, Some(x)) => x,
        (None, None) => 1,
    };
    let out_len = batch
        .checked_mul(m * n)
        .filter(|&l| u32::try_from(l).is_ok());
    if out_len.is_none() {
        return Err(invalid(
            OP,
            a,
            "the output would have more than 2³²−1 elements",
        ));
    }
    Ok(Problem {
        batch,
        shape: MatmulShape { m, k, n },
        a_dtype: a.dtype(),
        b_dtype: b.dtype(),
        b_trans: false,
        a_batched: a_batch.is_some(),
        b_batched: b_batch.is_some(),
    })
}

/// Checks `x · wᵀ (+ bias)` for `x: [.., K]` (f32 or f16), `w: [N, K]` (f32, f16, Q8_0, Q4_0)
/// and `bias: [N]` (f32). Leading dimensions of x are flattened into M.
pub fn check_linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Problem> {
    const OP: &str = "linear";
    check_activation(OP, x)?;
    check_u32(OP, x)?;
    let (n, k) = match w.shape() {
        &[n, k] => (n, k),
        _ => {
            return Err(invalid(
                OP,
                w,
                "the weight must be [N, K] (out_features, in_features)",
            ));
        }
    };
    let Some((&kx, lead)) = x.shape().split_last() else {
        return Err(invalid(OP, x, "x needs at least one dimension"));
    };
    if kx != k {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: w.shape().to_vec(),
            expected: "x = [.., K] and w = [N, K]: x's last dimension must equal w's columns"
                .into(),
        });
    }
    let m: usize = lead.iter().product();
    if u32::try_from(m.saturating_mul(n)).is_err() {
        return Err(invalid(
            OP,
            x,
            "the output would have more than 2³²−1 elements",
        ));
    }
    if let Some(b) = bias {
        if b.dtype() != DType::F32 {
            return Err(Error::DTypeMismatch {
                op: OP,
                expected: DType::F32,
                got: b.dtype(),
            });
        }
        if b.shape() != [n] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: b.shape().to_vec(),
                rhs: w.shape().to_vec(),
                expected: "bias = [N] for w = [N, K]".into(),
            });
        }
    }
    Ok(Problem {
        batch: 1,
        shape: MatmulShape { m, k, n },
        a_dtype: x.dtype(),
        b_dtype: w.dtype(),
        b_trans: true,
        a_batched: false,
        b_batched: false,
    })
}

/// Checks that `out` can receive `problem`'s result and is not one of the inputs.
pub(crate) fn check_out(
    op: &'static str,
    out: &Tensor,
    expected_shape: &[usize],
    inputs: &[&Tensor],
) -> Result<()> {
    if out.dtype() != DType::F32 {
        return Err(Error::DTypeMismatch {
            op,
            expected: DType::F32,
            got: out.dtype(),
        });
    }
    if out.shape() != expected_shape {
        return Err(Error::ShapeMismatch {
            op,
            lhs: out.shape().to_vec(),
            rhs: expected_shape.to_vec(),
            expected: "the output must have the result's shape".into(),
        });
    }
    if inputs
        .iter()
        .any(|t| std::ptr::eq(out.buffer(), t.buffer()))
    {
        return Err(invalid(
            op,
            out,
            "the output tensor is also an input; pass a separate output",
        ));
    }
    Ok(())
}
