//! Launching the kernels: the public entry points ([`attention`] and its variants), the flash
//! and team kernels' split-KV passes and their combine, and the naive baseline.

use pertoken_gpu::{Binding, DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{
    ATTENTION_COMBINE, ATTENTION_FLASH, ATTENTION_FLASH_WIDE, ATTENTION_NAIVE_PV,
    ATTENTION_NAIVE_SCORES, ATTENTION_NAIVE_SOFTMAX, ATTENTION_TEAMS, ATTENTION_TEAMS_F16,
    ATTENTION_TEAMS_WIDE, ATTENTION_TEAMS_WIDE_F16, Shader,
};

use crate::shape::Mask;
use crate::{
    AttentionOptions, AttentionShape, NARROW_HEAD_DIM, OP, Split, TEAM, TEAM_MAX_HEAD_DIM,
    TeamKnobs, TeamPlan, check, check_out, plan, team_kernel_applies, team_plan_with,
};

/// Queries per flash workgroup (one per invocation).
pub const FLASH_WG: u32 = 64;

/// Which attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Fused, online softmax: the team kernel with the heuristic's plan where it applies
    /// ([`team_kernel_applies`]), else the tiled flash kernel.
    Flash,
    /// The team kernel with these knobs; an error where the team kernel does not apply.
    Team(TeamKnobs),
    /// Scores materialized in device memory; the baseline.
    Naive,
}

fn params(s: &AttentionShape, kv_stride: usize, mask: Mask, scale: f32, split: Split) -> [u32; 12] {
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    [
        u(s.n_heads),
        u(s.n_kv_heads),
        u(s.head_dim),
        u(s.q_len),
        u(s.kv_len),
        u(kv_stride),
        u32::from(mask.causal),
        scale.to_bits(),
        split.chunk,
        split.splits,
        mask.window,
        0,
    ]
}

/// Attention with the flash kernel.
pub fn attention(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: AttentionOptions,
) -> Result<Tensor> {
    attention_with(gpu, q, k, v, options, Kernel::Flash)
}

/// Attention with a given kernel.
pub fn attention_with(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: AttentionOptions,
    kernel: Kernel,
) -> Result<Tensor> {
    check(q, k, v, options.causal)?;
    let out = Tensor::zeros(gpu, q.shape(), DType::F32)?;
    attention_into(gpu, q, k, v, &out, options, kernel)?;
    Ok(out)
}

/// Attention into an existing f32 tensor shaped like q.
pub fn attention_into(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    options: AttentionOptions,
    kernel: Kernel,
) -> Result<()> {
    let s = check(q, k, v, options.causal)?;
    check_out(out, [q, k, v])?;
    let scale = options.scale_for(s.head_dim)?;
    match kernel {
        Kernel::Flash | Kernel::Team(_) => flash(
            gpu,
            [q, k, v, out],
            &s,
            (s.kv_len, options.mask(), scale, 0),
            None,
            kernel,
        ),
        Kernel::Naive => {
            let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
            let all = params(
                &s,
                s.kv_len,
                options.mask(),
                scale,
                Split {
                    chunk: 0,
                    splits: 1,
                },
            );
            let params = &all[..];
            if q.dtype() != DType::F32 {
                return Err(Error::Unsupported {
                    op: OP,
                    reason: "the naive baseline is f32 only".into(),
                });
            }
            let scores = Tensor::zeros(gpu, &[s.n_heads, s.q_len, s.kv_len], DType::F32)?;
            gpu.launch(&Launch {
                op: OP,
                shader: &ATTENTION_NAIVE_SCORES,
                constants: &[],
                bindings: &[q.into(), k.into(), (&scores).into()],
                params: bytemuck::cast_slice(params),
                workgroups: [u(s.kv_len).div_ceil(64), u(s.q_len), u(s.n_heads)],
            })?;
            gpu.launch(&Launch {
                op: OP,
                shader: &ATTENTION_NAIVE_SOFTMAX,
                constants: &[],
                bindings: &[(&scores).into()],
                params: bytemuck::cast_slice(params),
                workgroups: [u(s.q_len).div_ceil(64), u(s.n_heads), 1],
            })?;
            gpu.launch(&Launch {
                op: OP,
                shader: &ATTENTION_NAIVE_PV,
                constants: &[],
                bindings: &[(&scores).into(), v.into(), out.into()],
                params: bytemuck::cast_slice(params),
                workgroups: [u(s.q_len * s.head_dim).div_ceil(64), u(s.n_heads), 1],
            })
        }
    }
}

