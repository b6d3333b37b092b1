//! pertoken's main job as a library, for the CLI and any other crate: the model bench
//! ([`model`]: llama-bench's tests, verified, bounded, priced), a serving run of a model
//! on the user's adapter under continuous batching ([`serve`]), each run verified (sampled
//! requests against the same prompt run alone and, on models up to 1B parameters, against the
//! f64 reference), with the adapter's bandwidth bound, and priced; and the CPU reference replay
//! every check uses ([`Reference`]).

mod error;
pub mod model;
mod profile;
mod reference;
pub mod serve;

pub use error::{BenchError, Result};
pub use profile::by_op;
pub use reference::{Reference, scale};
