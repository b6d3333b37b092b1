//! Matrix multiply on the GPU.
//!
//! [`matmul`] computes `C = A·B` for row-major f32 `A: [M,K]` and `B: [K,N]`, for every
//! `M, N, K ≥ 1`. Two kernels: [`Kernel::Naive`], one invocation per output, kept as the baseline;
//! and [`Kernel::Tiled`], register-blocked tiles staged in workgroup memory, with vec4 loads when
//! K (for A) or N (for B and C) is a multiple of 4. [`select`] picks one from the shape and the
//! adapter's [`Capabilities`](pertoken_gpu::Capabilities); [`matmul_with`] runs a given one.
//!
//! Ops record into the [`Gpu`]'s pending encoder: nothing runs until the result is downloaded or
//! [`Gpu::sync`] is called.

mod config;

pub use config::{
    Kernel, NAIVE_WORKGROUP, TILE_CANDIDATES, TILED_MAX_TILE, TILED_WORKGROUP_BYTES, TileConfig,
};

use pertoken_gpu::{Capabilities, DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{MATMUL_NAIVE, MATMUL_TILED};

const OP: &str = "matmul";

/// The `[M, K, N]` of a matmul, checked.
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

    /// Minimum bytes moved for f32: A and B read once, C written once.
    pub fn min_bytes_f32(&self) -> f64 {
        4.0 * (self.m * self.k + self.k * self.n + self.m * self.n) as f64
    }
}

/// Checks that `a` and `b` can be multiplied and returns the shape.
pub fn check(a: &Tensor, b: &Tensor) -> Result<MatmulShape> {
    for t in [a, b] {
        if t.dtype() != DType::F32 {
            return Err(Error::DTypeMismatch {
                op: OP,
                expected: DType::F32,
                got: t.dtype(),
            });
        }
    }
    let (m, k) = a.dims2(OP)?;
    let (k2, n) = b.dims2(OP)?;
    if k != k2 {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
            expected: "a = [M, K] and b = [K, N]: a's columns must equal b's rows".into(),
        });
    }
    // The kernels index with u32: every operand must have fewer than 2³² elements.
    for (what, shape, len) in [
        ("a", a.shape(), m * k),
        ("b", b.shape(), k * n),
        ("c", &[m, n][..], m * n),
    ] {
        if u32::try_from(len).is_err() {
            return Err(Error::InvalidShape {
                op: OP,
                shape: shape.to_vec(),
                reason: format!("{what} has {len} elements; at most 2³²−1 are supported"),
            });
        }
    }
    Ok(MatmulShape { m, k, n })
}

/// The kernel the heuristic picks for `shape` on an adapter with `caps`.
///
/// The tiled kernel beats the naive one at every size we measured from 32³ up (see
/// BENCHMARKS.md). The tile is the largest of 128×128, 64×64 and 32×32 that gives at least
/// [`MIN_WORKGROUPS`] workgroups and wastes at most a quarter of its work on padding (a 192×192
/// output in 128×128 tiles computes 1.8× the elements it needs). The naive kernel remains for
/// adapters whose limits no tile configuration fits. Autotuning per adapter replaces this
/// heuristic where it is run.
pub fn select(caps: &Capabilities, shape: MatmulShape) -> Kernel {
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

/// Fewest workgroups [`select`] accepts before it shrinks the tile.
pub const MIN_WORKGROUPS: usize = 4;

/// `a · b` with the kernel [`select`] picks. `a: [M,K]`, `b: [K,N]`, both f32.
pub fn matmul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = check(a, b)?;
    let kernel = select(gpu.capabilities(), shape);
    matmul_with(gpu, a, b, kernel)
}

/// `a · b` with a given kernel.
pub fn matmul_with(gpu: &Gpu, a: &Tensor, b: &Tensor, kernel: Kernel) -> Result<Tensor> {
    let shape = check(a, b)?;
    let out = Tensor::zeros(gpu, &[shape.m, shape.n], DType::F32)?;
    matmul_into(gpu, a, b, &out, kernel)?;
    Ok(out)
}

