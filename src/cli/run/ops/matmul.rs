//! `matmul` (`a · b`) and `linear` (`x · wᵀ + bias`).

use ndarray::ArrayView2;
use pertoken_gpu::{DType, Gpu};
use pertoken_reference::Tolerance;

use super::{Bound, Inputs, Op, Operand, Tol, Which, dtype_in, shape_error};
use crate::cli::CliError;
use crate::cli::run::{Args, OpName};

/// `a: [M, K]` or `[B, M, K]` times `b: [K, N]` or `[B, K, N]`; a 2-D operand is shared by
/// every batch entry.
pub(super) struct Matmul {
    a: Operand,
    b: Operand,
    batch: Option<usize>,
    m: usize,
    k: usize,
    n: usize,
}

fn view<'a>(v: &'a [f64], rows: usize, cols: usize) -> ArrayView2<'a, f64> {
    ArrayView2::from_shape((rows, cols), v).expect("the shape was checked")
}

fn reference_error(e: impl std::fmt::Display) -> CliError {
    format!("the CPU reference refused the inputs: {e}").into()
}

impl Matmul {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<Matmul, CliError> {
        let dtype = dtype_in(
            OpName::Matmul,
            args.dtype,
            &[DType::F32, DType::F16],
            "quantized weights are stored [N, K], row by row: give w = b.T to `pertoken run \
             linear`, which computes x · wᵀ in every format",
        )?;
        let a = Operand::new(inputs.need("a")?, DType::F32)?;
        let b = Operand::new(inputs.need("b")?, dtype)?;
        let (a_batch, m, k) = match *a.shape() {
            [m, k] => (None, m, k),
            [bt, m, k] => (Some(bt), m, k),
            _ => return Err(shape_error(&a, "matmul's a must be [M, K] or [B, M, K]")),
        };
        let (b_batch, k2, n) = match *b.shape() {
            [k, n] => (None, k, n),
            [bt, k, n] => (Some(bt), k, n),
            _ => return Err(shape_error(&b, "matmul's b must be [K, N] or [B, K, N]")),
        };
        if k != k2 {
            return Err(shape_error(
                &b,
                format!(
                    "its rows must equal the columns of a, {:?} (a = [.., M, K], b = [.., K, N])",
                    a.shape()
                ),
            ));
        }
        let batch = match (a_batch, b_batch) {
            (Some(x), Some(y)) if x != y => {
                return Err(shape_error(
                    &b,
                    format!("its batch differs from a's {:?}", a.shape()),
                ));
            }
            (x, y) => x.or(y),
        };
        Ok(Matmul {
            a,
            b,
            batch,
            m,
            k,
            n,
        })
    }
}

impl Op for Matmul {
    fn out_shape(&self) -> Vec<usize> {
        let mut s: Vec<usize> = self.batch.into_iter().collect();
        s.extend([self.m, self.n]);
        s
    }

    fn operands(&self) -> Vec<&Operand> {
        vec![&self.a, &self.b]
    }

    fn bindings(&self) -> Vec<Bound> {
        vec![
            self.a.bound(false),
            self.b.bound(false),
            Bound::output(self.out_shape()),
        ]
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let (a, b) = (self.a.upload(gpu)?, self.b.upload(gpu)?);
        pertoken_matmul::matmul(gpu, &a, &b)?.to_vec()
    }

    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        let (a, b) = (self.a.values(which), self.b.values(which));
        let (m, k, n) = (self.m, self.k, self.n);
        let a_step = if self.a.shape().len() == 3 { m * k } else { 0 };
        let b_step = if self.b.shape().len() == 3 { k * n } else { 0 };
        let mut out = Vec::with_capacity(self.batch.unwrap_or(1) * m * n);
        for e in 0..self.batch.unwrap_or(1) {
            let av = view(&a[e * a_step..][..m * k], m, k);
            let bv = view(&b[e * b_step..][..k * n], k, n);
            let c = pertoken_reference::matmul(av, bv).map_err(reference_error)?;
            out.extend(c.iter().copied());
        }
        Ok(out)
    }

    fn tolerance(&self) -> Tol {
        let scale = (self.a.rms() * self.b.rms()).sqrt();
        Tol {
            tolerance: Tolerance::F32.for_reduction(self.k, scale),
            why: format!(
                "f32 arithmetic, widened by √K·rms(a)·rms(b) for sums of K = {} products",
                self.k
            ),
        }
    }
}

/// `x: [.., K]` times `w: [N, K]` transposed, plus `bias: [N]`.
pub(super) struct Linear {
    x: Operand,
    w: Operand,
    bias: Option<Operand>,
    m: usize,
    k: usize,
    n: usize,
}

impl Linear {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<Linear, CliError> {
        let x = Operand::new(inputs.need("x")?, DType::F32)?;
        let w = Operand::new(inputs.need("w")?, args.dtype)?;
        let bias = inputs
            .float("bias")?
            .map(|b| Operand::new(b, DType::F32))
            .transpose()?;
        let Some((&k, lead)) = x.shape().split_last() else {
            return Err(shape_error(&x, "linear's x must be [.., K], at least 1-D"));
        };
        let [n, kw] = *w.shape() else {
            return Err(shape_error(
                &w,
                "linear's w must be [N, K] (out_features, in_features), as PyTorch's Linear stores it",
            ));
        };
        if kw != k {
            return Err(shape_error(
                &w,
                format!(
                    "its columns must equal x's last dimension, {:?} (x = [.., K], w = [N, K])",
                    x.shape()
                ),
            ));
        }
        if let Some(b) = &bias
            && b.shape() != [n]
        {
            return Err(shape_error(
                b,
                format!("the bias must be [N] = [{n}], w's rows"),
            ));
        }
        Ok(Linear {
            m: lead.iter().product(),
            x,
            w,
            bias,
            k,
            n,
        })
    }
}

impl Op for Linear {
    fn out_shape(&self) -> Vec<usize> {
        let mut s = self.x.shape()[..self.x.shape().len() - 1].to_vec();
        s.push(self.n);
        s
    }

    fn operands(&self) -> Vec<&Operand> {
        let mut v = vec![&self.x, &self.w];
        v.extend(&self.bias);
        v
    }

    fn bindings(&self) -> Vec<Bound> {
        let mut v = vec![self.x.bound(false), self.w.bound(true)];
        v.extend(self.bias.as_ref().map(|b| b.bound(false)));
        v.push(Bound::output(self.out_shape()));
        v
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let (x, w) = (self.x.upload(gpu)?, self.w.upload(gpu)?);
        let bias = self.bias.as_ref().map(|b| b.upload(gpu)).transpose()?;
        pertoken_matmul::linear(gpu, &x, &w, bias.as_ref())?.to_vec()
    }

    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        let (x, w) = (self.x.values(which), self.w.values(which));
        let bias = self.bias.as_ref().map(|b| b.values(which));
        let y = pertoken_reference::linear(
            view(&x, self.m, self.k),
            view(&w, self.n, self.k),
            bias.as_deref(),
        )
        .map_err(reference_error)?;
        Ok(y.iter().copied().collect())
    }

    fn tolerance(&self) -> Tol {
        let scale = (self.x.rms() * self.w.rms()).sqrt();
        Tol {
            tolerance: Tolerance::F32.for_reduction(self.k, scale),
            why: format!(
                "f32 arithmetic, widened by √K·rms(x)·rms(w) for sums of K = {} products",
                self.k
            ),
        }
    }
}
