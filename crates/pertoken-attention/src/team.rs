//! The team kernel: where it applies, how it divides a problem ([`TeamPlan`]) and the choices
//! behind that plan ([`TeamKnobs`]), with the candidates the tuner and the bench time.

use pertoken_gpu::{Capabilities, Error, Result};

use crate::{AttentionShape, MAX_HEAD_DIM, NARROW_HEAD_DIM, Split};

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
/// [`Kernel::Team`](crate::Kernel::Team) runs. Any valid set gives a correct plan; they differ in
/// speed.
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shape::test_shape as shape;

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
