//! Attention on the GPU: `out = softmax(q·kᵀ·scale + mask)·v`.
//!
//! [`attention`] runs the fused flash kernel: K and V are walked in tiles staged in workgroup
//! memory with an online softmax, so the `q_len × kv_len` scores never reach device memory;
//! causal attention skips the tiles no query of a workgroup may see; grouped-query attention maps
//! query heads to KV heads inside the kernel, with no copy. q, k and v are f32 or f16 (all the
//! same), accumulation is f32, the output is f32. [`Kernel::Naive`] materializes the scores and is
//! kept as the bench baseline (f32 only).
//!
//! Where the adapter has subgroups of at least [`TEAM`] invocations and the head dimension is a
//! multiple of 8 up to [`TEAM_MAX_HEAD_DIM`], [`Kernel::Flash`] runs the team kernel instead, for
//! prefill and decode alike: teams of invocations split each K/V row (contiguous reads), read
//! every key once for up to [`TEAM_MAX_ROWS`] query rows (the heads of a GQA group, or
//! consecutive positions), and sum scores with subgroup shuffles; [`team_plan`] divides the work
//! (splitting the keys of a single query between teams and workgroups, split-KV, for decode).
//! Elsewhere the tiled flash kernel runs. Both hold a head in registers, up to [`MAX_HEAD_DIM`]
//! (256) elements: head dimensions over [`NARROW_HEAD_DIM`] (128) run wide variants of them,
//! whose arrays are twice as long, so the common sizes keep the small ones.
//!
//! Known limit: Mesa's llvmpipe (lavapipe) stops any shader loop after 65535 iterations in one
//! invocation, so on that adapter the flash kernel is wrong beyond about 1000 keys at head_dim 128
//! (and the naive one beyond 65535 / head_dim keys). `pertoken bench` verifies every result and
//! reports such runs as failures; the split-KV kernel, which bounds the keys per invocation, is
//! the fix.
//!
//! Layouts (row-major): `q: [n_heads, q_len, head_dim]`, `k, v: [n_kv_heads, kv_len, head_dim]`,
//! output `[n_heads, q_len, head_dim]`. With `causal`, query `i` attends keys
//! `j ≤ i + (kv_len − q_len)`: the queries are the last `q_len` positions.

use pertoken_gpu::{Capabilities, DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{
    ATTENTION_COMBINE, ATTENTION_FLASH, ATTENTION_FLASH_WIDE, ATTENTION_NAIVE_PV,
    ATTENTION_NAIVE_SCORES, ATTENTION_NAIVE_SOFTMAX, ATTENTION_TEAMS, ATTENTION_TEAMS_F16,
    ATTENTION_TEAMS_WIDE, ATTENTION_TEAMS_WIDE_F16, Shader,
};

mod cache;
mod tune;
pub use cache::KvCache;
pub use tune::{AttentionTuner, CACHE_FILE, CACHE_VERSION};

pub(crate) const OP: &str = "attention";

/// Largest head dimension the kernels hold in registers (Gemma's 256 included).
pub const MAX_HEAD_DIM: usize = 256;
/// Head dimensions up to this one (most models: 64, 80, 96, 128) run the kernels' narrow
/// variants; larger ones, up to [`MAX_HEAD_DIM`], the wide variants, whose register arrays are
/// twice as long (and whose teams hold at most [`TEAM_WIDE_MAX_ROWS`] rows on GPUs).
pub const NARROW_HEAD_DIM: usize = 128;
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

/// Options of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionOptions {
    /// Mask keys after each query's position.
    pub causal: bool,
    /// Score scale; `None` for `1/√head_dim`. Must be finite.
    pub scale: Option<f32>,
}

impl AttentionOptions {
    /// The score scale for `head_dim`: the given one, or `1/√head_dim`. A NaN or infinite scale
    /// is an error (it would turn every score into NaN and the output into zeros).
    pub fn scale_for(&self, head_dim: usize) -> Result<f32> {
        match self.scale {
            None => Ok(1.0 / (head_dim as f32).sqrt()),
            Some(x) if x.is_finite() => Ok(x),
            Some(x) => Err(Error::InvalidOption {
                name: "AttentionOptions::scale",
                value: x.to_string(),
                reason: "the score scale must be a finite number (None gives 1/√head_dim)".into(),
            }),
        }
    }
}

