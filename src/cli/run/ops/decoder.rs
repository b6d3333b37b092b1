//! The decoder's ops: RMSNorm, RoPE (through the fused RoPE + KV-append kernel the decoder runs)
//! and SwiGLU's gate.

use pertoken_attention::KvCache;
use pertoken_cost::RopePairing;
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_model::ops::{self, Columns};
use pertoken_reference::Tolerance;
use pertoken_reference::decoder as r;

use super::{Bound, Inputs, Op, Operand, Tol, Which, dtype_in, shape_error, tensor_bytes};
use crate::cli::CliError;
use crate::cli::run::{Args, OpName, Pairing};

fn f32_only(op: OpName, dtype: DType) -> Result<(), CliError> {
    dtype_in(
        op,
        dtype,
        &[DType::F32],
        "its kernel reads and writes f32 activations",
    )
    .map(|_| ())
}

/// Rows and width of a `[.., W]` operand.
fn rows_width(o: &Operand, what: &str) -> Result<(usize, usize), CliError> {
    match o.shape().split_last() {
        Some((&w, lead)) => Ok((lead.iter().product(), w)),
        None => Err(shape_error(o, format!("{what} must be at least 1-D"))),
    }
}

/// `x / sqrt(mean(x²) + eps) · w` over each row of `x: [.., D]`, `w: [D]`.
pub(super) struct RmsNorm {
    x: Operand,
    w: Operand,
    rows: usize,
    d: usize,
    eps: f32,
}

impl RmsNorm {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<RmsNorm, CliError> {
        f32_only(OpName::Rmsnorm, args.dtype)?;
        let eps = args.eps.unwrap_or(1e-5);
        if !eps.is_finite() || eps <= 0.0 {
            return Err(format!("--eps {eps}: must be a positive finite number").into());
        }
        let x = Operand::new(inputs.need("x")?, DType::F32)?;
        let w = Operand::new(inputs.need("w")?, DType::F32)?;
        let (rows, d) = rows_width(&x, "rmsnorm's x, [.., D],")?;
        if w.shape() != [d] {
            return Err(shape_error(
                &w,
                format!("rmsnorm's w must be [D] = [{d}], x's last dimension"),
            ));
        }
        Ok(RmsNorm { x, w, rows, d, eps })
    }
}

impl Op for RmsNorm {
    fn out_shape(&self) -> Vec<usize> {
        self.x.shape().to_vec()
    }

    fn operands(&self) -> Vec<&Operand> {
        vec![&self.x, &self.w]
    }

