//! Launching each kernel, including the split of weights over the storage-binding limit.

use pertoken_gpu::{Binding, DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{
    MATMUL_GEMV, MATMUL_GEMV_F16, MATMUL_NAIVE, MATMUL_TEAM, MATMUL_TILED, MATMUL_TILED_F16, Shader,
};

use crate::{
    GemvConfig, GemvFusion, NAIVE_WORKGROUP, Problem, TILED_WORKGROUP_BYTES, TeamConfig,
    TileConfig, TiledLayout,
};

/// A window of whole rows of a row-major tensor, bindable on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) row0: usize,
    pub(crate) rows: usize,
}

/// Splits a tensor of `rows` rows of `row_bytes` each into windows the adapter can bind: each
/// under the storage-binding limit, starting on the offset alignment, and a multiple of 4 rows
/// (so vec4 stores of the output columns stay aligned). One window when it fits whole.
pub(crate) fn row_windows(
    op: &'static str,
    gpu: &Gpu,
    t: &Tensor,
    rows: usize,
    row_bytes: u64,
) -> Result<Vec<Window>> {
    let caps = gpu.capabilities();
    let limit = caps.max_storage_binding;
    let total = t.buffer().size();
    if total <= limit {
        return Ok(vec![Window {
            offset: 0,
            size: total,
            row0: 0,
            rows,
        }]);
    }
    let align = u64::from(caps.min_storage_offset_alignment.max(4));
    let step_align = align / gcd(row_bytes, align);
    let step = lcm(step_align, 4);
    let fit = (limit.saturating_sub(16) / row_bytes) / step * step;
    if fit == 0 {
        return Err(Error::TooLarge {
            op,
            what: "group of rows (the smallest window that can be split off)",
            bytes: step * row_bytes,
            limit,
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    let mut windows = Vec::new();
    let mut row0 = 0usize;
    while row0 < rows {
        let n = (fit as usize).min(rows - row0);
        let offset = row0 as u64 * row_bytes;
        let size = (n as u64 * row_bytes)
            .next_multiple_of(16)
            .min(total - offset);
        windows.push(Window {
            offset,
            size,
            row0,
            rows: n,
        });
        row0 += n;
    }
    Ok(windows)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Bytes of one row of a `[rows, k]` tensor of `dtype`.
pub(crate) fn row_bytes(dtype: DType, k: usize) -> u64 {
    let (elems, bytes) = dtype.block();
    (k / elems * bytes) as u64
}

/// The shaders' code for a weight format (see [`DType::shader_format`]).
pub(crate) fn format_code(dtype: DType) -> u32 {
    dtype.shader_format().unwrap_or(0)
}

fn u32_of(v: usize) -> u32 {
    // Every dimension was checked to fit in u32 when the problem was built.
    u32::try_from(v).unwrap_or(u32::MAX)
}

pub(crate) fn naive(gpu: &Gpu, p: &Problem, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let op = "matmul";
    if p.batch != 1 || p.a_batched || p.b_batched || p.b_trans {
        return Err(Error::Unsupported {
            op,
            reason: "the naive kernel is the unbatched [M,K]·[K,N] baseline only".into(),
        });
    }
    if p.a_dtype != DType::F32 || p.b_dtype != DType::F32 {
        return Err(Error::Unsupported {
            op,
            reason: "the naive kernel is f32 only".into(),
        });
    }
    let (m, n, k) = (u32_of(p.shape.m), u32_of(p.shape.n), u32_of(p.shape.k));
    let params = bytemuck::cast::<[u32; 4], [u8; 16]>([m, n, k, 0]);
    let [wx, wy] = NAIVE_WORKGROUP;
    gpu.launch(&Launch {
        op,
        shader: &MATMUL_NAIVE,
        constants: &[("WG_X", f64::from(wx)), ("WG_Y", f64::from(wy))],
        bindings: &[a.into(), b.into(), out.into()],
        params: &params,
        workgroups: [n.div_ceil(wx), m.div_ceil(wy), 1],
    })
}

pub(crate) fn tiled(
    gpu: &Gpu,
    p: &Problem,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    cfg: TileConfig,
) -> Result<()> {
    let op = if p.b_trans { "linear" } else { "matmul" };
    if !cfg.is_valid() {
        return Err(Error::Unsupported {
            op,
            reason: format!("tile configuration {cfg} is not valid for the tiled kernel"),
        });
    }
    if !cfg.fits(gpu.capabilities()) {
        return Err(Error::Unsupported {
            op,
            reason: format!(
                "tile configuration {cfg} needs {} invocations and {TILED_WORKGROUP_BYTES} bytes \
                 of workgroup memory per workgroup",
                cfg.workgroup_size()
            ),
        });
    }
    let m = p.shape.m;
    let constants = cfg.constants(&tile_layout(p));
    // f16 B loads as f16 where the adapter has shader-f16.
    let shader = if p.b_dtype == DType::F16 && gpu.capabilities().shader_f16 {
        &MATMUL_TILED_F16
    } else {
        &MATMUL_TILED
    };
    per_window(gpu, op, p, [a, b, out], bias, shader, &constants, |cols| {
        [
            u32_of(cols.div_ceil(cfg.bn as usize)),
            u32_of(m.div_ceil(cfg.bm as usize)),
        ]
    })
}

/// The operand layout the tile kernels (tiled, team) are specialized on.
fn tile_layout(p: &Problem) -> TiledLayout {
    let (n, k) = (p.shape.n, p.shape.k);
    TiledLayout {
        a_f16: p.a_dtype == DType::F16,
        a_vec4: k % 4 == 0,
        b_format: format_code(p.b_dtype),
        b_trans: p.b_trans,
        b_vec4: if p.b_trans {
            k % 4 == 0 && !p.b_dtype.is_quantized()
        } else {
            n % 4 == 0
        },
        c_vec4: n % 4 == 0,
    }
}

/// Launches a tile kernel (the tiled kernel's binding and parameter layout) once per window of
/// B that the adapter can bind: a weight [N, K] over the binding limit in several, anything else
/// in one. `groups(cols)` gives the workgroups in x and y for a window of `cols` columns of C;
/// z is the batch.
#[allow(clippy::too_many_arguments)]
fn per_window(
    gpu: &Gpu,
    op: &'static str,
    p: &Problem,
    [a, b, out]: [&Tensor; 3],
    bias: Option<&Tensor>,
    shader: &'static Shader,
    constants: &[(&'static str, f64)],
    groups: impl Fn(usize) -> [u32; 2],
) -> Result<()> {
    let (m, n, k) = (p.shape.m, p.shape.n, p.shape.k);
    let windows = if p.b_trans {
        row_windows(op, gpu, b, n, row_bytes(p.b_dtype, k))?
    } else {
        vec![Window {
            offset: 0,
            size: b.buffer().size(),
            row0: 0,
            rows: n,
        }]
    };
    let a_bs = if p.a_batched { m * k } else { 0 };
    let b_bs = if p.b_batched { k * n } else { 0 };
    for w in windows {
        let params: [u32; 12] = [
            u32_of(m),
            u32_of(n),
            u32_of(k),
            u32_of(w.row0),
            u32_of(w.rows),
            u32::from(bias.is_some()),
            u32_of(a_bs),
            u32_of(b_bs),
            u32_of(m * n),
            0,
            0,
            0,
        ];
        let [gx, gy] = groups(w.rows);
        gpu.launch(&Launch {
            op,
            shader,
            constants,
            bindings: &[
                a.into(),
                Binding::window(b, w.offset, w.size),
                bias.unwrap_or(a).into(),
                out.into(),
            ],
            params: bytemuck::cast_slice(&params),
            workgroups: [gx, gy, u32_of(p.batch)],
        })?;
    }
    Ok(())
}

pub(crate) fn team(
    gpu: &Gpu,
    p: &Problem,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    cfg: TeamConfig,
) -> Result<()> {
    let op = if p.b_trans { "linear" } else { "matmul" };
    if !cfg.fits(gpu.capabilities()) {
        return Err(Error::Unsupported {
            op,
            reason: format!(
                "team configuration {cfg} needs subgroups of exactly {} invocations ({})",
                crate::TEAM_SUBGROUP,
                if cfg.is_valid() {
                    "this adapter's differ"
                } else {
                    "and 8, 16, 24 or 32 rows"
                }
            ),
        });
    }
    let m = p.shape.m;
    let constants = cfg.constants(&tile_layout(p));
    // Workgroups walk down a strip of columns (x = row tile), so consecutive ones share B.
    per_window(
        gpu,
        op,
        p,
        [a, b, out],
        bias,
        &MATMUL_TEAM,
        &constants,
        |cols| {
            [
                u32_of(m.div_ceil(cfg.tm as usize)),
                u32_of(cols.div_ceil(cfg.columns() as usize)),
            ]
        },
    )
}

/// The GEMV launch; with `swiglu`, `x` is a fused gate/up output `[M, 2K]` and the kernel
/// reads silu(gate) · up for each x value (`p` describes the `[M, K]` problem); `fusion` as
/// [`GemvFusion`] says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv(
    gpu: &Gpu,
    p: &Problem,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    cfg: GemvConfig,
    swiglu: bool,
    fusion: GemvFusion<'_>,
) -> Result<()> {
    let op = "linear";
    let (m, n, k) = (p.shape.m, p.shape.n, p.shape.k);
    if !p.b_trans || p.batch != 1 {
        return Err(Error::Unsupported {
            op,
            reason: "the GEMV kernel computes linear(x, w) only".into(),
        });
    }
    if !cfg.fits(gpu.capabilities(), m) {
        return Err(Error::Unsupported {
            op,
            reason: format!(
                "GEMV configuration {cfg} cannot run {m} rows of x on this adapter (it takes at \
                 most {} rows; workgroup {} invocations); use a configuration with fewer rows of w \
                 per invocation, or select_linear's choice",
                (1..=crate::GEMV_MAX_M)
                    .filter(|&m| cfg.fits(gpu.capabilities(), m))
                    .max()
                    .unwrap_or(0),
                cfg.workgroup_size(m)
            ),
        });
    }
    // A vector unit is 8 weights, so rows must hold whole units (f32 rows at K % 8 == 4 start
    // on 16 bytes but end mid-unit: their last 4 weights were skipped).
    let w_vec = match p.b_dtype {
        DType::F32 | DType::F16 => k % 8 == 0,
        _ => false,
    };
    let x_vec = k % 8 == 0;
    let mut constants = cfg
        .constants(
            m,
            format_code(p.b_dtype),
            w_vec,
            p.a_dtype == DType::F16,
            x_vec,
        )
        .to_vec();
    let flag = |b: bool| f64::from(u8::from(b));
    constants.push(("SWIGLU", flag(swiglu)));
    constants.push(("NORM", flag(fusion.norm.is_some())));
    constants.push(("ACCUM", flag(fusion.accumulate)));
    let (norm_w, eps) = fusion.norm.unwrap_or((x, 0.0));
    let max_groups = gpu.capabilities().max_workgroups_per_dimension;
    for win in row_windows(op, gpu, w, n, row_bytes(p.b_dtype, k))? {
        let params: [u32; 8] = [
            u32_of(m),
            u32_of(n),
            u32_of(k),
            u32_of(win.row0),
            u32_of(win.rows),
            u32::from(bias.is_some()),
            eps.to_bits(),
            0,
        ];
        let groups = u32_of(win.rows.div_ceil(cfg.rows as usize));
        let gx = groups.min(max_groups);
        gpu.launch(&Launch {
            op,
            // f16 weights load as f16 where the adapter has shader-f16.
            shader: if p.b_dtype == DType::F16 && gpu.capabilities().shader_f16 {
                &MATMUL_GEMV_F16
            } else {
                &MATMUL_GEMV
            },
            constants: &constants,
            bindings: &[
                x.into(),
                Binding::window(w, win.offset, win.size),
                bias.unwrap_or(x).into(),
                out.into(),
                norm_w.into(),
            ],
            params: bytemuck::cast_slice(&params),
            workgroups: [gx, groups.div_ceil(gx), 1],
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_and_lcm() {
        assert_eq!(gcd(2304, 256), 256);
        assert_eq!(gcd(34 * 4, 256), 8);
        assert_eq!(lcm(32, 4), 32);
        assert_eq!(lcm(1, 4), 4);
    }
}