/// The checked shape of an attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Queries per head.
    pub q_len: usize,
    /// Keys per KV head.
    pub kv_len: usize,
}

impl AttentionShape {
    /// FLOPs: q·kᵀ and p·v, 2·2·n_heads·q_len·kv_len·head_dim (all keys, before masking).
    pub fn flops(&self) -> f64 {
        4.0 * (self.n_heads * self.q_len * self.kv_len * self.head_dim) as f64
    }
}

fn invalid(t: &Tensor, reason: impl Into<String>) -> Error {
    Error::InvalidShape {
        op: OP,
        shape: t.shape().to_vec(),
        reason: reason.into(),
    }
}

/// Checks q, k, v and returns the shape.
pub fn check(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<AttentionShape> {
    for t in [k, v] {
        if t.dtype() != q.dtype() {
            return Err(Error::DTypeMismatch {
                op: OP,
                expected: q.dtype(),
                got: t.dtype(),
            });
        }
    }
    if !matches!(q.dtype(), DType::F32 | DType::F16) {
        return Err(Error::DTypeMismatch {
            op: OP,
            expected: DType::F32,
            got: q.dtype(),
        });
    }
    let [n_heads, q_len, head_dim] = q.shape()[..] else {
        return Err(invalid(q, "q must be [n_heads, q_len, head_dim]"));
    };
    let [n_kv_heads, kv_len, kd] = k.shape()[..] else {
        return Err(invalid(k, "k must be [n_kv_heads, kv_len, head_dim]"));
    };
    let mismatch = |expected: &str| Error::ShapeMismatch {
        op: OP,
        lhs: q.shape().to_vec(),
        rhs: k.shape().to_vec(),
        expected: expected.into(),
    };
    if v.shape() != k.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: k.shape().to_vec(),
            rhs: v.shape().to_vec(),
            expected: "k and v of the same shape".into(),
        });
    }
    if kd != head_dim {
        return Err(mismatch("q and k with the same head_dim"));
    }
    if !n_heads.is_multiple_of(n_kv_heads) {
        return Err(mismatch(
            "n_heads a multiple of n_kv_heads (grouped-query attention)",
        ));
    }
    if causal && q_len > kv_len {
        return Err(mismatch(
            "q_len ≤ kv_len for causal attention (queries are the last positions)",
        ));
    }
    if head_dim > MAX_HEAD_DIM {
        return Err(Error::Unsupported {
            op: OP,
            reason: format!("head_dim {head_dim} is over the kernels' maximum of {MAX_HEAD_DIM}"),
        });
    }
    Ok(AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim,
        q_len,
        kv_len,
    })
}

fn params(
    s: &AttentionShape,
    kv_stride: usize,
    causal: bool,
    scale: f32,
    split: Split,
) -> [u32; 12] {
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    [
        u(s.n_heads),
        u(s.n_kv_heads),
        u(s.head_dim),
        u(s.q_len),
        u(s.kv_len),
        u(kv_stride),
        u32::from(causal),
        scale.to_bits(),
        split.chunk,
        split.splits,
        0,
        0,
    ]
}

/// How the keys are divided between workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Keys per split (a multiple of the kernel's key tile).
    pub chunk: u32,
    /// Number of splits.
    pub splits: u32,
}

/// Keys one flash workgroup walks at most, when the binding limit allows: bounds the work per
/// invocation (llvmpipe stops loops after 65535 iterations) and gives decode enough workgroups.
pub const KEYS_PER_SPLIT: usize = 256;

/// The split-KV plan for a shape: about [`KEYS_PER_SPLIT`] keys per split, at least enough
/// splits for 128 workgroups when the keys allow, at most 64, and partial results within
/// `max_binding` bytes.
pub fn plan(s: &AttentionShape, bkv: usize, max_binding: u64) -> Split {
    let tiles = s.kv_len.div_ceil(bkv);
    let q_tiles = s.q_len.div_ceil(FLASH_WG as usize);
    let for_occupancy = 128usize.div_ceil(q_tiles * s.n_heads);
    let for_length = s.kv_len.div_ceil(KEYS_PER_SPLIT);
    let per_split_bytes = (s.n_heads * s.q_len * s.head_dim * 4) as u64;
    let fit = (max_binding / per_split_bytes.max(1)).max(1) as usize;
    let splits = for_occupancy
        .max(for_length)
        .min(64)
        .min(tiles)
        .min(fit)
        .max(1);
    let chunk = tiles.div_ceil(splits) * bkv;
    Split {
        chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
        splits: u32::try_from(s.kv_len.div_ceil(chunk)).unwrap_or(u32::MAX),
    }
}

