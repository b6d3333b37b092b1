//! Kernel variants as data.

use pertoken_gpu::{Capabilities, DType};

/// Workgroup memory the tiled shader declares: two staging tiles of 512 `vec4<f32>`.
pub const TILED_WORKGROUP_BYTES: u32 = 2 * 512 * 16;
/// Largest tile (in f32) either staging buffer of the tiled shader holds.
pub const TILED_MAX_TILE: u32 = 2048;
/// Workgroup size of the naive kernel (x, y).
pub const NAIVE_WORKGROUP: [u32; 2] = [16, 16];

/// One configuration of the register-blocked tiled kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TileConfig {
    /// Rows of C per workgroup.
    pub bm: u32,
    /// Columns of C per workgroup.
    pub bn: u32,
    /// Depth of the K step staged in workgroup memory.
    pub bk: u32,
    /// Rows of C per invocation (4 or 8).
    pub tm: u32,
    /// Columns of C per invocation (4 or 8).
    pub tn: u32,
}

impl TileConfig {
    /// Invocations per workgroup: (bm/tm)·(bn/tn).
    pub const fn workgroup_size(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Whether the shader can run this configuration at all (before adapter limits).
    pub fn is_valid(&self) -> bool {
        matches!(self.tm, 4 | 8)
            && matches!(self.tn, 4 | 8)
            && matches!(self.bk, 8 | 16 | 32)
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.bm * self.bk <= TILED_MAX_TILE
            && self.bk * self.bn <= TILED_MAX_TILE
    }

    /// Whether this adapter can run it (workgroup size and memory).
    pub fn fits(&self, caps: &Capabilities) -> bool {
        self.is_valid() && caps.fits_workgroup([self.workgroup_size(), 1, 1], TILED_WORKGROUP_BYTES)
    }

    /// The shader's override constants for this configuration and `layout`.
    pub fn constants(&self, layout: &TiledLayout) -> Vec<(&'static str, f64)> {
        let tile = [
            ("BM", f64::from(self.bm)),
            ("BN", f64::from(self.bn)),
            ("BK", f64::from(self.bk)),
            ("TM", f64::from(self.tm)),
            ("TN", f64::from(self.tn)),
            ("WG", f64::from(self.workgroup_size())),
        ];
        tile.into_iter().chain(layout.constants()).collect()
    }
}

impl std::fmt::Display for TileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{}/{}x{}",
            self.bm, self.bn, self.bk, self.tm, self.tn
        )
    }
}

/// Operand formats and alignment of one tiled launch: the shader's non-tile constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TiledLayout {
    /// A holds f16 (else f32).
    pub a_f16: bool,
    /// Rows of A start on 4-element boundaries (K % 4 == 0).
    pub a_vec4: bool,
    /// B's format: its [`DType::shader_format`] code.
    pub b_format: u32,
    /// B is stored `[N, K]` (a Linear weight) rather than `[K, N]`.
    pub b_trans: bool,
    /// B's rows start on 4-element boundaries along its contiguous dimension.
    pub b_vec4: bool,
    /// C's rows start on 4-element boundaries (N % 4 == 0).
    pub c_vec4: bool,
}

