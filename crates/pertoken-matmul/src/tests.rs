//! Unit tests: configurations, shader validation, selection.

use super::*;
use pertoken_shaders::{MATMUL_GEMV, MATMUL_NAIVE, MATMUL_TILED};

#[test]
fn every_candidate_is_valid_and_its_constants_validate_with_naga() {
    for cfg in TILE_CANDIDATES {
        assert!(cfg.is_valid(), "{cfg}");
        for layout in TiledLayout::all() {
            pertoken_shaders::validate(&MATMUL_TILED, &cfg.constants(&layout))
                .unwrap_or_else(|e| panic!("{cfg} {layout:?}: {e}"));
            if layout.b_format == 1 {
                pertoken_shaders::validate(
                    &pertoken_shaders::MATMUL_TILED_F16,
                    &cfg.constants(&layout),
                )
                .unwrap_or_else(|e| panic!("f16 {cfg} {layout:?}: {e}"));
            }
        }
    }
    for cfg in GEMV_CANDIDATES {
        for m in (1..=GEMV_MAX_M).filter(|&m| cfg.is_valid(m)) {
            for fmt in 0..DType::WEIGHTS.len() as u32 {
                for flags in 0..8 {
                    let (w_vec, x_f16, x_vec) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
                    let constants = cfg.constants(m, fmt, w_vec, x_f16, x_vec);
                    pertoken_shaders::validate(&MATMUL_GEMV, &constants)
                        .unwrap_or_else(|e| panic!("{cfg} m={m}: {e}"));
                    if fmt == 1 {
                        pertoken_shaders::validate(&pertoken_shaders::MATMUL_GEMV_F16, &constants)
                            .unwrap_or_else(|e| panic!("f16 {cfg} m={m}: {e}"));
                    }
                }
            }
        }
    }
    for cfg in TEAM_CANDIDATES {
        assert!(cfg.is_valid(), "{cfg}");
        for layout in TiledLayout::all() {
            pertoken_shaders::validate(&pertoken_shaders::MATMUL_TEAM, &cfg.constants(&layout))
                .unwrap_or_else(|e| panic!("{cfg} {layout:?}: {e}"));
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
        min_storage_offset_alignment: 256,
        cpu: false,
    }
}

fn tile(kernel: Kernel) -> (u32, u32) {
    match kernel {
        Kernel::Tiled(c) => (c.bm, c.bn),
        Kernel::Naive | Kernel::Gemv(_) | Kernel::Team(_) => (0, 0),
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

#[test]
fn gemv_configs() {
    for cfg in GEMV_CANDIDATES {
        // Every candidate runs one row of x; those with one row per invocation run all.
        assert!(cfg.is_valid(1), "{cfg}");
        for m in 1..=GEMV_MAX_M {
            let valid = cfg.is_valid(m);
            assert_eq!(valid, cfg.rpi * GemvConfig::max_m(m) <= 16, "{cfg} m={m}");
            assert!(cfg.workgroup_size(m) * GemvConfig::max_m(m) * cfg.rpi <= GEMV_REDUCE_SLOTS);
        }
        assert!(!cfg.is_valid(GEMV_MAX_M + 1));
    }
    assert!(
        !GemvConfig {
            wg: 256,
            rows: 3,
            rpi: 1
        }
        .is_valid(1)
    );
    assert!(
        !GemvConfig {
            wg: 64,
            rows: 6,
            rpi: 4
        }
        .is_valid(1)
    );
    assert!(
        !GemvConfig {
            wg: 64,
            rows: 64,
            rpi: 4
        }
        .is_valid(8)
    );
    assert_eq!(GemvConfig::max_m(5), 8);
    assert_eq!(
        GemvConfig {
            wg: 256,
            rows: 4,
            rpi: 1
        }
        .workgroup_size(16),
        128
    );
}

#[test]
fn linear_selection_uses_gemv_for_decode() {
    let p = |m| Problem {
        batch: 1,
        shape: MatmulShape {
            m,
            k: 4096,
            n: 4096,
        },
        a_dtype: DType::F32,
        b_dtype: DType::Q4_0,
        b_trans: true,
        a_batched: false,
        b_batched: false,
    };
    assert!(matches!(select_linear(&caps(), &p(1)), Kernel::Gemv(_)));
    assert!(matches!(select_linear(&caps(), &p(16)), Kernel::Gemv(_)));
    assert!(matches!(select_linear(&caps(), &p(17)), Kernel::Tiled(_)));
    // GPUs: 4 rows per invocation up to 4 rows of x, then 2 rows per workgroup (candidates both,
    // so a tuning cache may name them).
    for (m, want) in [(1, (16, 4)), (4, (16, 4)), (5, (2, 1)), (16, (2, 1))] {
        match select_linear(&caps(), &p(m)) {
            Kernel::Gemv(c) => {
                assert_eq!((c.rows, c.rpi), want, "m = {m}");
                assert!(GEMV_CANDIDATES.contains(&c), "m = {m}: {c}");
            }
            k => panic!("{k} for m = {m}"),
        }
    }
    // CPU adapters: as many rows per invocation as the rows of x leave registers for.
    let cpu = Capabilities {
        cpu: true,
        ..caps()
    };
    let rpi = |m| match select_linear(&cpu, &p(m)) {
        Kernel::Gemv(c) => c.rpi,
        k => panic!("{k} for m = {m}"),
    };
    assert_eq!(
        [rpi(1), rpi(2), rpi(3), rpi(4), rpi(8), rpi(16)],
        [8, 8, 4, 4, 2, 1]
    );
}