/// Query rows (heads × positions) one team of the team kernel holds.
pub const TEAM_MAX_ROWS: usize = 4;
/// Query rows one team holds on GPUs at head dimensions over [`NARROW_HEAD_DIM`], where it
/// loads no key ahead: with a row's pieces twice as many, this keeps a lane's registers (q, the
/// accumulators and a key's K and V: 192 floats) what the narrow plan holds with 4 rows and the
/// next key, which the H100 ran without spilling. (Not yet measured on a GPU. On lavapipe, which
/// has no register file to fit, 4 rows ran 1.4–1.6× faster than 2 at head_dim 256, so CPU
/// adapters keep [`TEAM_MAX_ROWS`].)
pub const TEAM_WIDE_MAX_ROWS: usize = 2;
/// Largest head dimension the team kernel holds in registers (head dimensions not a multiple of
/// 8 run the flash kernel).
pub const TEAM_MAX_HEAD_DIM: usize = MAX_HEAD_DIM;
/// Invocations per team of the team kernel: they split a row, and sum a score with subgroup
/// shuffles, so the adapter's subgroups must hold at least this many.
pub const TEAM: u32 = 8;

/// Whether the team kernel runs this shape on this adapter: a head dimension that is a multiple
/// of 8 up to [`TEAM_MAX_HEAD_DIM`], and subgroups of at least [`TEAM`] invocations. Otherwise
/// the flash kernel runs it.
pub fn team_kernel_applies(s: &AttentionShape, caps: &Capabilities) -> bool {
    s.head_dim.is_multiple_of(8)
        && s.head_dim <= TEAM_MAX_HEAD_DIM
        && caps.subgroups.is_some_and(|g| g.min >= TEAM)
}

/// How the team kernel divides a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamPlan {
    /// Query heads per team (sharing their KV head's loads): the largest divisor of the group
    /// size up to [`TEAM_MAX_ROWS`] ([`TEAM_WIDE_MAX_ROWS`] for wide heads).
    pub heads: u32,
    /// Query positions per team; `heads · queries` is at most that same bound.
    pub queries: u32,
    /// Invocations per workgroup: one team on CPU adapters (on llvmpipe a workgroup of one
    /// subgroup ran 4096-key decode in about half the time of one of eight), eight on GPUs (32
    /// were no faster on an H100).
    pub workgroup: u32,
    /// Teams of a workgroup that split the keys of the same queries (the rest take other
    /// queries): all of them when there are too few queries to go round.
    pub key_teams: u32,
    /// The split of the keys between workgroups.
    pub split: Split,
    /// Workgroups in x (KV head × head part), y (query block); z is `split.splits`.
    pub groups: [u32; 2],
    /// Whether each team loads its next key's K and V before the current key's arithmetic
    /// (GPUs, which then wait on two keys' loads at once; on lavapipe it did not help), except
    /// for wide heads (see [`TEAM_WIDE_MAX_ROWS`]).
    pub prefetch: bool,
    /// Splits the combine pass loads at once where there are several: 8 on GPUs (their loads
    /// wait together), 1 on CPU adapters, where the masked tail of a step costs as much as real
    /// work (8 made a 1024-token prefill, one split, 15% slower on lavapipe).
    pub combine_step: u32,
}

/// The choices behind a [`TeamPlan`] that do not depend on the context length: what
/// [`TeamKnobs::heuristic`] picks for an adapter, what [`team_candidates`] varies, and what
/// [`Kernel::Team`] runs. Any valid set gives a correct plan; they differ in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TeamKnobs {
    /// Teams per workgroup: 1, 2, 4 or 8. When a workgroup has fewer query blocks than teams,
    /// its teams split the keys (decode).
    pub teams: u32,
    /// Most query rows a team holds, 1 to [`TEAM_MAX_ROWS`]: the heads of a GQA group first (the
    /// largest divisor of the group size), then consecutive positions.
    pub max_rows: usize,
    /// Workgroups the split of the keys aims for, where the context allows.
    pub target_workgroups: usize,
    /// Fewest keys each team walks in a split.
    pub min_keys_per_team: usize,
    /// Most splits (partial results the combine pass merges).
    pub max_splits: usize,
    /// Load each key's K and V one key ahead ([`TeamPlan::prefetch`]).
    pub prefetch: bool,
    /// Splits the combine pass loads at once, 1 to 8 ([`TeamPlan::combine_step`]).
    pub combine_step: u32,
}

