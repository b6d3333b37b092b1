//! The serving crate's errors.

/// What went wrong in a serving run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The decoder (a kernel, the adapter, a step's shape).
    #[error(transparent)]
    Model(#[from] pertoken_model::ModelError),
    /// A workload or option that cannot run, with what to do instead.
    #[error("{0}")]
    Invalid(String),
}

/// The serving crate's result.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
