//! A serving run's check: the first and the last request of the workload run again alone, and
//! must choose the same tokens; on models of at most 1B parameters each is also replayed through
//! the f64 reference.

use pertoken_gpu::DType;
use pertoken_model::{Decoder, Feed, SeqStep};
use pertoken_serve::{Request, ServeRun};

use crate::{Reference, Result, scale};

/// Params up to which the f64 reference checks the served tokens.
const REFERENCE_PARAMS: u64 = 1_000_000_000;

/// How close two logits may be for the kernels' rounding to choose either: f32 keys and values
/// leave f32 arithmetic (as the model bench's check); f16 ones round each key and value to 11
/// bits first.
fn tie(kv: DType) -> f64 {
    if kv == DType::F16 { 3e-3 } else { 1e-3 }
}

/// `Ok(what was checked)` or `Err(what differed)`; an `Err` of the outer result is a failure to
/// run the check at all.
pub(super) fn verify(
    decoder: &mut Decoder,
    reference: &Reference<'_>,
    (requests, run): (&[Request], &ServeRun),
    kv: DType,
) -> Result<Result<String, String>> {
    let mut ids = vec![0, requests.len() - 1];
    ids.dedup();
    let whole = reference.source.spec().shape.params().total <= REFERENCE_PARAMS;
    let mut notes = Vec::new();
    for &id in &ids {
        let r = &requests[id];
        let served = &run.requests[id].output;
        let alone = alone(decoder, r, served, tie(kv))?;
        match alone {
            Ok(Some(note)) => notes.push(format!("request {id}: {note}")),
            Ok(None) => {}
            Err(e) => return Ok(Err(format!("request {id} run alone: {e}"))),
        }
        if whole {
            let seq: Vec<u32> = r.prompt.iter().chain(served).copied().collect();
            if let Err(e) = reference.replay(&seq, r.prompt.len(), Some(tie(kv))) {
                return Ok(Err(format!("request {id} against the f64 reference: {e}")));
            }
        }
    }
    let which = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    let mut what = format!(
        "requests {which} equal to each run alone{}",
        if whole {
            " and to the f64 reference"
        } else {
            ""
        }
    );
    if !notes.is_empty() {
        what.push_str(&format!(" ({})", notes.join("; ")));
    }
    Ok(Ok(what))
}

/// Runs `r` alone on sequence slot 0 (prompt chunks within the step budget, then decode steps)
/// and compares with `served`: `Ok(None)` when equal, `Ok(Some(note))` when they part at a near
/// tie (the logits of both choices within `tie` of the largest; the rest then differs
/// legitimately), `Err` otherwise.
fn alone(
    decoder: &mut Decoder,
    r: &Request,
    served: &[u32],
    tie: f64,
) -> Result<Result<Option<String>, String>> {
    let kv = decoder.paged_kv().expect("a serving decoder is paged");
    let budget = decoder.options().max_tokens;
    let total = r.prompt.len() + served.len();
    let n = total.div_ceil(kv.block);
    let blocks: Vec<u32> = (0..n as u32).collect();
    // Sliding-window layers: a ring over their pool, which holds a sequence's window and a
    // step's chunk, so the blocks a step reads and writes are distinct.
    let window: Vec<u32> = kv
        .window_blocks
        .map(|p| (0..n).map(|i| (i % p) as u32).collect())
        .unwrap_or_default();
    let mut pos = 0;
    let mut got = Vec::new();
    for (i, chunk) in r.prompt.chunks(budget).enumerate() {
        let last = (i + 1) * budget >= r.prompt.len();
        let out = decoder.step(&[SeqStep {
            seq: 0,
            pos,
            feed: Feed::Tokens(chunk),
            blocks: &blocks,
            window_blocks: &window,
            sample: last,
        }])?;
        pos += chunk.len();
        got.extend(out);
    }
    loop {
        let i = got.len() - 1;
        if got[i] != served[i] {
            let logits = decoder.step_logits(0)?;
            let (a, b) = (logits[got[i] as usize], logits[served[i] as usize]);
            let s = scale(&logits.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            let margin = f64::from((a - b).abs());
            return Ok(if margin <= tie * s {
                Ok(Some(format!(
                    "equal for {i} tokens, then a near tie (logits {margin:.2e} apart)"
                )))
            } else {
                Err(format!(
                    "token {i}: served {}, alone {} (logits {margin:.2e} apart)",
                    served[i], got[i]
                ))
            });
        }
        if got.len() == served.len() {
            return Ok(Ok(None));
        }
        let out = decoder.step(&[SeqStep {
            seq: 0,
            pos,
            feed: Feed::Next,
            blocks: &blocks,
            window_blocks: &window,
            sample: true,
        }])?;
        pos += 1;
        got.extend(out);
    }
}