/// `t8 r4 w1024 k4 s64 pf c8`: teams per workgroup, rows per team, workgroups aimed at, keys per
/// team, most splits, prefetch, combine step.
impl std::fmt::Display for TeamKnobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t{} r{} w{} k{} s{}{} c{}",
            self.teams,
            self.max_rows,
            self.target_workgroups,
            self.min_keys_per_team,
            self.max_splits,
            if self.prefetch { " pf" } else { "" },
            self.combine_step
        )
    }
}

impl TeamKnobs {
    /// The knobs the plan heuristic picks for shape `s` on a CPU adapter (`cpu`) or a GPU.
    /// GPUs hide each key's load latency with many teams in flight: 8 teams per workgroup, ≥ 1024
    /// workgroups where the context allows, down to 4 keys per team, at most 64 splits (an H100
    /// sweep of 16 plans: 1–8 keys per team, 8 or 32 teams, 64 or 256 splits at most; this one was
    /// fastest or within 5% of it at 512, 4096 and 8192 keys). CPU adapters: one team per
    /// workgroup (a workgroup of one subgroup ran 4096-key decode on llvmpipe in about half the
    /// time of one of eight), ≥ 32 workgroups of ≥ 1024 keys (each split ends in a merge).
    pub fn heuristic(s: &AttentionShape, cpu: bool) -> TeamKnobs {
        let wide_gpu = s.head_dim > NARROW_HEAD_DIM && !cpu;
        TeamKnobs {
            teams: if cpu { 1 } else { 8 },
            max_rows: if wide_gpu {
                TEAM_WIDE_MAX_ROWS
            } else {
                TEAM_MAX_ROWS
            },
            target_workgroups: if cpu { 32 } else { 1024 },
            min_keys_per_team: if cpu { 1024 } else { 4 },
            max_splits: 64,
            prefetch: !cpu && !wide_gpu,
            combine_step: if cpu { 1 } else { 8 },
        }
    }

    /// Checks every knob is in its range.
    pub fn check(&self) -> Result<()> {
        let bad = |name: &'static str, value: String, reason: &str| {
            Err(Error::InvalidOption {
                name,
                value,
                reason: reason.into(),
            })
        };
        if ![1, 2, 4, 8].contains(&self.teams) {
            return bad("TeamKnobs::teams", self.teams.to_string(), "1, 2, 4 or 8");
        }
        if !(1..=TEAM_MAX_ROWS).contains(&self.max_rows) {
            return bad("TeamKnobs::max_rows", self.max_rows.to_string(), "1 to 4");
        }
        if !(1..=8).contains(&self.combine_step) {
            return bad(
                "TeamKnobs::combine_step",
                self.combine_step.to_string(),
                "1 to 8",
            );
        }
        for (name, v) in [
            ("TeamKnobs::target_workgroups", self.target_workgroups),
            ("TeamKnobs::min_keys_per_team", self.min_keys_per_team),
            ("TeamKnobs::max_splits", self.max_splits),
        ] {
            if v == 0 {
                return bad(name, v.to_string(), "at least 1");
            }
        }
        Ok(())
    }
}

/// The team kernel's plan on a CPU adapter (`cpu`) or a GPU: [`team_plan_with`] the
/// [`TeamKnobs::heuristic`].
pub fn team_plan(s: &AttentionShape, cpu: bool, max_binding: u64) -> TeamPlan {
    team_plan_with(s, &TeamKnobs::heuristic(s, cpu), max_binding)
}

