//! `pertoken run`: one kernel on the user's own `.npy` files, the result written as a float32
//! `.npy` file, so anyone can check it against numpy or PyTorch; `--check` also runs the CPU
//! reference and prints the errors and the verdict.
//!
//! The files are read and every shape checked before the GPU is opened; every tensor the op binds
//! whole is checked against the adapter's storage-binding limit before anything is uploaded.

mod npy;
mod ops;
mod report;

use std::path::PathBuf;

use pertoken_gpu::{DType, GpuOptions};

use super::CliError;
use super::bench::parse_dtype;

/// The ops `pertoken run` exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OpName {
    /// `a · b`: a [M, K] or [B, M, K], b [K, N] or [B, K, N] → [M, N] or [B, M, N].
    Matmul,
    /// `x · wᵀ + bias`: x [.., K], w [N, K] (PyTorch's Linear), bias [N] (optional) → [.., N].
    Linear,
    /// `softmax(q·kᵀ·scale + mask)·v`: q [H, Lq, D], k and v [Hkv, Lkv, D] → [H, Lq, D].
    Attention,
    /// RMSNorm: x [.., D], w [D] → x's shape.
    Rmsnorm,
    /// RoPE as the decoder runs it (fused with the KV append): x [L, H, D] → [H, L, D].
    Rope,
    /// SwiGLU's gate `silu(g) · u`: g and u of one shape → that shape.
    SiluMul,
    /// The embedding gather: table [V, D], ids [..] integers → [.., D].
    Embedding,
}

impl std::fmt::Display for OpName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// RoPE's pairing of a head's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pairing {
    /// Hugging Face's rotate-half: element f with f + D/2.
    Halves,
    /// Adjacent elements 2f and 2f + 1 (Meta's layout; llama.cpp's GGUF files).
    Interleaved,
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("{s:?}: expected NAME=FILE.npy, as in a=a.npy")),
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Layouts are row-major (C order), the library's own, as listed above \
and in docs/run.md. Inputs are float32, float16 or float64 .npy files (token ids: \
integers); the output is float32. Example:
  pertoken run matmul --in a=a.npy --in b=b.npy --out c.npy --check
  pertoken run attention --in q=q.npy --in k=k.npy --in v=v.npy --causal --out o.npy"
)]
pub(crate) struct Args {
    /// The op: matmul, linear, attention, rmsnorm, rope, silu-mul or embedding.
    #[arg(value_enum)]
    op: OpName,
    /// An input, NAME=FILE.npy (repeat for each): matmul a, b; linear x, w, bias; attention q,
    /// k, v; rmsnorm x, w; rope x; silu-mul g, u; embedding table, ids.
    #[arg(long = "in", value_name = "NAME=FILE", value_parser = parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// Where to write the result (float32 .npy).
    #[arg(long, value_name = "FILE.npy")]
    out: Option<PathBuf>,
    /// The weight's format: matmul's b (f32, f16), linear's w and embedding's table (f32, f16,
    /// q8_0, q4_0, q4_1, q5_0, q5_1 and the K-quants q4_k, q5_k, q6_k, quantized on the CPU as
    /// the reference does), attention's q, k and v
    /// (f32, f16). RMSNorm, RoPE and SiLU-mul are f32 only.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: DType,
    /// Also run the f64 CPU reference and print max abs and rel error, NMSE and the verdict
    /// (exit status 1 when an element is out of tolerance).
    #[arg(long)]
    check: bool,
    /// attention: mask keys after each query's position. Query i attends keys
    /// j ≤ i + (Lkv − Lq): the queries are the last Lq positions.
    #[arg(long)]
    causal: bool,
    /// attention: the score scale (default 1/√head_dim).
    #[arg(long, allow_hyphen_values = true)]
    scale: Option<f32>,
    /// rmsnorm: the epsilon inside the square root (default 1e-5).
    #[arg(long, allow_hyphen_values = true)]
    eps: Option<f32>,
    /// rope: the base θ (default 10000).
    #[arg(long, allow_hyphen_values = true)]
    theta: Option<f64>,
    /// rope: the position of the first token (default 0); token i turns by (position + i)·θ^(−2f/D).
    #[arg(long)]
    position: Option<usize>,
    /// rope: which elements turn together (default halves).
    #[arg(long, value_enum)]
    pairing: Option<Pairing>,
    /// Run on the adapter whose name contains this (default: PERTOKEN_ADAPTER, else the best).
    #[arg(long)]
    adapter: Option<String>,
    /// Treat the adapter's storage-binding limit as at most this many bytes (to try the
    /// binding-limit checks and the window splits on small inputs).
    #[arg(long, value_name = "BYTES")]
    max_storage_binding: Option<u64>,
}

/// Refuses options that the op does not take.
fn check_options(a: &Args) -> Result<(), CliError> {
    let given = [
        ("--causal", a.causal, OpName::Attention),
        ("--scale", a.scale.is_some(), OpName::Attention),
        ("--eps", a.eps.is_some(), OpName::Rmsnorm),
        ("--theta", a.theta.is_some(), OpName::Rope),
        ("--position", a.position.is_some(), OpName::Rope),
        ("--pairing", a.pairing.is_some(), OpName::Rope),
    ];
    for (flag, set, op) in given {
        if set && a.op != op {
            return Err(format!(
                "{flag} is an option of `pertoken run {op}`, not of {}",
                a.op
            )
            .into());
        }
    }
    if a.out.is_none() && !a.check {
        return Err("nothing to do: give --out FILE.npy for the result, --check, or both".into());
    }
    Ok(())
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    check_options(args)?;
    let inputs = ops::Inputs::new(args.op, &args.inputs)?;
    let op = ops::build(args, &inputs)?;
    let mut options = GpuOptions::from_env()?;
    if let Some(name) = &args.adapter {
        options = options.with_adapter(name.clone());
    }
    options.max_storage_binding = args.max_storage_binding;
    let gpu = pertoken_gpu::Gpu::new(&options)?;
    eprintln!(
        "adapter: {} ({:?})",
        gpu.adapter().name,
        gpu.adapter().backend
    );
    ops::check_bindings(args.op, &op.bindings(), gpu.capabilities())?;
    let out = op
        .gpu(&gpu)
        .map_err(|e| format!("{} on the GPU failed: {e}", args.op))?;
    let shape = op.out_shape();
    if let Some(path) = &args.out {
        npy::write_f32(path, &shape, &out)?;
        println!("wrote {}: float32 {shape:?}", path.display());
    }
    if !args.check {
        return Ok(());
    }
    let s = report::check(op.as_ref(), &out, &shape)?;
    if s.passed() {
        Ok(())
    } else {
        Err(format!(
            "check failed: {} of {} elements out of tolerance",
            s.failures, s.len
        )
        .into())
    }
}