/// Buffers for split-KV partial results (outputs, then max and sum), kept between calls: a KV
/// cache keeps one, so a decode loop neither allocates them nor has wgpu zero-fill them at every
/// step. They grow to the largest call's need. The lock is held while both passes of a call are
/// recorded, so threads sharing a cache cannot interleave their use of them.
#[derive(Debug, Default)]
pub(crate) struct Partials(std::sync::Mutex<Option<[Tensor; 2]>>);

/// The flash kernel over `s.kv_len` rows of k and v (row stride `kv_stride`) from row `k_first`
/// on (rows before it are outside every query's window; k and v are bound from there, so a
/// multiple of the binding offset alignment), split-KV, then the combine pass into `out`;
/// partial results in `partials` where given, else in buffers of this call's own. `kernel` is
/// [`Kernel::Flash`] (the heuristic's plan) or [`Kernel::Team`].
pub(crate) fn flash(
    gpu: &Gpu,
    tensors: [&Tensor; 4],
    s: &AttentionShape,
    call: (usize, Mask, f32, usize),
    partials: Option<&Partials>,
    kernel: Kernel,
) -> Result<()> {
    let caps = gpu.capabilities();
    let knobs = match kernel {
        Kernel::Team(knobs) => {
            knobs.check()?;
            if !team_kernel_applies(s, caps) {
                return Err(Error::Unsupported {
                    op: OP,
                    reason: format!(
                        "the team kernel needs subgroups of at least {TEAM} invocations and a \
                         head_dim that is a multiple of 8 up to {TEAM_MAX_HEAD_DIM} (here \
                         {}); Kernel::Flash runs the tiled kernel instead",
                        s.head_dim
                    ),
                });
            }
            knobs
        }
        _ => TeamKnobs::heuristic(s, caps.cpu),
    };
    let plan = team_plan_with(s, &knobs, caps.max_storage_binding);
    let limit = caps.max_workgroups_per_dimension;
    flash_plan(gpu, tensors, s, call, (plan, limit), partials)
}

/// [`flash`] with the team kernel's plan and the combine pass's most workgroups in x given
/// (tests run GPU plans on any adapter, since the merge of several key teams runs only with more
/// than one, and small limits, which long prefills reach only on a large GPU).
fn flash_plan(
    gpu: &Gpu,
    [q, k, v, out]: [&Tensor; 4],
    s: &AttentionShape,
    (kv_stride, mask, scale, k_first): (usize, Mask, f32, usize),
    (team, combine_limit): (TeamPlan, u32),
    partials: Option<&Partials>,
) -> Result<()> {
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let bkv = (512 / s.head_dim.div_ceil(4)).min(32);
    let caps = gpu.capabilities();
    let teams = team_kernel_applies(s, caps);
    let split = if teams {
        team.split
    } else {
        plan(s, bkv, caps.max_storage_binding)
    };
    let params = params(s, kv_stride, mask, scale, split);
    let f16 = q.dtype() == DType::F16;
    // [splits, n_heads, q_len, head_dim] and [splits, n_heads, q_len, 2]; the kernels write
    // every slot the combine reads, so reused buffers need no clearing.
    // One split: the kernel normalizes and writes `out` itself (NORM), and no combine runs.
    let single = split.splits == 1;
    let rows = split.splits as usize * s.n_heads * s.q_len;
    let need = [if single { 1 } else { rows * s.head_dim }, rows * 2];
    let mut held = partials.map(|p| p.0.lock().unwrap_or_else(|e| e.into_inner()));
    let [part_o, part_ml] = match held.as_deref_mut() {
        Some(Some(kept)) if kept[0].len() >= need[0] && kept[1].len() >= need[1] => kept.clone(),
        slot => {
            let fresh = [
                Tensor::zeros(gpu, &[need[0]], DType::F32)?,
                Tensor::zeros(gpu, &[need[1]], DType::F32)?,
            ];
            if let Some(slot) = slot {
                *slot = Some(fresh.clone());
            }
            fresh
        }
    };
    let from = |t| Binding {
        tensor: t,
        offset: (k_first * s.head_dim * k.dtype().block().1) as u64,
        size: None,
    };
    let bindings = [
        q.into(),
        from(k),
        from(v),
        if single { out.into() } else { (&part_o).into() },
        (&part_ml).into(),
    ];
    let norm = ("NORM", f64::from(u8::from(single)));
    let wide = s.head_dim > NARROW_HEAD_DIM;
    if teams {
        // f16 inputs load as f16 where the adapter has shader-f16.
        let shader: &'static Shader = match (f16 && caps.shader_f16, wide) {
            (false, false) => &ATTENTION_TEAMS,
            (true, false) => &ATTENTION_TEAMS_F16,
            (false, true) => &ATTENTION_TEAMS_WIDE,
            (true, true) => &ATTENTION_TEAMS_WIDE_F16,
        };
        gpu.launch(&Launch {
            op: OP,
            shader,
            constants: &[
                ("F16", f64::from(u8::from(f16))),
                ("C8", (s.head_dim / 8) as f64),
                ("GB", f64::from(team.heads)),
                ("QB", f64::from(team.queries)),
                ("KT", f64::from(team.key_teams)),
                ("WG", f64::from(team.workgroup)),
                ("PF", f64::from(u8::from(team.prefetch))),
                norm,
            ],
            bindings: &bindings,
            params: bytemuck::cast_slice(&params),
            workgroups: [team.groups[0], team.groups[1], split.splits],
        })?;
    } else {
        gpu.launch(&Launch {
            op: OP,
            shader: if wide {
                &ATTENTION_FLASH_WIDE
            } else {
                &ATTENTION_FLASH
            },
            constants: &[
                ("WG", f64::from(FLASH_WG)),
                ("BKV", bkv as f64),
                ("F16", f64::from(u8::from(f16))),
                norm,
            ],
            bindings: &bindings,
            params: bytemuck::cast_slice(&params),
            workgroups: [u(s.q_len).div_ceil(FLASH_WG), u(s.n_heads), split.splits],
        })?;
    }
    if single {
        return Ok(());
    }
    gpu.launch(&Launch {
        op: OP,
        shader: &ATTENTION_COMBINE,
        constants: &[("U", f64::from(team.combine_step))],
        bindings: &[(&part_o).into(), (&part_ml).into(), out.into()],
        params: bytemuck::cast_slice(&params),
        workgroups: [
            strided_groups(s.q_len * s.head_dim, combine_limit),
            u(s.n_heads),
            1,
        ],
    })
}

