//! Subcommands.

mod bench;
mod chat;
mod cost;
mod devices;
mod generate;
mod model;
mod run;

use clap::{Parser, Subcommand};
use pertoken_gpu::{Gpu, GpuOptions};

/// What a token costs on your hardware, and how close the kernels get to it.
#[derive(Debug, Parser)]
#[command(name = "pertoken", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List adapters, backends, capabilities and limits.
    Devices(devices::Args),
    /// Measure a model's prompt and generation tokens/s on the chosen adapter, verified against
    /// the CPU reference, with the adapter's bound (`bench kernels`: each kernel alone).
    Bench(Box<bench::Args>),
    /// Generate text from a model (GGUF, safetensors, or a catalog shape with random weights),
    /// streamed as it decodes, with prefill and decode rates.
    Generate(Box<generate::Args>),
    /// The cost model on catalog hardware: tokens/s, $ and J per token. No GPU needed.
    Cost(Box<cost::Args>),
    /// Run one kernel on your own .npy files and write the result as .npy, to compare with
    /// numpy or PyTorch; `--check` also runs the CPU reference.
    Run(Box<run::Args>),
    /// List the model catalog.
    Models(cost::CatalogArgs),
    /// List the hardware catalog.
    Hardware(cost::CatalogArgs),
}

/// Errors the CLI reports; each says what to do.
pub(crate) type CliError = Box<dyn std::error::Error>;

pub(crate) fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Devices(args) => devices::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Cost(args) => cost::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Models(args) => cost::models(&args),
        Command::Hardware(args) => cost::hardware(&args),
    }
}

/// A progress bar on stderr for `len` steps of `what` (indicatif draws nothing where stderr
/// is not a terminal, so logs and tests see only the results).
pub(crate) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Opens the adapter named by `--adapter`, else by the environment (`PERTOKEN_ADAPTER`,
/// `WGPU_BACKEND`).
pub(crate) fn open_gpu(adapter: Option<&str>) -> Result<Gpu, CliError> {
    let mut options = GpuOptions::from_env()?;
    if let Some(name) = adapter {
        options = options.with_adapter(name);
    }
    Ok(Gpu::new(&options)?)
}
