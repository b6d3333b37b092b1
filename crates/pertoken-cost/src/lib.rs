//! pertoken's cost model: from hardware, model shape and measured throughput to tokens per
//! second, dollars per token and joules per token.
//!
//! - [`Catalog`]: accelerators (every figure with its source and date) and model shapes, built in
//!   as TOML and extendable by user files; [`Model::from_hf_config`] imports a Hugging Face
//!   `config.json`.
//! - [`Model::params`], [`Model::kv_bytes_per_token`]: parameter counts and KV-cache size,
//!   computed from the shape (and checked against published counts in the tests).
//! - [`account`]: FLOPs and bytes of a decode step and of a prefill, and memory fit.
//! - [`estimate`]: a roofline per phase (with tensor parallelism), rented or owned prices, and the
//!   outputs: tokens/s, TTFT, TPOT, $ per 1M input/output/blended tokens, J per token, a Pareto
//!   front over batch sizes, and [`estimate::from_measured`] for measured rates.
//! - [`latency`]: a fixed cost per kernel launch and tensor-parallel all-reduces (α + n/β), with
//!   sourced interconnects; [`Stack`]: a serving stack's launches, efficiencies and unpacking
//!   costs, each sourced.
//! - [`serving`]: a server at full load (continuous or static batching at an input/output
//!   length), its batch bounded by KV memory and a latency limit.
//! - [`validation`]: published measurements (source, date, quote) and the model's error on each.
//! - [`compare`]: which chip serves a model cheapest: every configuration each part's stack can
//!   run, the cheapest that meets latency limits, and why the others lost.
//!
//! This crate has no GPU code and does not depend on wgpu or ndarray.

pub mod account;
mod arch;
mod catalog;
pub mod compare;
pub mod estimate;
pub mod latency;
mod model;
pub mod serving;
mod stack;
pub mod validation;

pub use arch::{Activation, Arch};
pub use catalog::{
    ADAPTER_PATTERNS, Catalog, Count, DefaultLink, Figure, Hardware, PRICE_KINDS, Peak, Price,
};
pub use model::{Mla, Model, MoeLayout, Params, Rope, RopePairing, RopeScaling};
pub use stack::{FormatSupport, Stack, stack, stacks};

/// What can go wrong in the cost model; each message says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CostError {
    /// A name not in the catalog.
    #[error("unknown {kind} {name:?}{hint}; known: {known}",
        hint = .closest.as_ref().map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default())]
    Unknown {
        /// `hardware` or `model`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The closest known name.
        closest: Option<String>,
        /// Every known name.
        known: String,
    },
    /// A catalog or config file that does not parse.
    #[error("{file}, line {line}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file that cannot be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// A model shape that is not self-consistent.
    #[error("model {name}: {reason}")]
    InvalidModel {
        /// The model.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An input that makes no sense (a zero or negative price, an empty batch).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// The input.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// `Result` with [`CostError`].
pub type Result<T, E = CostError> = std::result::Result<T, E>;
