//! `attention`: `softmax(q·kᵀ·scale + mask)·v`, grouped-query, causal or not.

use pertoken_attention::{AttentionOptions, MAX_HEAD_DIM};
use pertoken_gpu::{DType, Gpu};
use pertoken_reference::{AttentionShape, Tolerance};

use super::{Bound, Inputs, Op, Operand, Tol, Which, dtype_in, shape_error};
use crate::cli::CliError;
use crate::cli::run::{Args, OpName};

/// `q: [H, Lq, D]`, `k, v: [Hkv, Lkv, D]`; query head h reads KV head h / (H / Hkv).
pub(super) struct Attention {
    q: Operand,
    k: Operand,
    v: Operand,
    shape: AttentionShape,
    scale: f32,
}

impl Attention {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<Attention, CliError> {
        let dtype = dtype_in(
            OpName::Attention,
            args.dtype,
            &[DType::F32, DType::F16],
            "q, k and v are activations, read in f32 or f16 (all three alike)",
        )?;
        let q = Operand::new(inputs.need("q")?, dtype)?;
        let k = Operand::new(inputs.need("k")?, dtype)?;
        let v = Operand::new(inputs.need("v")?, dtype)?;
        let [n_heads, q_len, head_dim] = *q.shape() else {
            return Err(shape_error(
                &q,
                "attention's q must be [n_heads, q_len, head_dim]",
            ));
        };
        let [n_kv_heads, kv_len, kd] = *k.shape() else {
            return Err(shape_error(
                &k,
                "attention's k must be [n_kv_heads, kv_len, head_dim]",
            ));
        };
        if v.shape() != k.shape() {
            return Err(shape_error(
                &v,
                format!("v must have k's shape, {:?}", k.shape()),
            ));
        }
        if kd != head_dim {
            return Err(shape_error(
                &k,
                format!(
                    "its head_dim (last dimension) must equal q's, {:?}",
                    q.shape()
                ),
            ));
        }
        if !n_heads.is_multiple_of(n_kv_heads) {
            return Err(shape_error(
                &k,
                format!(
                    "q's {n_heads} heads must be a multiple of its {n_kv_heads} KV heads \
                     (grouped-query attention)"
                ),
            ));
        }
        if args.causal && q_len > kv_len {
            return Err(shape_error(
                &q,
                format!(
                    "--causal needs q_len ≤ kv_len = {kv_len}: the queries are the last q_len \
                     positions of the keys"
                ),
            ));
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(shape_error(
                &q,
                format!("head_dim {head_dim} is over the kernels' maximum of {MAX_HEAD_DIM}"),
            ));
        }
        let scale = args.scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
        if !scale.is_finite() {
            return Err(format!("--scale {scale}: the score scale must be a finite number").into());
        }
        Ok(Attention {
            q,
            k,
            v,
            shape: AttentionShape {
                n_heads,
                n_kv_heads,
                head_dim,
                q_len,
                kv_len,
                causal: args.causal,
            },
            scale,
        })
    }
}

impl Op for Attention {
    fn out_shape(&self) -> Vec<usize> {
        self.q.shape().to_vec()
    }

    fn operands(&self) -> Vec<&Operand> {
        vec![&self.q, &self.k, &self.v]
    }

    fn bindings(&self) -> Vec<Bound> {
        vec![
            self.q.bound(false),
            self.k.bound(false),
            self.v.bound(false),
            Bound::output(self.out_shape()),
        ]
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let (q, k, v) = (
            self.q.upload(gpu)?,
            self.k.upload(gpu)?,
            self.v.upload(gpu)?,
        );
        let options = AttentionOptions {
            causal: self.shape.causal,
            scale: Some(self.scale),
            window: None,
        };
        pertoken_attention::attention(gpu, &q, &k, &v, options)?.to_vec()
    }

    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        let (q, k, v) = (
            self.q.values(which),
            self.k.values(which),
            self.v.values(which),
        );
        pertoken_reference::attention(&q, &k, &v, self.shape, f64::from(self.scale))
            .map_err(|e| format!("the CPU reference refused the inputs: {e}").into())
    }

    /// The attention tests' tolerance (values in [-1, 1], scores of magnitude about 1), widened
    /// for larger values (the output is a convex combination of v's rows) and larger scores
    /// (the error of exp(s) grows with s).
    fn tolerance(&self) -> Tol {
        let d = self.shape.head_dim as f64;
        let score = f64::from(self.scale).abs() * self.q.rms() * self.k.rms() * d.sqrt();
        let widen = self.v.rms().max(1.0) * score.max(1.0);
        let base = Tolerance {
            abs: 2e-5 * widen,
            rel: 2e-5 * widen,
        };
        Tol {
            tolerance: base.for_reduction(self.shape.kv_len, 1.0),
            why: format!(
                "f32 exponentials and sums over {} keys, widened by rms(v) and by \
                 |scale|·rms(q)·rms(k)·√head_dim",
                self.shape.kv_len
            ),
        }
    }
}
