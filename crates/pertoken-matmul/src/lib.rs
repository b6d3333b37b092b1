//! Matrix multiply and linear layers on the GPU.
//!
//! - [`matmul`]: `C = A·B` for row-major `A: [M,K]` and `B: [K,N]`, each f32 or f16, with an
//!   optional leading batch dimension on either (a 2-D operand is shared by every entry).
//! - [`linear`]: `y = x·wᵀ (+ bias)` for weights `w: [N,K]` as PyTorch's `Linear` and model
//!   checkpoints store them, in f32, f16, or ggml's Q8_0 and Q4_0 (dequantized in the kernel), with
//!   activations `x: [.., K]` in f32 or f16.
//!
//! Outputs are f32; accumulation is always f32. Every `M, N, K ≥ 1` works; quantized weights need
//! `K % 32 == 0`, as their format does.
//!
//! Four kernels: [`Kernel::Naive`], one invocation per output, kept as the f32 baseline;
//! [`Kernel::Tiled`], register-blocked tiles staged in workgroup memory (prefill and square
//! shapes); and [`Kernel::Gemv`], split-K with workgroup reductions for linear layers on up to
//! [`GEMV_MAX_M`] rows (decode), where the weights' bytes are the whole cost, and optionally
//! several weight rows per invocation (each load of x serves all of them: what counts on CPU
//! adapters such as llvmpipe, where loads run lane by lane); and [`Kernel::Team`], for adapters
//! whose subgroups are exactly 8 wide: one subgroup per workgroup, B read straight from memory,
//! A passed between lanes by subgroup shuffles, no workgroup memory (every format; the fastest
//! on llvmpipe by 2–5×). [`select`] and
//! [`select_linear`] pick one from the shape and the adapter's
//! [`Capabilities`](pertoken_gpu::Capabilities).
//!
//! Weights larger than the adapter's storage-binding limit are split along N into windows the
//! adapter can bind, one dispatch each.
//!
//! Ops record into the [`Gpu`]'s pending encoder: nothing runs until the result is downloaded or
//! [`Gpu::sync`] is called.

mod config;
mod launch;
mod problem;
pub mod tune;

pub use config::{
    GEMV_CANDIDATES, GEMV_MAX_M, GEMV_REDUCE_SLOTS, GemvConfig, Kernel, NAIVE_WORKGROUP,
    TEAM_CANDIDATES, TEAM_SUBGROUP, TILE_CANDIDATES, TILED_MAX_TILE, TILED_WORKGROUP_BYTES,
    TeamConfig, TileConfig, TiledLayout,
};
pub use problem::{MatmulShape, Problem, check_linear, check_matmul};
pub use tune::{Choice, TuneMode, Tuner};

use pertoken_gpu::{Capabilities, DType, Error, Gpu, Result, Tensor};

/// Checks that `a` and `b` can be multiplied and returns the per-entry shape.
pub fn check(a: &Tensor, b: &Tensor) -> Result<MatmulShape> {
    Ok(check_matmul(a, b)?.shape)
}

/// The kernel the heuristic picks for `shape` on an adapter with `caps`.
///
/// CPU adapters whose subgroups are exactly 8 wide (llvmpipe) get the team kernel, with as many
/// rows per workgroup as M fills (measured on llvmpipe at 1024³ and 2048³: 2.3–3.7× the best
/// tiled configuration; BENCHMARKS.md). Otherwise the tiled kernel:
///
/// The tiled kernel beats the naive one at every size we measured from 32³ up (see
/// BENCHMARKS.md). The tile is the largest of 128×128, 64×64 and 32×32 that gives at least
/// [`MIN_WORKGROUPS`] workgroups and wastes at most a quarter of its work on padding (a 192×192
/// output in 128×128 tiles computes 1.8× the elements it needs). The naive kernel remains for
/// adapters whose limits no tile configuration fits.
pub fn select(caps: &Capabilities, shape: MatmulShape) -> Kernel {
    if let Some(c) = team_for(caps, shape.m) {
        return Kernel::Team(c);
    }
    const LARGE: TileConfig = TileConfig {
        bm: 128,
        bn: 128,
        bk: 16,
        tm: 8,
        tn: 8,
    };
    const MEDIUM: TileConfig = TileConfig {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 8,
        tn: 8,
    };
    const SMALL: TileConfig = TileConfig {
        bm: 32,
        bn: 32,
        bk: 16,
        tm: 4,
        tn: 4,
    };
    let good = |c: &TileConfig| {
        let (bm, bn) = (c.bm as usize, c.bn as usize);
        let tiles = shape.m.div_ceil(bm) * shape.n.div_ceil(bn);
        let used = (shape.m * shape.n) as f64 / (tiles * bm * bn) as f64;
        tiles >= MIN_WORKGROUPS && used >= 0.75
    };
    let by_size = [LARGE, MEDIUM, SMALL];
    let first = by_size.iter().position(good).unwrap_or(by_size.len() - 1);
    by_size[first..]
        .iter()
        .chain(TILE_CANDIDATES)
        .find(|c| c.fits(caps))
        .map_or(Kernel::Naive, |c| Kernel::Tiled(*c))
}

