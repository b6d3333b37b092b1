//! Kernel variants as data.

use pertoken_gpu::Capabilities;

/// Workgroup memory the tiled shader declares: two staging tiles of 512 `vec4<f32>`.
pub const TILED_WORKGROUP_BYTES: u32 = 2 * 512 * 16;
/// Largest tile (in f32) either staging buffer of the tiled shader holds.
pub const TILED_MAX_TILE: u32 = 2048;
/// Workgroup size of the naive kernel (x, y).
pub const NAIVE_WORKGROUP: [u32; 2] = [16, 16];

/// One configuration of the register-blocked tiled kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
            && self.bk > 0
            && self.bk.is_multiple_of(4)
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.bm * self.bk <= TILED_MAX_TILE
            && self.bk * self.bn <= TILED_MAX_TILE
    }

    /// Whether this adapter can run it (workgroup size and memory).
    pub fn fits(&self, caps: &Capabilities) -> bool {
        self.is_valid() && caps.fits_workgroup([self.workgroup_size(), 1, 1], TILED_WORKGROUP_BYTES)
    }

    /// The shader's override constants for this configuration; `a_vec4` when K is a multiple of
    /// 4, `b_vec4` when N is.
    pub fn constants(&self, a_vec4: bool, b_vec4: bool) -> [(&'static str, f64); 8] {
        [
            ("BM", f64::from(self.bm)),
            ("BN", f64::from(self.bn)),
            ("BK", f64::from(self.bk)),
            ("TM", f64::from(self.tm)),
            ("TN", f64::from(self.tn)),
            ("WG", f64::from(self.workgroup_size())),
            ("A_VEC4", f64::from(u8::from(a_vec4))),
            ("B_VEC4", f64::from(u8::from(b_vec4))),
        ]
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

/// A matmul kernel and its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// One invocation per output; the baseline.
    Naive,
    /// Register-blocked tiles.
    Tiled(TileConfig),
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kernel::Naive => f.write_str("naive"),
            Kernel::Tiled(c) => write!(f, "tiled {c}"),
        }
    }
}
