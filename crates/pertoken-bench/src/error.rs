//! The bench library's errors.

/// What went wrong in a bench.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The adapter or a kernel.
    #[error(transparent)]
    Gpu(#[from] pertoken_gpu::Error),
    /// The decoder or the model's files.
    #[error(transparent)]
    Model(#[from] pertoken_model::ModelError),
    /// A serving run.
    #[error(transparent)]
    Serve(#[from] pertoken_serve::ServeError),
    /// The cost model.
    #[error(transparent)]
    Cost(#[from] pertoken_cost::CostError),
    /// Options that cannot run, with what to do instead.
    #[error("{0}")]
    Invalid(String),
}

/// The bench library's result.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
