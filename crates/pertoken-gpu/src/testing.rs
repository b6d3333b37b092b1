//! Helpers for tests that need a GPU.

use std::sync::OnceLock;

use crate::{Gpu, GpuOptions};

/// The environment variable that turns "no adapter" from a skip into a failure (CI sets it).
pub const REQUIRE_GPU_VAR: &str = "PERTOKEN_REQUIRE_GPU";

/// Whether `PERTOKEN_REQUIRE_GPU` asks for a GPU (any value but empty or `0`).
pub fn gpu_required() -> bool {
    std::env::var(REQUIRE_GPU_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The GPU for tests, opened once per test binary from the environment's options.
///
/// Without an adapter this prints `skipped: no GPU adapter` and returns `None`, so the test can
/// return early; with `PERTOKEN_REQUIRE_GPU=1` it panics instead, failing the test.
pub fn gpu_or_skip() -> Option<Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let opened = GPU.get_or_init(|| {
        GpuOptions::from_env()
            .and_then(|o| Gpu::new(&o))
            .map_err(|e| e.to_string())
    });
    match opened {
        Ok(gpu) => Some(gpu.clone()),
        Err(e) if gpu_required() => {
            panic!("{REQUIRE_GPU_VAR} is set but no GPU could be opened: {e}")
        }
        Err(e) => {
            println!("skipped: no GPU adapter ({e})");
            None
        }
    }
}