    fn bindings(&self) -> Vec<Bound> {
        vec![
            self.x.bound(false),
            self.w.bound(false),
            Bound::output(self.out_shape()),
        ]
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let x = Tensor::from_slice(gpu, &self.x.held, &[self.rows, self.d])?;
        let w = self.w.upload(gpu)?;
        let out = Tensor::zeros(gpu, &[self.rows, self.d], DType::F32)?;
        ops::rms_norm(gpu, &x, None, &w, &out, 0, self.eps)?;
        out.to_vec()
    }

    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        let (x, w) = (self.x.values(which), self.w.values(which));
        // The reference's weight is f32; w is applied here in f64 so a float64 file's w is used
        // exactly: rms_norm(x, 1)·w is the same product.
        let ones = vec![1.0f32; self.d];
        Ok(x.chunks(self.d)
            .flat_map(|row| {
                r::rms_norm(row, &ones, f64::from(self.eps))
                    .into_iter()
                    .zip(&w)
                    .map(|(v, &w)| v * w)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    fn tolerance(&self) -> Tol {
        Tol {
            tolerance: Tolerance::F32.for_reduction(self.d, self.w.rms().sqrt()),
            why: format!(
                "f32 arithmetic, widened by √D·rms(w) for the sum of D = {} squares",
                self.d
            ),
        }
    }
}

/// RoPE on `x: [L, H, D]` (tokens first, as the q projection's output is laid out), through the
/// decoder's fused kernel, which writes the turned heads first: `[H, L, D]`, as attention's q.
pub(super) struct Rope {
    x: Operand,
    l: usize,
    h: usize,
    d: usize,
    theta: f64,
    position: usize,
    pairing: RopePairing,
}

impl Rope {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<Rope, CliError> {
        f32_only(OpName::Rope, args.dtype)?;
        let theta = args.theta.unwrap_or(10_000.0);
        if !theta.is_finite() || theta <= 1.0 {
            return Err(format!("--theta {theta}: must be a finite number over 1").into());
        }
        let x = Operand::new(inputs.need("x")?, DType::F32)?;
        let [l, h, d] = *x.shape() else {
            return Err(shape_error(
                &x,
                "rope's x must be [L, n_heads, head_dim] (tokens first; x.transpose(1, 0, 2) of \
                 a heads-first [n_heads, L, head_dim] array)",
            ));
        };
        if !d.is_multiple_of(2) {
            return Err(shape_error(&x, "RoPE turns pairs: head_dim must be even"));
        }
        let pairing = match args.pairing.unwrap_or(Pairing::Halves) {
            Pairing::Halves => RopePairing::Halves,
            Pairing::Interleaved => RopePairing::Interleaved,
        };
        let position = args.position.unwrap_or(0);
        if position
            .checked_add(l)
            .is_none_or(|end| u32::try_from(end).is_err())
        {
            return Err(format!("--position {position}: positions must stay below 2³²").into());
        }
        Ok(Rope {
            x,
            l,
            h,
            d,
            theta,
            position,
            pairing,
        })
    }

    /// The largest angle any pair turns by (pair 0's frequency is 1).
    fn max_angle(&self) -> f64 {
        (self.position + self.l - 1) as f64
    }
}

impl Op for Rope {
    fn out_shape(&self) -> Vec<usize> {
        vec![self.h, self.l, self.d]
    }

    fn operands(&self) -> Vec<&Operand> {
        vec![&self.x]
    }

    fn bindings(&self) -> Vec<Bound> {
        let cache = [1, self.position + self.l, self.d];
        let kv = |what: &str| Bound {
            what: format!(
                "the KV cache's {what} the fused RoPE kernel appends to, [1, position + L, \
                 head_dim] (a smaller --position shrinks it)"
            ),
            shape: cache.to_vec(),
            dtype: DType::F32,
            bytes: tensor_bytes(&cache, DType::F32),
            split: false,
        };
        vec![
            self.x.bound(false),
            kv("keys"),
            kv("values"),
            Bound::output(self.out_shape()),
        ]
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let (l, h, d) = (self.l, self.h, self.d);
        let x = Tensor::from_slice(gpu, &self.x.held, &[l, h * d])?;
        // As the decoder computes them (ModelSpec::rope_frequencies): in f64, stored as f32.
        let freq: Vec<f32> = (0..d / 2)
            .map(|f| self.theta.powf(-2.0 * f as f64 / d as f64) as f32)
            .collect();
        let freq = Tensor::from_slice(gpu, &freq, &[d / 2])?;
        // The kernel turns tokens at the cache's next positions: mark `position` of them filled.
        // Its k and v windows (one KV head) read x's first head; only q is returned.
        let mut cache = KvCache::new(gpu, 1, self.position + l, d, DType::F32)?;
        cache.extend_written(self.position)?;
        let out = Tensor::zeros(gpu, &[h, l, d], DType::F32)?;
        let cols = [Columns { tensor: &x, col: 0 }; 3];
        let rope = ops::HeadRope {
            freq: &freq,
            pairing: self.pairing,
            qk_norm: None,
            factor: 1.0,
        };
        ops::rope_append(gpu, cols, (0, l), &rope, &out, &mut cache)?;
        out.to_vec()
    }

    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        let (l, h, d) = (self.l, self.h, self.d);
        let x = self.x.values(which);
        let rope = pertoken_cost::Rope {
            theta: self.theta,
            scaling: None,
        };
        let freqs = r::rope_frequencies(&rope, d);
        let mut out = vec![0.0; h * l * d];
        for i in 0..l {
            for j in 0..h {
                let mut head = x[(i * h + j) * d..][..d].to_vec();
                r::rope(&mut head, self.position + i, &freqs, self.pairing);
                out[(j * l + i) * d..][..d].copy_from_slice(&head);
            }
        }
        Ok(out)
    }

    /// The decoder test's bound for angles up to 8 rad (f32 sin and cos), plus the f32 angle's
    /// own rounding, which grows with the angle: position, frequency and their product are each
    /// rounded to f32 (3·2⁻²⁴ relative), all scaled by the inputs' magnitude.
    fn tolerance(&self) -> Tol {
        let angle = self.max_angle();
        let per = 2e-5 + 3.0 * f64::from(f32::EPSILON) / 2.0 * angle;
        let t = per * self.x.rms().max(1.0);
        Tol {
            tolerance: Tolerance { abs: t, rel: t },
            why: format!(
                "f32 sin and cos, and the f32 rounding of angles up to {angle} rad, widened by \
                 rms(x)"
            ),
        }
    }
}

/// `silu(g) · u` element by element.
pub(super) struct SiluMul {
    g: Operand,
    u: Operand,
    rows: usize,
    f: usize,
}

impl SiluMul {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<SiluMul, CliError> {
        f32_only(OpName::SiluMul, args.dtype)?;
        let g = Operand::new(inputs.need("g")?, DType::F32)?;
        let u = Operand::new(inputs.need("u")?, DType::F32)?;
        let (rows, f) = rows_width(&g, "silu-mul's g")?;
        if u.shape() != g.shape() {
            return Err(shape_error(
                &u,
                format!("u must have g's shape, {:?}", g.shape()),
            ));
        }
        Ok(SiluMul { g, u, rows, f })
    }
}

impl Op for SiluMul {
    fn out_shape(&self) -> Vec<usize> {
        self.g.shape().to_vec()
    }

    fn operands(&self) -> Vec<&Operand> {
        vec![&self.g, &self.u]
    }

    fn bindings(&self) -> Vec<Bound> {
        vec![
            self.g.bound(false),
            self.u.bound(false),
            Bound::output(self.out_shape()),
        ]
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let shape = [self.rows, self.f];
        let g = Tensor::from_slice(gpu, &self.g.held, &shape)?;
        let u = Tensor::from_slice(gpu, &self.u.held, &shape)?;
        let out = Tensor::zeros(gpu, &shape, DType::F32)?;
        let col = |t| Columns { tensor: t, col: 0 };
        ops::silu_mul(gpu, col(&g), col(&u), &out)?;
        out.to_vec()
    }

    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        Ok(r::silu_mul(&self.g.values(which), &self.u.values(which)))
    }

    fn tolerance(&self) -> Tol {
        let widen = (self.g.rms() * self.u.rms()).max(1.0);
        Tol {
            tolerance: Tolerance {
                abs: Tolerance::F32.abs * widen,
                rel: Tolerance::F32.rel,
            },
            why: "f32 exp and arithmetic; the absolute bound widened by rms(g)·rms(u)".into(),
        }
    }
}