/// Workgroups of 64 in x for `n` elements that a shader walks with a stride of the whole
/// dispatch (combine.wgsl, append.wgsl): one per 64 elements, up to the adapter's dispatch limit.
pub(crate) fn strided_groups(n: usize, limit: u32) -> u32 {
    u32::try_from(n.div_ceil(64)).unwrap_or(u32::MAX).min(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flash_variant_validates_with_naga() {
        for d in [32usize, 64, 80, 128, 136, 256] {
            let bkv = (512 / d.div_ceil(4)).min(32);
            for (f16, norm) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
                pertoken_shaders::validate(
                    if d > NARROW_HEAD_DIM {
                        &ATTENTION_FLASH_WIDE
                    } else {
                        &ATTENTION_FLASH
                    },
                    &[
                        ("WG", f64::from(FLASH_WG)),
                        ("BKV", bkv as f64),
                        ("F16", f16),
                        ("NORM", norm),
                    ],
                )
                .unwrap();
            }
        }
        for u in [1.0, 8.0] {
            pertoken_shaders::validate(&ATTENTION_COMBINE, &[("U", u)]).unwrap();
        }
        for f16 in [0.0, 1.0] {
            for c8 in 1..=TEAM_MAX_HEAD_DIM / 8 {
                for (gb, qb) in [(1, 1), (1, 4), (2, 2), (4, 1), (3, 1)] {
                    for (wg, kt) in [(TEAM, 1), (8 * TEAM, 1), (8 * TEAM, 8), (8 * TEAM, 2)] {
                        let constants = [
                            ("F16", f16),
                            ("C8", c8 as f64),
                            ("GB", f64::from(gb)),
                            ("QB", f64::from(qb)),
                            ("KT", f64::from(kt)),
                            ("WG", f64::from(wg)),
                            ("PF", f64::from(u8::from(wg > TEAM))),
                            // Single-split plans normalize in the kernel; try both with
                            // either prefetch setting.
                            ("NORM", f64::from(u8::from(c8 % 2 == 0))),
                        ];
                        let [packed, native] = if c8 * 8 > NARROW_HEAD_DIM {
                            [&ATTENTION_TEAMS_WIDE, &ATTENTION_TEAMS_WIDE_F16]
                        } else {
                            [&ATTENTION_TEAMS, &ATTENTION_TEAMS_F16]
                        };
                        pertoken_shaders::validate(packed, &constants).unwrap();
                        if f16 == 1.0 {
                            pertoken_shaders::validate(native, &constants).unwrap();
                        }
                    }
                }
            }
        }
        pertoken_shaders::validate(&pertoken_shaders::ATTENTION_APPEND, &[]).unwrap();
        pertoken_shaders::validate(&ATTENTION_NAIVE_SCORES, &[]).unwrap();
        pertoken_shaders::validate(&ATTENTION_NAIVE_SOFTMAX, &[]).unwrap();
        pertoken_shaders::validate(&ATTENTION_NAIVE_PV, &[]).unwrap();
    }
}