/// The team kernel's plan from `knobs` (checked by the caller). Splits: at least
/// `target_workgroups` workgroups where each team still walks `min_keys_per_team` keys, at most
/// `max_splits`, with partial results within `max_binding` bytes, and never more than 65535
/// keys per invocation (llvmpipe stops longer loops).
pub fn team_plan_with(s: &AttentionShape, knobs: &TeamKnobs, max_binding: u64) -> TeamPlan {
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let group = s.n_heads / s.n_kv_heads.max(1);
    let teams = knobs.teams as usize;
    let max_rows = knobs.max_rows.clamp(1, TEAM_MAX_ROWS);
    let heads = (1..=max_rows.min(group))
        .rev()
        .find(|g| group.is_multiple_of(*g))
        .unwrap_or(1);
    let queries = (max_rows / heads).min(s.q_len).max(1);
    let blocks = s.q_len.div_ceil(queries);
    let key_teams = if blocks >= teams {
        1
    } else {
        teams / blocks.next_power_of_two().min(teams)
    };
    let gy = blocks.div_ceil(teams / key_teams);
    let gx = s.n_kv_heads * (group / heads);
    let min_keys = knobs.min_keys_per_team.max(1) * key_teams;
    let per_split_bytes = (s.n_heads * s.q_len * s.head_dim * 4) as u64;
    let fit = (max_binding / per_split_bytes.max(1)).max(1) as usize;
    let loop_limit = s.kv_len.div_ceil(65535 * key_teams);
    let splits = knobs
        .target_workgroups
        .div_ceil((gx * gy).max(1))
        .min(s.kv_len.div_ceil(min_keys))
        .min(knobs.max_splits)
        .min(fit)
        .max(loop_limit)
        .max(1);
    let chunk = s.kv_len.div_ceil(splits).max(1);
    TeamPlan {
        heads: u(heads),
        queries: u(queries),
        workgroup: TEAM * u(teams),
        key_teams: u(key_teams),
        split: Split {
            chunk: u(chunk),
            splits: u(s.kv_len.div_ceil(chunk)),
        },
        groups: [u(gx), u(gy)],
        prefetch: knobs.prefetch,
        combine_step: knobs.combine_step.clamp(1, 8),
    }
}

/// Candidate knobs for shape `s` on this adapter: the heuristic's first, then each varied in
/// one knob (teams, rows, workgroups, keys per team, splits, prefetch, combine step), for
/// `pertoken bench --decode-plans` to time side by side.
pub fn team_candidates(s: &AttentionShape, cpu: bool) -> Vec<TeamKnobs> {
    let h = TeamKnobs::heuristic(s, cpu);
    let mut out = vec![h];
    let mut add = |k: TeamKnobs| {
        if !out.contains(&k) {
            out.push(k);
        }
    };
    for teams in [1, 4, 8] {
        add(TeamKnobs { teams, ..h });
    }
    for max_rows in [1, 2, 4] {
        add(TeamKnobs { max_rows, ..h });
    }
    for f in [4, 16] {
        add(TeamKnobs {
            target_workgroups: (h.target_workgroups / f).max(1),
            ..h
        });
        add(TeamKnobs {
            min_keys_per_team: h.min_keys_per_team * f,
            ..h
        });
    }
    add(TeamKnobs {
        target_workgroups: h.target_workgroups * 4,
        ..h
    });
    add(TeamKnobs {
        min_keys_per_team: (h.min_keys_per_team / 4).max(1),
        ..h
    });
    add(TeamKnobs {
        max_splits: h.max_splits / 4,
        ..h
    });
    add(TeamKnobs {
        prefetch: !h.prefetch,
        ..h
    });
    add(TeamKnobs {
        combine_step: if h.combine_step == 1 { 8 } else { 1 },
        ..h
    });
    out
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
            (s.kv_len, options.causal, scale),
            None,
            kernel,
        ),
        Kernel::Naive => {
            let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
            let all = params(
                &s,
                s.kv_len,
                options.causal,
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

/// Checks an output tensor for q, k and v: f32, shaped like q, and none of them.
pub(crate) fn check_out(out: &Tensor, [q, k, v]: [&Tensor; 3]) -> Result<()> {
    if out.dtype() != DType::F32 || out.shape() != q.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: out.shape().to_vec(),
            rhs: q.shape().to_vec(),
            expected: "an f32 output shaped like q".into(),
        });
    }
    if [q, k, v]
        .iter()
        .any(|t| std::ptr::eq(t.buffer(), out.buffer()))
    {
        return Err(invalid(out, "the output tensor is also an input"));
    }
    Ok(())
}

/// Buffers for split-KV partial results (outputs, then max and sum), kept between calls: a KV
/// cache keeps one, so a decode loop neither allocates them nor has wgpu zero-fill them at every
/// step. They grow to the largest call's need. The lock is held while both passes of a call are
/// recorded, so threads sharing a cache cannot interleave their use of them.
#[derive(Debug, Default)]
pub(crate) struct Partials(std::sync::Mutex<Option<[Tensor; 2]>>);