/// The team configuration for `m` rows on a CPU adapter that runs the team kernel: 8, 16 or 32
/// rows per workgroup, the fewest that cover min(m, 32); 4 columns per invocation. (8 columns
/// measured 5–18% faster at SmolLM2's and a 4096×4096 weight's shapes from 16 rows on, but the
/// CI suite's linear tests, many narrow and odd shapes, took 1546 s against 870 with them:
/// BENCHMARKS.md, twelfth pass. Tuning picks per shape.)
fn team_for(caps: &Capabilities, m: usize) -> Option<TeamConfig> {
    let tm = match m {
        0..=8 => 8,
        9..=16 => 16,
        _ => 32,
    };
    let c = TeamConfig { tm, tn: 4 };
    (caps.cpu && c.fits(caps)).then_some(c)
}

/// The GEMV heuristic's order on CPU adapters: most rows per invocation first.
const GEMV_CANDIDATES_CPU: &[GemvConfig] = &[
    GemvConfig {
        wg: 64,
        rows: 512,
        rpi: 8,
    },
    GemvConfig {
        wg: 64,
        rows: 256,
        rpi: 4,
    },
    GemvConfig {
        wg: 64,
        rows: 128,
        rpi: 2,
    },
    GemvConfig {
        wg: 64,
        rows: 64,
        rpi: 1,
    },
];

/// Fewest workgroups [`select`] accepts before it shrinks the tile.
pub const MIN_WORKGROUPS: usize = 4;

/// The kernel the heuristic picks for a linear layer: GEMV for up to [`GEMV_MAX_M`] rows of x,
/// for more the team kernel where [`select`] would pick it, else tiled.
pub fn select_linear(caps: &Capabilities, problem: &Problem) -> Kernel {
    let m = problem.shape.m;
    // CPU adapters with the team kernel: it beats every GEMV from 5 rows of x on (its time hardly
    // grows with M; measured on llvmpipe at 4096×4096 f16: 12.6 against 21.5 ms at M = 8, 15.2
    // against 66.9 at M = 16, but 11.7 against 8.3 at M = 4).
    if m > 4
        && let Some(c) = team_for(caps, m)
    {
        return Kernel::Team(c);
    }
    if m <= GEMV_MAX_M {
        // GPUs: split-K across invocations, so every row's loads coalesce. An H100 sweep of
        // every candidate (BENCHMARKS.md) put 4 weight rows per invocation in groups of 64
        // invocations fastest or within 10% up to 4 rows of x (4096×4096, 4096×14336 and
        // 14336×4096, f16 and Q4_0: 1.3–1.7× the first candidate at 4096×4096), and 2 weight
        // rows per workgroup fastest at 16 rows of x.
        // CPU adapters: one invocation per group of rows, as many rows as registers allow, so
        // each (lane-by-lane) load of x serves them all (measured on llvmpipe: BENCHMARKS.md).
        let gpu_first = if m <= 4 {
            GemvConfig {
                wg: 256,
                rows: 16,
                rpi: 4,
            }
        } else {
            GemvConfig {
                wg: 256,
                rows: 2,
                rpi: 1,
            }
        };
        let found = if caps.cpu {
            GEMV_CANDIDATES_CPU
                .iter()
                .chain(GEMV_CANDIDATES)
                .find(|c| c.fits(caps, m))
        } else {
            std::iter::once(&gpu_first)
                .chain(GEMV_CANDIDATES)
                .find(|c| c.fits(caps, m))
        };
        if let Some(c) = found {
            return Kernel::Gemv(*c);
        }
    }
    if let Some(c) = team_for(caps, problem.shape.m) {
        return Kernel::Team(c);
    }
    match select(caps, problem.shape) {
        // The naive kernel does not read [N, K] weights: the smallest tile is the fallback.
        Kernel::Naive | Kernel::Gemv(_) | Kernel::Team(_) => Kernel::Tiled(TileConfig {
            bm: 32,
            bn: 32,
            bk: 16,
            tm: 4,
            tn: 4,
        }),
        k => k,
    }
}