/// `out = a · b` with a given kernel, writing into an existing `[M,N]` f32 tensor.
///
/// `out` must not be `a` or `b`.
pub fn matmul_into(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor, kernel: Kernel) -> Result<()> {
    let shape = check(a, b)?;
    if out.dtype() != DType::F32 {
        return Err(Error::DTypeMismatch {
            op: OP,
            expected: DType::F32,
            got: out.dtype(),
        });
    }
    if out.shape() != [shape.m, shape.n] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: out.shape().to_vec(),
            rhs: vec![shape.m, shape.n],
            expected: "the output must be [M, N]".into(),
        });
    }
    if std::ptr::eq(out.buffer(), a.buffer()) || std::ptr::eq(out.buffer(), b.buffer()) {
        return Err(Error::InvalidShape {
            op: OP,
            shape: out.shape().to_vec(),
            reason: "the output tensor is also an input; pass a separate output".into(),
        });
    }

    let (m, n, k) = (shape.m as u32, shape.n as u32, shape.k as u32);
    let params = bytemuck::cast::<[u32; 4], [u8; 16]>([m, n, k, 0]);
    match kernel {
        Kernel::Naive => {
            let [wx, wy] = NAIVE_WORKGROUP;
            gpu.launch(&Launch {
                op: OP,
                shader: &MATMUL_NAIVE,
                constants: &[("WG_X", f64::from(wx)), ("WG_Y", f64::from(wy))],
                tensors: &[a, b, out],
                params: &params,
                workgroups: [n.div_ceil(wx), m.div_ceil(wy), 1],
            })
        }
        Kernel::Tiled(cfg) => {
            if !cfg.is_valid() {
                return Err(Error::Unsupported {
                    op: OP,
                    reason: format!("tile configuration {cfg} is not valid for the tiled kernel"),
                });
            }
            if !cfg.fits(gpu.capabilities()) {
                return Err(Error::Unsupported {
                    op: OP,
                    reason: format!(
                        "tile configuration {cfg} needs {} invocations and {} bytes of workgroup \
                         memory per workgroup",
                        cfg.workgroup_size(),
                        TILED_WORKGROUP_BYTES
                    ),
                });
            }
            let constants = cfg.constants(k % 4 == 0, n % 4 == 0);
            gpu.launch(&Launch {
                op: OP,
                shader: &MATMUL_TILED,
                constants: &constants,
                tensors: &[a, b, out],
                params: &params,
                workgroups: [n.div_ceil(cfg.bn), m.div_ceil(cfg.bm), 1],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_is_valid_and_its_constants_validate_with_naga() {
        for cfg in TILE_CANDIDATES {
            assert!(cfg.is_valid(), "{cfg}");
            for a_vec4 in [false, true] {
                for b_vec4 in [false, true] {
                    pertoken_shaders::validate(&MATMUL_TILED, &cfg.constants(a_vec4, b_vec4))
                        .unwrap_or_else(|e| panic!("{cfg}: {e}"));
                }
            }
        }
        let [wx, wy] = NAIVE_WORKGROUP;
        pertoken_shaders::validate(
            &MATMUL_NAIVE,
            &[("WG_X", f64::from(wx)), ("WG_Y", f64::from(wy))],
        )
        .unwrap();
    }

    fn caps() -> Capabilities {
        Capabilities {
            shader_f16: false,
            subgroups: None,
            timestamp_query: false,
            timestamp_period_ns: 1.0,
            max_storage_binding: 128 << 20,
            max_buffer_size: 256 << 20,
            max_workgroup_storage: 16384,
            max_invocations_per_workgroup: 256,
            max_workgroup_size: [256, 256, 64],
            max_workgroups_per_dimension: 65535,
            max_storage_buffers_per_stage: 8,
        }
    }

    fn tile(kernel: Kernel) -> (u32, u32) {
        match kernel {
            Kernel::Tiled(c) => (c.bm, c.bn),
            Kernel::Naive => (0, 0),
        }
    }

    #[test]
    fn select_shrinks_the_tile_for_small_or_ragged_outputs() {
        let sel = |m, n| tile(select(&caps(), MatmulShape { m, k: 64, n }));
        assert_eq!(sel(1024, 1024), (128, 128));
        assert_eq!(sel(256, 256), (128, 128));
        assert_eq!(sel(192, 192), (64, 64));
        assert_eq!(sel(128, 128), (64, 64));
        assert_eq!(sel(64, 64), (32, 32));
        assert_eq!(sel(1, 1), (32, 32));
    }

    #[test]
    fn select_respects_adapter_limits() {
        let mut small = caps();
        small.max_invocations_per_workgroup = 64;
        // 128×128/8×8 needs 256 invocations: the next config that fits is taken.
        let k = select(
            &small,
            MatmulShape {
                m: 1024,
                k: 64,
                n: 1024,
            },
        );
        assert_eq!(tile(k), (64, 64));
        small.max_workgroup_storage = 8192;
        assert_eq!(
            select(
                &small,
                MatmulShape {
                    m: 1024,
                    k: 64,
                    n: 1024
                }
            ),
            Kernel::Naive
        );
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let bad = [
            TileConfig {
                bm: 64,
                bn: 64,
                bk: 16,
                tm: 2,
                tn: 4,
            },
            TileConfig {
                bm: 60,
                bn: 64,
                bk: 16,
                tm: 8,
                tn: 4,
            },
            TileConfig {
                bm: 256,
                bn: 64,
                bk: 16,
                tm: 8,
                tn: 8,
            },
            TileConfig {
                bm: 64,
                bn: 64,
                bk: 6,
                tm: 4,
                tn: 4,
            },
        ];
        for cfg in bad {
            assert!(!cfg.is_valid(), "{cfg}");
        }
    }
}