impl TiledLayout {
    /// The override constants the tile kernels (tiled.wgsl, team.wgsl) take for this layout.
    pub fn constants(&self) -> [(&'static str, f64); 6] {
        let flag = |b: bool| f64::from(u8::from(b));
        [
            ("A_F16", flag(self.a_f16)),
            ("A_VEC4", flag(self.a_vec4)),
            ("B_FMT", f64::from(self.b_format)),
            ("B_TRANS", flag(self.b_trans)),
            ("B_VEC4", flag(self.b_vec4)),
            ("C_VEC4", flag(self.c_vec4)),
        ]
    }

    /// Every combination the launcher can produce, for validating the shader.
    pub fn all() -> Vec<TiledLayout> {
        let mut out = Vec::new();
        for a_f16 in [false, true] {
            for a_vec4 in [false, true] {
                for b_format in 0..DType::WEIGHTS.len() as u32 {
                    for b_trans in [false, true] {
                        if b_format >= 2 && !b_trans {
                            continue;
                        }
                        for b_vec4 in [false, true] {
                            for c_vec4 in [false, true] {
                                out.push(TiledLayout {
                                    a_f16,
                                    a_vec4,
                                    b_format,
                                    b_trans,
                                    b_vec4,
                                    c_vec4,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// One configuration of the decode-path (GEMV) kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct GemvConfig {
    /// Invocations per workgroup (at most; fewer when many rows of x need registers).
    pub wg: u32,
    /// Rows of the weight (outputs) per workgroup.
    pub rows: u32,
    /// Rows of the weight per invocation: each load of x serves this many rows. The
    /// `wg · rpi / rows` invocations of a group of `rpi` rows split its K.
    #[serde(default = "one")]
    pub rpi: u32,
}

fn one() -> u32 {
    1
}

/// Most rows of x the GEMV kernel takes; more go to the tiled kernel.
pub const GEMV_MAX_M: usize = 16;
/// Workgroup memory the GEMV kernel reduces in, in f32: `wg · max_m` must fit.
pub const GEMV_REDUCE_SLOTS: u32 = 2048;

impl GemvConfig {
    /// `MAX_M` for `m` rows of x: the next power of two.
    pub fn max_m(m: usize) -> u32 {
        (m.max(1) as u32).next_power_of_two()
    }

    /// The workgroup size used for `m` rows of x.
    pub fn workgroup_size(&self, m: usize) -> u32 {
        self.wg
            .min(GEMV_REDUCE_SLOTS / (Self::max_m(m) * self.rpi.max(1)))
    }

    /// Whether the shader can run this configuration for `m` rows of x.
    pub fn is_valid(&self, m: usize) -> bool {
        let wg = self.workgroup_size(m);
        (1..=GEMV_MAX_M).contains(&m)
            && self.rows >= 1
            && self.rpi >= 1
            && self.rpi * Self::max_m(m) <= GEMV_MAX_M as u32
            && self.rows.is_multiple_of(self.rpi)
            && (wg * self.rpi).is_multiple_of(self.rows)
            && (wg * self.rpi / self.rows).is_power_of_two()
    }

    /// Whether this adapter can run it.
    pub fn fits(&self, caps: &Capabilities, m: usize) -> bool {
        self.is_valid(m)
            && caps.fits_workgroup([self.workgroup_size(m), 1, 1], 4 * GEMV_REDUCE_SLOTS)
    }

    /// The shader's override constants.
    pub fn constants(
        &self,
        m: usize,
        w_format: u32,
        w_vec: bool,
        x_f16: bool,
        x_vec: bool,
    ) -> [(&'static str, f64); 8] {
        [
            ("W_FMT", f64::from(w_format)),
            ("W_VEC", f64::from(u8::from(w_vec))),
            ("X_F16", f64::from(u8::from(x_f16))),
            ("X_VEC", f64::from(u8::from(x_vec))),
            ("MAX_M", f64::from(Self::max_m(m))),
            ("WG", f64::from(self.workgroup_size(m))),
            ("ROWS", f64::from(self.rows)),
            ("RPI", f64::from(self.rpi)),
        ]
    }
}

impl std::fmt::Display for GemvConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rpi > 1 {
            write!(f, "wg{}/rows{}/rpi{}", self.wg, self.rows, self.rpi)
        } else {
            write!(f, "wg{}/rows{}", self.wg, self.rows)
        }
    }
}

/// The candidate configurations of the GEMV kernel.
pub const GEMV_CANDIDATES: &[GemvConfig] = &[
    GemvConfig {
        wg: 256,
        rows: 4,
        rpi: 1,
    },
    GemvConfig {
        wg: 256,
        rows: 2,
        rpi: 1,
    },
    GemvConfig {
        wg: 256,
        rows: 8,
        rpi: 1,
    },
    GemvConfig {
        wg: 128,
        rows: 4,
        rpi: 1,
    },
    GemvConfig {
        wg: 64,
        rows: 2,
        rpi: 1,
    },
    GemvConfig {
        wg: 256,
        rows: 1,
        rpi: 1,
    },
    GemvConfig {
        wg: 256,
        rows: 32,
        rpi: 1,
    },
    GemvConfig {
        wg: 256,
        rows: 64,
        rpi: 1,
    },
    GemvConfig {
        wg: 64,
        rows: 16,
        rpi: 1,
    },
    GemvConfig {
        wg: 64,
        rows: 64,
        rpi: 1,
    },
    GemvConfig {
        wg: 64,
        rows: 128,
        rpi: 2,
    },
    GemvConfig {
        wg: 64,
        rows: 256,
        rpi: 4,
    },
    GemvConfig {
        wg: 64,
        rows: 512,
        rpi: 8,
    },
    GemvConfig {
        wg: 64,
        rows: 1024,
        rpi: 16,
    },
    GemvConfig {
        wg: 64,
        rows: 32,
        rpi: 4,
    },
    GemvConfig {
        wg: 256,
        rows: 16,
        rpi: 4,
    },
];

/// The candidate configurations of the tiled kernel, for the heuristic and for tuning.
pub const TILE_CANDIDATES: &[TileConfig] = &[
    TileConfig {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 8,
        tn: 8,
    },
    TileConfig {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    },
    TileConfig {
        bm: 128,
        bn: 64,
        bk: 16,
        tm: 8,
        tn: 8,
    },
    TileConfig {
        bm: 64,
        bn: 128,
        bk: 16,
        tm: 8,
        tn: 8,
    },
    TileConfig {
        bm: 128,
        bn: 128,
        bk: 16,
        tm: 8,
        tn: 8,
    },
    TileConfig {
        bm: 32,
        bn: 32,
        bk: 16,
        tm: 4,
        tn: 4,
    },
    TileConfig {
        bm: 32,
        bn: 64,
        bk: 32,
        tm: 4,
        tn: 8,
    },
];

/// One configuration of the subgroup-team kernel (`matmul/team.wgsl`): a workgroup is one
/// subgroup of exactly [`TEAM_SUBGROUP`] invocations and computes `tm` rows × `8·tn` columns of C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TeamConfig {
    /// Rows of C per workgroup: 8, 16, 24 or 32.
    pub tm: u32,
    /// Columns of C per invocation: 4 or 8.
    pub tn: u32,
}

/// Subgroup size the team kernel needs, exactly (it is also its workgroup size).
pub const TEAM_SUBGROUP: u32 = 8;

impl TeamConfig {
    /// Whether the shader can run this configuration.
    pub fn is_valid(&self) -> bool {
        matches!(self.tm, 8 | 16 | 24 | 32) && matches!(self.tn, 4 | 8)
    }

    /// Columns of C one workgroup computes.
    pub fn columns(&self) -> u32 {
        TEAM_SUBGROUP * self.tn
    }

    /// Whether this adapter can run it: subgroups of exactly [`TEAM_SUBGROUP`] invocations.
    pub fn fits(&self, caps: &Capabilities) -> bool {
        self.is_valid()
            && caps
                .subgroups
                .is_some_and(|g| g.min == TEAM_SUBGROUP && g.max == TEAM_SUBGROUP)
    }

    /// The shader's override constants for this configuration and `layout`.
    pub fn constants(&self, layout: &TiledLayout) -> Vec<(&'static str, f64)> {
        let tile = [("TM", f64::from(self.tm)), ("TN", f64::from(self.tn))];
        tile.into_iter().chain(layout.constants()).collect()
    }
}

impl std::fmt::Display for TeamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.tm, self.columns())
    }
}

/// The candidate configurations of the team kernel.
pub const TEAM_CANDIDATES: &[TeamConfig] = &[
    TeamConfig { tm: 32, tn: 8 },
    TeamConfig { tm: 32, tn: 4 },
    TeamConfig { tm: 16, tn: 8 },
    TeamConfig { tm: 16, tn: 4 },
    TeamConfig { tm: 8, tn: 4 },
];

/// A matmul kernel and its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// One invocation per output; the baseline.
    Naive,
    /// Register-blocked tiles.
    Tiled(TileConfig),
    /// Split-K matrix-vector kernel for a few rows of x (linear only).
    Gemv(GemvConfig),
    /// One subgroup of 8 per workgroup, A shared through shuffles (f32/f16 operands; for CPU
    /// adapters).
    Team(TeamConfig),
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kernel::Naive => f.write_str("naive"),
            Kernel::Tiled(c) => write!(f, "tiled {c}"),
            Kernel::Gemv(c) => write!(f, "gemv {c}"),
            Kernel::Team(c) => write!(f, "team {c}"),
        }
    }
}