/// `a · b` with the kernel [`select`] picks.
pub fn matmul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let p = check_matmul(a, b)?;
    matmul_with(gpu, a, b, select(gpu.capabilities(), p.shape))
}

/// `a · b` with a given kernel.
pub fn matmul_with(gpu: &Gpu, a: &Tensor, b: &Tensor, kernel: Kernel) -> Result<Tensor> {
    let p = check_matmul(a, b)?;
    let out = Tensor::zeros(gpu, &matmul_out_shape(&p), DType::F32)?;
    matmul_into(gpu, a, b, &out, kernel)?;
    Ok(out)
}

pub(crate) fn matmul_out_shape(p: &Problem) -> Vec<usize> {
    if p.a_batched || p.b_batched {
        vec![p.batch, p.shape.m, p.shape.n]
    } else {
        vec![p.shape.m, p.shape.n]
    }
}

/// `out = a · b` with a given kernel, into an existing f32 tensor of the result's shape.
pub fn matmul_into(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor, kernel: Kernel) -> Result<()> {
    let p = check_matmul(a, b)?;
    problem::check_out("matmul", out, &matmul_out_shape(&p), &[a, b])?;
    match kernel {
        Kernel::Naive => launch::naive(gpu, &p, a, b, out),
        Kernel::Tiled(cfg) => launch::tiled(gpu, &p, a, b, None, out, cfg),
        Kernel::Team(cfg) => launch::team(gpu, &p, a, b, None, out, cfg),
        Kernel::Gemv(_) => Err(Error::Unsupported {
            op: "matmul",
            reason: "the GEMV kernel reads [N, K] weights: use linear(x, w)".into(),
        }),
    }
}

/// `x · wᵀ (+ bias)` with the kernel [`select_linear`] picks. `x: [.., K]` f32 or f16;
/// `w: [N, K]` f32, f16, Q8_0 or Q4_0; `bias: [N]` f32. Returns f32 `[.., N]`.
pub fn linear(gpu: &Gpu, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let p = check_linear(x, w, bias)?;
    linear_with(gpu, x, w, bias, select_linear(gpu.capabilities(), &p))
}

/// [`linear`] with a given kernel.
pub fn linear_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    kernel: Kernel,
) -> Result<Tensor> {
    let p = check_linear(x, w, bias)?;
    let out = Tensor::zeros(gpu, &linear_out_shape(x, &p), DType::F32)?;
    linear_into(gpu, x, w, bias, &out, kernel)?;
    Ok(out)
}

pub(crate) fn linear_out_shape(x: &Tensor, p: &Problem) -> Vec<usize> {
    let lead = &x.shape()[..x.shape().len() - 1];
    p.out_shape(lead)
}

/// [`linear`] into an existing f32 tensor of the result's shape.
pub fn linear_into(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    kernel: Kernel,
) -> Result<()> {
    let p = check_linear(x, w, bias)?;
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    problem::check_out("linear", out, &linear_out_shape(x, &p), &inputs)?;
    match kernel {
        Kernel::Gemv(cfg) => launch::gemv(gpu, &p, x, w, bias, out, cfg, false, Default::default()),
        Kernel::Tiled(cfg) => launch::tiled(gpu, &p, x, w, bias, out, cfg),
        Kernel::Team(cfg) => launch::team(gpu, &p, x, w, bias, out, cfg),
        Kernel::Naive => Err(Error::Unsupported {
            op: "linear",
            reason: "the naive kernel is the [M,K]·[K,N] f32 baseline; use a tiled or GEMV kernel"
                .into(),
        }),
    }
}

