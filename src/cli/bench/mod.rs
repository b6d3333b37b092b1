//! `pertoken bench`: the main job, a model's prompt and generation tokens/s on this adapter,
//! verified and against the adapter's bound ([`model`]); `pertoken bench kernels` measures the
//! kernels one at a time ([`kernels`]).

pub(crate) mod kernels;
mod model;

pub(crate) use kernels::{median, parse_dtype};

use super::CliError;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    #[command(flatten)]
    model: model::ModelArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Measure each kernel alone (matmul, linear, attention, decode over a KV cache) against
    /// the copy bandwidth, verified.
    Kernels(kernels::Args),
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    match &args.sub {
        Some(Sub::Kernels(k)) => kernels::run(k),
        None => model::run(&args.model),
    }
}