/// The flash kernel over the first `s.kv_len` rows of k and v (row stride `kv_stride`), split-KV,
/// then the combine pass into `out`; partial results in `partials` where given, else in buffers
/// of this call's own. `kernel` is [`Kernel::Flash`] (the heuristic's plan) or [`Kernel::Team`].
pub(crate) fn flash(
    gpu: &Gpu,
    tensors: [&Tensor; 4],
    s: &AttentionShape,
    call: (usize, bool, f32),
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
    (kv_stride, causal, scale): (usize, bool, f32),
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
    let params = params(s, kv_stride, causal, scale, split);
    let f16 = q.dtype() == DType::F16;
    // [splits, n_heads, q_len, head_dim] and [splits, n_heads, q_len, 2]; the kernels write
    // every slot the combine reads, so reused buffers need no clearing.
    let rows = split.splits as usize * s.n_heads * s.q_len;
    let need = [rows * s.head_dim, rows * 2];
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
    let bindings = [
        q.into(),
        k.into(),
        v.into(),
        (&part_o).into(),
        (&part_ml).into(),
    ];
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
            ],
            bindings: &bindings,
            params: bytemuck::cast_slice(&params),
            workgroups: [u(s.q_len).div_ceil(FLASH_WG), u(s.n_heads), split.splits],
        })?;
    }
    gpu.launch(&Launch {
        op: OP,
        shader: &ATTENTION_COMBINE,
        constants: &[(
            "U",
            f64::from(if split.splits == 1 {
                1
            } else {
                team.combine_step
            }),
        )],
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
            for f16 in [0.0, 1.0] {
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
                        let call = (kv_len, true, scale);
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

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn shape(n_heads: usize, q_len: usize, kv_len: usize) -> AttentionShape {
        AttentionShape {
            n_heads,
            n_kv_heads: 1,
            head_dim: 128,
            q_len,
            kv_len,
        }
    }

    #[test]
    fn decode_splits_for_occupancy_and_prefill_for_length() {
        // Decode, 32 heads, 4096 keys: 16 splits of 256 keys (length), 32·16 = 512 workgroups.
        let p = plan(&shape(32, 1, 4096), 16, 1 << 30);
        assert_eq!((p.chunk, p.splits), (256, 16));
        // One head, 1000 keys: occupancy asks for 128 splits, capped at 64 and at 63 tiles.
        let p = plan(&shape(1, 1, 1000), 16, 1 << 30);
        assert_eq!(p.splits, 63);
        assert!(p.chunk as usize * p.splits as usize >= 1000);
        // Every split covers at least one key, and together they cover all.
        for kv in [1usize, 15, 16, 17, 255, 256, 257, 5000] {
            let p = plan(&shape(8, 100, kv), 16, 1 << 30);
            assert!(p.chunk.is_multiple_of(16) && p.splits >= 1);
            assert!(
                (p.splits as usize - 1) * (p.chunk as usize) < kv,
                "{kv}: {p:?}"
            );
            assert!(p.splits as usize * p.chunk as usize >= kv, "{kv}: {p:?}");
        }
        // Partial results must fit the binding limit: 1 split when even two would not.
        let p = plan(&shape(32, 2048, 2048), 16, 40 << 20);
        assert_eq!(p.splits, 1);
    }

    #[test]
    fn team_plan_groups_rows_and_covers_every_key() {
        let gqa = |n_heads, n_kv_heads, q_len, kv_len| AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim: 128,
            q_len,
            kv_len,
        };
        // Decode, 32 heads over 8 KV heads: 4 heads per team; on GPUs eight teams split the keys
        // of a workgroup, and 64 splits of 64 keys (8 per team) give 512 workgroups; each team
        // loads its next key ahead.
        let p = team_plan(&gqa(32, 8, 1, 4096), false, 1 << 30);
        assert_eq!(
            (p.heads, p.queries, p.workgroup, p.key_teams, p.prefetch),
            (4, 1, 64, 8, true)
        );
        assert_eq!((p.split.splits, p.split.chunk, p.groups), (64, 64, [8, 1]));
        let p = team_plan(&gqa(32, 8, 1, 4096), true, 1 << 30);
        assert!(!p.prefetch);
        assert_eq!(
            (p.workgroup, p.key_teams, p.split.splits, p.split.chunk),
            (8, 1, 4, 1024)
        );
        // Prefill: teams take queries; multi-head attention puts 4 positions in a team.
        let p = team_plan(&gqa(32, 8, 1024, 1024), false, 1 << 30);
        assert_eq!((p.key_teams, p.groups, p.split.splits), (1, [8, 128], 1));
        let p = team_plan(&gqa(8, 8, 1024, 1024), false, 1 << 30);
        assert_eq!((p.heads, p.queries, p.groups), (1, 4, [8, 32]));
        // A few queries: teams split between queries and keys.
        assert_eq!(team_plan(&gqa(8, 8, 8, 100), false, 1 << 30).key_teams, 4);
        // Wide heads: 2 rows per team and no key ahead on GPUs, 4 rows on CPU adapters.
        let wide = AttentionShape {
            head_dim: 256,
            ..gqa(32, 8, 1, 4096)
        };
        let p = team_plan(&wide, false, 1 << 30);
        assert_eq!((p.heads, p.queries, p.prefetch), (2, 1, false));
        assert_eq!(p.groups, [16, 1]);
        assert_eq!(team_plan(&wide, true, 1 << 30).heads, 4);
        // Group sizes 6 and 7: the largest divisor up to 4.
        assert_eq!(team_plan(&gqa(12, 2, 1, 100), false, 1 << 30).heads, 3);
        assert_eq!(team_plan(&gqa(7, 1, 1, 100), false, 1 << 30).heads, 1);
        for kv in [1usize, 63, 64, 65, 1000, 5000, 100_000, 300_000] {
            for cpu in [false, true] {
                for q_len in [1, 3, 100] {
                    let p = team_plan(&gqa(8, 2, q_len, kv), cpu, 1 << 30).split;
                    assert!(p.splits >= 1 && p.splits <= 64, "{kv}: {p:?}");
                    assert!(
                        (p.splits as usize - 1) * (p.chunk as usize) < kv,
                        "{kv}: {p:?}"
                    );
                    assert!(p.splits as usize * p.chunk as usize >= kv, "{kv}: {p:?}");
                    assert!(p.chunk < 65536, "{kv}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn every_candidate_is_valid_and_covers_every_key() {
        for (n_heads, n_kv_heads, d) in [(32, 8, 128), (8, 8, 64), (12, 2, 256), (7, 1, 8)] {
            for cpu in [false, true] {
                for q_len in [1usize, 8, 300] {
                    for kv_len in [1usize, 100, 4096, 70_000] {
                        let s = AttentionShape {
                            n_heads,
                            n_kv_heads,
                            head_dim: d,
                            q_len,
                            kv_len,
                        };
                        let cands = team_candidates(&s, cpu);
                        assert_eq!(cands[0], TeamKnobs::heuristic(&s, cpu));
                        assert_eq!(
                            team_plan_with(&s, &cands[0], 1 << 30),
                            team_plan(&s, cpu, 1 << 30)
                        );
                        assert!(cands.len() >= 8, "{}", cands.len());
                        for k in cands {
                            k.check().unwrap();
                            let p = team_plan_with(&s, &k, 1 << 30);
                            let (splits, chunk) = (p.split.splits as usize, p.split.chunk as usize);
                            assert!((splits - 1) * chunk < kv_len && splits * chunk >= kv_len);
                            assert!(chunk / p.key_teams as usize <= 65535, "{k:?}");
                            assert!(p.heads * p.queries <= k.max_rows as u32);
                            assert!((p.workgroup / TEAM).is_multiple_of(p.key_teams));
                        }
                    }
                }
            }
        }
        let h = TeamKnobs::heuristic(&shape(8, 1, 100), false);
        for bad in [
            TeamKnobs { teams: 3, ..h },
            TeamKnobs { teams: 16, ..h },
            TeamKnobs { max_rows: 0, ..h },
            TeamKnobs { max_rows: 5, ..h },
            TeamKnobs {
                combine_step: 9,
                ..h
            },
            TeamKnobs { max_splits: 0, ..h },
            TeamKnobs {
                min_keys_per_team: 0,
                ..h
            },
        ] {
            assert!(
                matches!(bad.check(), Err(Error::InvalidOption { .. })),
                "{bad:?}"
            );
        }
    }
}
