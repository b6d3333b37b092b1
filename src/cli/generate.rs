//! `pertoken generate`: text from a model, streamed as it decodes, with prefill and decode
//! rates; `--check` replays the tokens through the CPU reference.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use pertoken_formats::tokenizer::Tokenizer;
use pertoken_gpu::DType;
use pertoken_model::{Decoder, DecoderOptions, WeightSource};

use super::bench::parse_dtype;
use super::model::{Loaded, Reference, by_op};
use super::{CliError, open_gpu};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("weights_from").required(true).args(["gguf", "safetensors", "model"])))]
pub(crate) struct Args {
    /// A GGUF model file (llama, qwen2, qwen3, gemma3 or phi3 architecture; F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K tensors, each in its own type).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// A Hugging Face checkpoint: a folder with config.json and model.safetensors (or shards).
    #[arg(long)]
    safetensors: Option<PathBuf>,
    /// A catalog model (`pertoken models` lists them) with seeded random weights: the text is
    /// noise, the timing is honest.
    #[arg(long)]
    model: Option<String>,
    /// With --model: the weights' format (f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k,
    /// q5_k, q6_k).
    #[arg(long, default_value = "q4_0", value_parser = parse_dtype)]
    weights: DType,
    /// With --model: the seed of the random weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The prompt (needs the tokenizer a GGUF file carries).
    #[arg(long)]
    prompt: Option<String>,
    /// The prompt as token ids (`1,2,3`), for any model.
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Vec<u32>,
    /// Wrap the prompt in the chat template's user and assistant turns, as instruct models
    /// expect: ChatML (`<|im_start|>user ... <|im_end|>`), Gemma's or Phi-3's, whichever the
    /// vocabulary has; generation stops at the end of the model's turn.
    #[arg(long)]
    chat: bool,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 64)]
    tokens: usize,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    /// Replay the prompt and the generated tokens through the CPU reference (f64) and check
    /// that it chooses the same greedy tokens (slow on large models).
    #[arg(long)]
    check: bool,
    /// After generating, time decode steps: the whole step as one submission (median of this
    /// many) against the sum of its kernels each submitted and timed alone, with the share of
    /// each kind of kernel.
    #[arg(long, value_name = "STEPS", num_args = 0..=1, default_missing_value = "5")]
    profile: Option<usize>,
    /// Which fusions decode steps use, for A/B runs with --profile: `gate` (the SwiGLU gate in
    /// the down projection's GEMV), `norm` (the RMSNorms and residual adds in the GEMVs), both
    /// (`gate,norm`) or `none`. Default: both on GPUs, none on CPU adapters (where each was
    /// measured slower).
    #[arg(long, value_delimiter = ',', value_parser = ["gate", "norm", "none"])]
    fuse: Option<Vec<String>>,
    /// Run on the adapter whose name contains this (default: PERTOKEN_ADAPTER, else the best).
    #[arg(long)]
    adapter: Option<String>,
}

fn load(args: &Args) -> Result<Loaded, CliError> {
    if let Some(l) = Loaded::open_file(args.gguf.as_deref(), args.safetensors.as_deref())? {
        return Ok(l);
    }
    Loaded::synthetic(
        args.model.as_deref().unwrap_or_default(),
        args.weights,
        args.seed,
    )
}

