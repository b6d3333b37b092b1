//! Each configuration's first repetition checked against the f64 CPU reference: the whole
//! model when it is small enough, else a 2-layer copy of it over a shorter sequence.

use pertoken_gpu::Gpu;
use pertoken_model::{Decoder, DecoderOptions};
use pertoken_reference::{Tolerance, compare};

use super::power::PowerMeter;
use super::source::Truncated;
use super::{Test, repetition};
use crate::{Reference, Result, scale};

/// Params up to which the whole model is checked; past it, a 2-layer copy.
const WHOLE_CHECK_PARAMS: u64 = 1_000_000_000;
/// Tokens a reduced-depth check runs (the reference is slow on wide layers).
const REDUCED_CHECK_TOKENS: usize = 8;

/// Checks the sequence the decoder just ran against the CPU reference: every greedy token it
/// chose and the last logits. Small models are checked whole; larger ones through a 2-layer
/// copy run again on the GPU with a shorter sequence.
pub(super) fn verify(
    gpu: &Gpu,
    decoder: &Decoder,
    reference: &Reference<'_>,
    test: Test,
    depth: usize,
) -> Result<Result<String, String>> {
    let params = reference.source.spec().shape.params().total;
    if params <= WHOLE_CHECK_PARAMS {
        return checked_sequences(decoder, reference, test, depth, "whole model");
    }
    let copy = Truncated::new(reference.source, 2);
    let t = match test {
        Test::Prompt(p) => Test::Prompt(p.min(REDUCED_CHECK_TOKENS)),
        Test::Gen(n) => Test::Gen(n.min(REDUCED_CHECK_TOKENS)),
    };
    let d = depth.min(REDUCED_CHECK_TOKENS);
    let options = DecoderOptions {
        context: d + t.tokens() + 2,
        max_tokens: t.tokens(),
        batch: decoder.options().batch,
    };
    let mut small = Decoder::load(gpu, &copy, options)?;
    repetition(gpu, &mut small, (t, d), &PowerMeter::off())?;
    checked_sequences(&small, &Reference::new(&copy), t, d, "2-layer copy")
}

/// Checks the first and the last sequence the decoder just ran (a prompt runs on the first
/// alone) against the reference; `Ok(what was checked)` or `Err(what differed)`.
fn checked_sequences(
    decoder: &Decoder,
    reference: &Reference<'_>,
    test: Test,
    depth: usize,
    what: &str,
) -> Result<Result<String, String>> {
    let batch = decoder.options().batch;
    let (start, sequences) = match test {
        Test::Prompt(p) => (depth + p, vec![0]),
        Test::Gen(_) if batch > 1 => (depth.max(1), vec![0, batch - 1]),
        Test::Gen(_) => (depth.max(1), vec![0]),
    };
    let mut tokens = 0;
    for &b in &sequences {
        let seq = decoder.tokens_of(b)?;
        let logits = decoder.logits_of(b)?;
        if let Err(e) = check(reference, &seq, start, &logits) {
            return Ok(Err(format!("sequence {b}: {e}")));
        }
        tokens = seq.len() - 1;
    }
    let which = if sequences.len() > 1 {
        format!(", sequences 0 and {}", batch - 1)
    } else {
        String::new()
    };
    Ok(Ok(format!("{what}, {tokens} tokens{which}")))
}

/// The reference over `seq[..start]`, then each later token: each must be the reference's
/// greedy choice (or tie it within 1e-3 of the largest logit), and the last logits must match.
fn check(
    reference: &Reference<'_>,
    seq: &[u32],
    start: usize,
    logits: &[f32],
) -> Result<(), String> {
    let want = reference.replay(seq, start, Some(1e-3))?;
    let tol = Tolerance {
        abs: 1e-4 * scale(&want),
        rel: 1e-4,
    };
    let cmp = compare(logits, &want, tol);
    if cmp.passed() {
        Ok(())
    } else {
        Err(format!("last logits: {cmp}"))
    }
}