/// What [`linear_fused_into`] and [`linear_swiglu_into`] fuse into the GEMV kernel around its
/// dot products (decode rows, `M ≤ GEMV_MAX_M`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GemvFusion<'a> {
    /// RMSNorm x's rows on the way in, with this weight (f32 `[K]`) and epsilon:
    /// `x / sqrt(mean(x²) + eps) · weight`. The kernel sums the squares of the x values it
    /// loads anyway, so the norm is not a pass of its own. f32 x only.
    pub norm: Option<(&'a Tensor, f32)>,
    /// Add the result into `out` instead of overwriting it: a residual add.
    pub accumulate: bool,
}

/// [`linear_into`] with an RMSNorm of x before it and/or a residual add after it, fused into
/// the GEMV kernel (`fusion`); other kernels cannot fuse them, and are an error naming what to
/// run instead.
pub fn linear_fused_into(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    kernel: Kernel,
    fusion: GemvFusion<'_>,
) -> Result<()> {
    let op = "linear_fused";
    let p = check_linear(x, w, bias)?;
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    let Kernel::Gemv(cfg) = kernel else {
        return Err(Error::Unsupported {
            op,
            reason: format!(
                "only the GEMV kernel fuses a norm or a residual add, not {kernel:?}: run \
                 the norm (or the add) apart and linear_into"
            ),
        });
    };
    if let Some((g, _)) = fusion.norm {
        if x.dtype() != DType::F32 {
            return Err(Error::Unsupported {
                op,
                reason: format!("a fused norm reads f32 x, not {}", x.dtype()),
            });
        }
        if g.dtype() != DType::F32 || g.shape() != [p.shape.k] {
            return Err(Error::ShapeMismatch {
                op,
                lhs: x.shape().to_vec(),
                rhs: g.shape().to_vec(),
                expected: format!("a norm weight f32 [{}] (x's last dimension)", p.shape.k),
            });
        }
        inputs.push(g);
    }
    problem::check_out(op, out, &linear_out_shape(x, &p), &inputs)?;
    launch::gemv(gpu, &p, x, w, bias, out, cfg, false, fusion)
}

/// The SwiGLU MLP's down projection in one pass: `silu(gate) · up` then `· wᵀ`, where
/// `gate_up: [M, 2K]` f32 is the fused gate/up projection's output (gate in columns `0..K`, up
/// in `K..2K`) and `w: [N, K]`, into `out: [M, N]` f32; with `accumulate`, added into `out`
/// (the residual add). Only the GEMV kernel fuses the gate (decode rows, `M ≤ GEMV_MAX_M`);
/// for others run the gate first and [`linear_into`].
pub fn linear_swiglu_into(
    gpu: &Gpu,
    gate_up: &Tensor,
    w: &Tensor,
    out: &Tensor,
    kernel: Kernel,
    accumulate: bool,
) -> Result<()> {
    let op = "linear_swiglu";
    let (m, k) = match (gate_up.shape(), w.shape()) {
        ([m, two_k], [_, k]) if *two_k == 2 * k => (*m, *k),
        _ => {
            return Err(Error::ShapeMismatch {
                op,
                lhs: gate_up.shape().to_vec(),
                rhs: w.shape().to_vec(),
                expected: "gate_up [M, 2K] and w [N, K]".into(),
            });
        }
    };
    if gate_up.dtype() != DType::F32 {
        return Err(Error::Unsupported {
            op,
            reason: format!("gate_up must be f32, not {}", gate_up.dtype()),
        });
    }
    let Kernel::Gemv(cfg) = kernel else {
        return Err(Error::Unsupported {
            op,
            reason: format!(
                "only the GEMV kernel fuses the gate, not {kernel:?}: run the gate, then linear_into"
            ),
        });
    };
    // The problem as the [M, K] x the gate would make; the kernel reads the [M, 2K] tensor.
    let x = gate_up.view(&[m, k])?;
    let p = check_linear(&x, w, None)?;
    problem::check_out(op, out, &linear_out_shape(&x, &p), &[gate_up, w])?;
    let fusion = GemvFusion {
        norm: None,
        accumulate,
    };
    launch::gemv(gpu, &p, gate_up, w, None, out, cfg, true, fusion)
}

#[cfg(test)]
mod tests;