#[cfg(test)]
mod team_tests {
    use super::*;
    use crate::team_plan;
    use pertoken_gpu::testing::gpu_or_skip;
    use pertoken_reference::random::uniform_f32;

    /// The CPU and the GPU plans (one team per workgroup; eight, splitting keys or queries) run
    /// on whatever adapter the tests have, against the f64 reference: otherwise the merge of
    /// several key teams would run only on GPUs.
    #[test]
    fn cpu_and_gpu_plans_match_the_reference() {
        let Some(gpu) = gpu_or_skip() else { return };
        let probe = AttentionShape {
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 8,
            q_len: 1,
            kv_len: 1,
        };
        if !team_kernel_applies(&probe, gpu.capabilities()) {
            return;
        }
        let cases = [
            (
                (8, 2, 128),
                &[
                    (1usize, 1usize),
                    (1, 9),
                    (1, 300),
                    (1, 2100),
                    (3, 40),
                    (70, 70),
                ][..],
            ),
            ((6, 2, 64), &[(1, 7), (2, 300), (17, 17)][..]),
            ((4, 4, 40), &[(1, 1), (1, 500), (5, 33)][..]),
            ((1, 1, 8), &[(1, 3), (9, 9)][..]),
            // Wide heads: two rows per team.
            ((4, 2, 256), &[(1, 1), (1, 300), (3, 40), (17, 17)][..]),
        ];
        for ((n_heads, n_kv_heads, d), lens) in cases {
            for &(q_len, kv_len) in lens {
                for dtype in [DType::F32, DType::F16] {
                    for cpu in [true, false] {
                        let s = AttentionShape {
                            n_heads,
                            n_kv_heads,
                            head_dim: d,
                            q_len,
                            kv_len,
                        };
                        let plan = team_plan(&s, cpu, gpu.capabilities().max_storage_binding);
                        let seed = (kv_len * 10 + d + q_len) as u64;
                        let up = |seed: u64, shape: &[usize]| {
                            let n = shape.iter().product();
                            let v: Vec<f32> =
                                uniform_f32(seed, n).iter().map(|x| 2.0 * x).collect();
                            Tensor::from_f32_as(&gpu, &v, shape, dtype).unwrap()
                        };
                        let (q, qv) = up(seed, &[n_heads, q_len, d]);
                        let (k, kv) = up(seed + 1, &[n_kv_heads, kv_len, d]);
                        let (v, vv) = up(seed + 2, &[n_kv_heads, kv_len, d]);
                        let out = Tensor::zeros(&gpu, &[n_heads, q_len, d], DType::F32).unwrap();
                        out.fill(f32::NAN).unwrap();
                        let scale = 1.0 / (d as f32).sqrt();
                        let tensors = [&q, &k, &v, &out];
                        // Two workgroups in x make the combine pass stride over most shapes.
                        let limit = if cpu { 2 } else { u32::MAX };
                        let mask = Mask {
                            causal: true,
                            window: 0,
                        };
                        let call = (kv_len, mask, scale, 0);
                        flash_plan(&gpu, tensors, &s, call, (plan, limit), None).unwrap();
                        let shape = pertoken_reference::AttentionShape {
                            n_heads,
                            n_kv_heads,
                            head_dim: d,
                            q_len,
                            kv_len,
                            causal: true,
                        };
                        let want =
                            pertoken_reference::attention(&qv, &kv, &vv, shape, f64::from(scale))
                                .unwrap();
                        let tol = pertoken_reference::Tolerance {
                            abs: 2e-5,
                            rel: 2e-5,
                        }
                        .for_reduction(kv_len, 1.0);
                        let got = out.to_vec::<f32>().unwrap();
                        let cmp = pertoken_reference::compare(&got, &want, tol);
                        assert!(cmp.passed(), "{s:?} {dtype} {plan:?}: {cmp}");
                    }
                }
            }
        }
    }
}