fn prompt_ids(args: &Args, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>, CliError> {
    match (&args.prompt, args.prompt_ids.is_empty(), tokenizer) {
        (Some(_), false, _) => Err("give --prompt or --prompt-ids, not both".into()),
        (Some(text), true, Some(t)) => {
            let text = if args.chat {
                super::chat::template(t)?.wrap(text)
            } else {
                text.clone()
            };
            Ok(t.encode_prompt(&text)?)
        }
        (Some(_), true, None) => Err(
            "--prompt needs a tokenizer, which only GGUF files carry here; give the prompt as \
             token ids with --prompt-ids 1,2,3"
                .into(),
        ),
        (None, false, _) => Ok(args.prompt_ids.clone()),
        (None, true, _) => Err("give a prompt: --prompt TEXT, or --prompt-ids 1,2,3".into()),
    }
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let loaded = load(args)?;
    let source = loaded.source();
    let tokenizer = match &loaded {
        Loaded::Gguf(g) => Some(Tokenizer::from_gguf(g.gguf())?),
        _ => None,
    };
    let prompt = prompt_ids(args, tokenizer.as_ref())?;
    let gpu = open_gpu(args.adapter.as_deref())?;
    let m = &source.spec().shape;
    eprintln!(
        "model: {} ({} layers, hidden {}, {} heads / {} KV heads), {}",
        m.name,
        m.layers,
        m.hidden,
        m.heads,
        m.kv_heads,
        source.describe()
    );
    eprintln!(
        "adapter: {} ({:?})",
        gpu.adapter().name,
        gpu.adapter().backend
    );
    let options = DecoderOptions {
        context: prompt.len() + args.tokens.max(1) + 3 * args.profile.unwrap_or(0) + 2,
        max_tokens: prompt.len().clamp(1, 512),
        batch: 1,
    };
    let started = Instant::now();
    let mut decoder = Decoder::load(&gpu, source, options)?;
    if let Some(fuse) = &args.fuse {
        if fuse.len() > 1 && fuse.iter().any(|f| f == "none") {
            return Err(
                "--fuse none cannot be combined with gate or norm: give one or the other".into(),
            );
        }
        decoder.set_fuse_gate(fuse.iter().any(|f| f == "gate"));
        decoder.set_fuse_norm(fuse.iter().any(|f| f == "norm"));
    }
    // The linear kernels `pertoken bench` tuned on this adapter, where it has (never measured
    // here: the heuristic elsewhere).
    let mut tuner = pertoken_matmul::Tuner::new(&gpu, pertoken_matmul::TuneMode::CacheOnly, None);
    let how = decoder.tune(&mut tuner, &[1, options.max_tokens])?;
    let cached = how.iter().filter(|(_, h)| *h == "cached").count();
    if cached > 0 {
        eprintln!(
            "linear kernels: {cached} of {} tuned by an earlier bench",
            how.len()
        );
    }
    eprintln!(
        "loaded {:.1} MB of weights in {:.2} s; prompt: {} tokens",
        decoder.weight_bytes() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        prompt.len()
    );
    // Generation ends at EOS, or (--chat) at the token that ends the model's turn.
    let mut stops: Vec<u32> = tokenizer
        .as_ref()
        .and_then(|t| t.eos())
        .into_iter()
        .collect();
    if let (true, Some(t)) = (args.chat, &tokenizer) {
        stops.extend(t.token_to_id(super::chat::template(t)?.end));
    }
    // Warm-up: the first use of each kernel compiles its pipeline, which is not the model's
    // speed. One prefill and one decode step compile every pipeline the timed run uses.
    decoder.prefill(&prompt)?;
    decoder.decode()?;
    decoder.tokens()?;
    decoder.reset()?;

    let mut stream = tokenizer.as_ref().map(|t| t.stream());
    let mut out = std::io::stdout().lock();
    if let Some(text) = &args.prompt {
        // A chat answer is a turn of its own.
        if args.chat {
            writeln!(out, "{text}")?;
        } else {
            write!(out, "{text}")?;
        }
    }
    // Prefill, until the first generated token is on the host.
    let t0 = Instant::now();
    decoder.prefill(&prompt)?;
    let mut seq = decoder.tokens()?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let mut generated = vec![*seq.last().ok_or("no token")?];
    let mut show = |id: u32, out: &mut dyn Write| -> Result<(), CliError> {
        match &mut stream {
            Some(s) => write!(out, "{}", s.push(id)?)?,
            None => write!(out, " {id}")?,
        }
        out.flush()?;
        Ok(())
    };
    show(generated[0], &mut out)?;
    let t1 = Instant::now();
    while generated.len() < args.tokens
        && (args.ignore_eos || !stops.contains(generated.last().unwrap_or(&0)))
    {
        decoder.decode()?;
        seq = decoder.tokens()?;
        let id = *seq.last().ok_or("no token")?;
        generated.push(id);
        show(id, &mut out)?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    writeln!(out)?;
    let steps = generated.len() - 1;
    eprintln!(
        "prefill: {} tokens in {:.3} s = {:.1} tokens/s (to the first generated token)",
        prompt.len(),
        prefill_s,
        prompt.len() as f64 / prefill_s
    );
    if steps > 0 {
        eprintln!(
            "decode:  {steps} tokens in {:.3} s = {:.1} tokens/s (each step submitted whole, its \
             token read back to stream it)",
            decode_s,
            steps as f64 / decode_s
        );
    }
    if let Some(steps) = args.profile {
        profile(&gpu, &mut decoder, steps.max(1))?;
    }
    if args.check {
        check(source, &prompt, &generated)?;
    }
    Ok(())
}

/// Times `steps` decode steps whole and `steps` with each kernel alone, and prints both and
/// where the time goes.
fn profile(gpu: &pertoken_gpu::Gpu, decoder: &mut Decoder, steps: usize) -> Result<(), CliError> {
    let mut whole = Vec::new();
    let mut alone = Vec::new();
    let mut ops = Vec::new();
    let mut method = None;
    let mut host = Vec::new();
    for _ in 0..steps {
        // Recording alone (decode only records; nothing runs until the sync).
        let started = std::time::Instant::now();
        decoder.decode()?;
        host.push(started.elapsed().as_secs_f64());
        gpu.sync()?;
        // The decoder's own errors pass through the timers' closures as values.
        let (r, t) = gpu.time(|| Ok(decoder.decode()))?;
        r?;
        method = Some(t.method);
        whole.push(t.seconds);
        let (r, log) = gpu.time_each(|| Ok(decoder.decode()))?;
        r?;
        alone.push(log.iter().map(|(_, t)| t.seconds).sum::<f64>());
        if ops.is_empty() {
            ops = by_op(&log);
        }
    }
    let (w, a) = (
        super::bench::median(&mut whole),
        super::bench::median(&mut alone),
    );
    let method = method.map_or_else(String::new, |m| m.to_string());
    let host = super::bench::median(&mut host);
    eprintln!(
        "profile ({steps} steps at position {}, {method}): a decode step submitted whole takes \
         {:.3} ms; its {} kernels each submitted and timed alone add up to {:.3} ms (step / \
         sum = {:.2})",
        decoder.position(),
        w * 1e3,
        ops.iter().map(|e| e.1).sum::<usize>(),
        a * 1e3,
        w / a
    );
    eprintln!(
        "  recording a step on the host (bind groups, parameters, dispatches): {:.3} ms",
        host * 1e3
    );
    let total: f64 = ops.iter().map(|e| e.2).sum();
    for (op, n, s) in ops {
        eprintln!(
            "  {op:<16} {n:>4} launches {:>9.3} ms {:>5.1}%",
            s * 1e3,
            100.0 * s / total
        );
    }
    Ok(())
}

/// Feeds the prompt and the generated tokens to the CPU reference and checks that its greedy
/// choice at every step is the token the GPU chose.
fn check(source: &dyn WeightSource, prompt: &[u32], generated: &[u32]) -> Result<(), CliError> {
    eprintln!("check: running the CPU reference (f64) over the same tokens...");
    let seq: Vec<u32> = prompt.iter().chain(generated).copied().collect();
    Reference::new(source)
        .replay(&seq, prompt.len(), None)
        .map_err(|e| format!("check FAILED at {e}"))?;
    eprintln!(
        "check: verified: the CPU reference chooses the same {} greedy tokens",
        generated.len()
    );
    Ok(())
}
