//! The decoder's error type.

/// What can go wrong loading or running a model. Every message names what was wrong and what
/// to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A model file could not be read or disagrees with itself.
    #[error(transparent)]
    Format(#[from] pertoken_formats::FormatError),
    /// A kernel or the runtime failed.
    #[error(transparent)]
    Gpu(#[from] pertoken_gpu::Error),
    /// The model's shape is not one this decoder runs.
    #[error("model {model}: {reason}")]
    Unsupported {
        /// The model.
        model: String,
        /// What is not supported, and what is.
        reason: String,
    },
    /// The model and its KV cache do not fit the adapter.
    #[error("{0}")]
    TooLarge(Box<Oversize>),
    /// A call that cannot be served as asked (a token past the vocabulary, a full context).
    #[error("{op}: {reason}")]
    Invalid {
        /// The call.
        op: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The decoder's result type.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What does not fit, by how much, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{model} does not fit on {adapter}: {what} takes {bytes} bytes, over the limit of {limit} \
     bytes ({limit_name}). {advice}"
)]
pub struct Oversize {
    /// The model.
    pub model: String,
    /// The adapter.
    pub adapter: String,
    /// What is too large.
    pub what: String,
    /// Its size.
    pub bytes: u64,
    /// The limit.
    pub limit: u64,
    /// Where the limit comes from.
    pub limit_name: &'static str,
    /// What to change.
    pub advice: String,
}
