//! Steps over a paged KV cache against the f64 reference: sequences of different lengths whose
//! blocks are scattered through the pool, prompt chunks and decode rows mixed in one step, a
//! finished sequence's blocks freed and reused by the next, a preempted sequence recomputed, and
//! a step's dispatch count that does not grow with the batch.

mod common;

use common::{BASE, Tiny, logits_tolerance, prompt, reference_of};
use pertoken_attention::BlockAllocator;
use pertoken_cost::RopePairing;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Gpu};
use pertoken_model::weights::reference_decoder;
use pertoken_model::{Decoder, DecoderOptions, Feed, PagedKv, SeqStep, Synthetic, WeightSource};
use pertoken_reference::decoder::{self, Decoder as Cpu, Weights};

/// Logits within this fraction of the largest of the reference's: f32 keys and values leave only
/// f32 arithmetic; f16 ones round each key and value to 11 bits (2⁻¹¹ ≈ 5e-4 relative).
const REL_F32: f64 = 2e-5;
const REL_F16: f64 = 4e-3;
const BLOCK: usize = 4;

/// One sequence as the test's little scheduler holds it: every token known (prompt, then each
/// chosen one), how many positions are in the cache, its blocks, and the reference fed the same.
struct Seq<'w> {
    slot: usize,
    tokens: Vec<u32>,
    fed: usize,
    blocks: Vec<u32>,
    cpu: Cpu<'w>,
}

/// What one sequence does in a step: a chunk of this many of its known tokens, or decode.
#[derive(Clone, Copy)]
enum Act {
    Chunk(usize),
    Decode,
}

struct Harness<'w> {
    decoder: Decoder,
    alloc: BlockAllocator,
    source: &'w Synthetic,
    reference: &'w Weights,
    rel: f64,
    /// Sampled rows checked against the reference.
    checked: usize,
}

impl<'w> Harness<'w> {
    fn new(gpu: &Gpu, source: &'w Synthetic, reference: &'w Weights, kv: PagedKv) -> Self {
        let options = DecoderOptions {
            context: 40,
            max_tokens: 16,
            batch: 4,
        };
        Harness {
            decoder: Decoder::load_paged(gpu, source, options, kv).unwrap(),
            alloc: BlockAllocator::new(kv.blocks).unwrap(),
            source,
            reference,
            rel: if kv.dtype == DType::F16 {
                REL_F16
            } else {
                REL_F32
            },
            checked: 0,
        }
    }

    fn seq(&self, slot: usize, prompt: Vec<u32>) -> Seq<'w> {
        Seq {
            slot,
            tokens: prompt,
            fed: 0,
            blocks: Vec::new(),
            cpu: reference_decoder(self.source.spec(), self.reference).unwrap(),
        }
    }

    /// One step of `acts` over `seqs`; each sampled token is checked against the reference
    /// and appended.
    fn step(&mut self, seqs: &mut [&mut Seq<'w>], acts: &[Act]) {
        let mut plan = Vec::new();
        for (s, &act) in seqs.iter_mut().zip(acts) {
            let n = match act {
                Act::Chunk(n) => n,
                Act::Decode => 1,
            };
            let need = (s.fed + n).div_ceil(BLOCK);
            if need > s.blocks.len() {
                let more = self.alloc.allocate(need - s.blocks.len()).expect("blocks");
                s.blocks.extend(more);
            }
            plan.push((n, s.fed + n == s.tokens.len()));
        }
        let steps: Vec<SeqStep<'_>> = seqs
            .iter()
            .zip(acts)
            .zip(&plan)
            .map(|((s, act), &(n, sample))| SeqStep {
                seq: s.slot,
                pos: s.fed,
                feed: match act {
                    Act::Chunk(_) => Feed::Tokens(&s.tokens[s.fed..s.fed + n]),
                    Act::Decode => Feed::Next,
                },
                blocks: &s.blocks,
                window_blocks: &[],
                sample,
            })
            .collect();
        let got = self.decoder.step(&steps).unwrap();
        let mut sampled = 0;
        for (s, &(n, sample)) in seqs.iter_mut().zip(&plan) {
            let want = s.cpu.step(&s.tokens[s.fed..s.fed + n]).unwrap();
            s.fed += n;
            if !sample {
                continue;
            }
            let logits = self.decoder.step_logits(sampled).unwrap();
            let cmp =
                pertoken_reference::compare(&logits, &want, logits_tolerance(&want, self.rel));
            assert!(cmp.passed(), "slot {} at {}: {cmp}", s.slot, s.fed);
            let chosen = got[sampled];
            let best = decoder::argmax(&want).unwrap();
            let margin = want[best] - want[chosen as usize];
            assert!(
                chosen as usize == best || margin <= 2.0 * cmp.tolerance.abs,
                "slot {} chose {chosen}, the reference {best} by {margin}",
                s.slot
            );
            s.tokens.push(chosen);
            sampled += 1;
            self.checked += 1;
        }
        assert_eq!(sampled, got.len());
    }

    fn finish(&mut self, s: &mut Seq<'w>) {
        self.alloc.release(&s.blocks).unwrap();
        s.blocks.clear();
    }
}

fn model() -> (Tiny, Synthetic) {
    let tiny = Tiny {
        bias: true,
        pairing: RopePairing::Interleaved,
        ..BASE
    };
    let source = Synthetic::new(tiny.spec(), DType::Q8_0, 71).unwrap();
    (tiny, source)
}

/// Prompts of 7, 13, 3 and 10 tokens in chunks that share steps with other sequences' decode
/// rows; blocks handed out as each grows, so every sequence's blocks interleave with the
/// others'; then a sequence finishes and a new one takes its slot and its freed blocks.
fn mixed_schedule(dtype: DType) {
    let Some(gpu) = gpu_or_skip() else { return };
    let (tiny, source) = model();
    let reference = reference_of(&source);
    let kv = PagedKv {
        blocks: 30,
        block: BLOCK,
        dtype,
        window_blocks: None,
    };
    let mut h = Harness::new(&gpu, &source, &reference, kv);
    let mut a = h.seq(0, prompt(1, 7, tiny.vocab));
    let mut b = h.seq(1, prompt(2, 13, tiny.vocab));
    let mut c = h.seq(2, prompt(3, 3, tiny.vocab));
    let mut d = h.seq(3, prompt(4, 10, tiny.vocab));
    use Act::{Chunk, Decode};
    h.step(&mut [&mut a, &mut b], &[Chunk(7), Chunk(5)]);
    h.step(&mut [&mut a, &mut b, &mut c], &[Decode, Chunk(8), Chunk(3)]);
    h.step(
        &mut [&mut a, &mut b, &mut c, &mut d],
        &[Decode, Decode, Decode, Chunk(9)],
    );
    h.step(
        &mut [&mut d, &mut a, &mut b, &mut c],
        &[Chunk(1), Decode, Decode, Decode],
    );
    for _ in 0..3 {
        h.step(
            &mut [&mut a, &mut b, &mut c, &mut d],
            &[Decode, Decode, Decode, Decode],
        );
    }
    // c is done: its blocks go back, and e takes its slot and (most recently freed first) the
    // very blocks c's keys are still in.
    let freed = c.blocks.clone();
    h.finish(&mut c);
    let mut e = h.seq(2, prompt(5, 6, tiny.vocab));
    h.step(&mut [&mut e, &mut a, &mut d], &[Chunk(6), Decode, Decode]);
    assert!(
        e.blocks.iter().all(|x| freed.contains(x)),
        "e reuses c's blocks"
    );
    for _ in 0..2 {
        h.step(
            &mut [&mut a, &mut b, &mut d, &mut e],
            &[Decode, Decode, Decode, Decode],
        );
    }
    assert!(h.checked >= 25, "{} sampled rows checked", h.checked);
}

#[test]
fn mixed_prefill_and_decode_steps_over_scattered_blocks_match_the_reference() {
    mixed_schedule(DType::F32);
}

#[test]
fn f16_keys_and_values_match_the_reference_within_their_rounding() {
    mixed_schedule(DType::F16);
}

/// A sequence preempted after a few tokens (its blocks freed and overwritten by another) and
/// recomputed later from its prompt and the tokens it had chosen continues as it would have.
#[test]
fn a_preempted_sequence_recomputes_and_continues_as_if_never_stopped() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (tiny, source) = model();
    let reference = reference_of(&source);
    let kv = PagedKv {
        blocks: 8,
        block: BLOCK,
        dtype: DType::F16,
        window_blocks: None,
    };
    use Act::{Chunk, Decode};
    // Uninterrupted: 9 tokens of prompt, then 8 decode steps.
    let mut h = Harness::new(&gpu, &source, &reference, kv);
    let mut alone = h.seq(0, prompt(8, 9, tiny.vocab));
    h.step(&mut [&mut alone], &[Chunk(9)]);
    for _ in 0..8 {
        h.step(&mut [&mut alone], &[Decode]);
    }
    // Preempted after 3 decode steps: another sequence takes every block, then the first is run
    // again from its 9 + 4 known tokens and decodes the rest.
    let mut h = Harness::new(&gpu, &source, &reference, kv);
    let mut x = h.seq(0, prompt(8, 9, tiny.vocab));
    h.step(&mut [&mut x], &[Chunk(9)]);
    for _ in 0..3 {
        h.step(&mut [&mut x], &[Decode]);
    }
    h.finish(&mut x);
    x.fed = 0;
    x.cpu = reference_decoder(source.spec(), &reference).unwrap();
    let mut y = h.seq(1, prompt(9, 16, tiny.vocab));
    h.step(&mut [&mut y], &[Chunk(16)]);
    for _ in 0..15 {
        h.step(&mut [&mut y], &[Decode]);
    }
    assert_eq!(
        h.alloc.available(),
        0,
        "y filled the pool over x's old blocks"
    );
    h.finish(&mut y);
    let known = x.tokens.len();
    h.step(&mut [&mut x], &[Chunk(known)]);
    for _ in 0..4 {
        h.step(&mut [&mut x], &[Decode]);
    }
    assert_eq!(x.tokens, alone.tokens);
}

/// The dispatches of a decode step at 1, 8 and 64 sequences: the same.
#[test]
fn a_steps_dispatch_count_does_not_grow_with_the_batch() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (tiny, source) = model();
    let options = DecoderOptions {
        context: 8,
        max_tokens: 64,
        batch: 64,
    };
    let kv = PagedKv {
        blocks: 64 * 2,
        block: BLOCK,
        dtype: DType::F16,
        window_blocks: None,
    };
    let mut decoder = Decoder::load_paged(&gpu, &source, options, kv).unwrap();
    let blocks: Vec<Vec<u32>> = (0..64u32).map(|s| vec![2 * s, 2 * s + 1]).collect();
    let prompts: Vec<Vec<u32>> = (0..64).map(|s| prompt(s, 3, tiny.vocab)).collect();
    let prefill: Vec<SeqStep<'_>> = (0..64)
        .map(|s| SeqStep {
            seq: s,
            pos: 0,
            feed: Feed::Tokens(&prompts[s][..1]),
            blocks: &blocks[s],
            window_blocks: &[],
            sample: true,
        })
        .collect();
    decoder.step(&prefill).unwrap();
    let mut counts = Vec::new();
    for batch in [1, 8, 64] {
        let step: Vec<SeqStep<'_>> = (0..batch)
            .map(|s| SeqStep {
                seq: s,
                pos: 1,
                feed: Feed::Next,
                blocks: &blocks[s],
                window_blocks: &[],
                sample: true,
            })
            .collect();
        // Each launch of this thread's step, alone (other tests share the handle).
        let (_, launches) = gpu.time_each(|| Ok(decoder.step(&step).unwrap())).unwrap();
        counts.push(launches.len());
    }
    println!("dispatches of a decode step at batch 1, 8, 64: {counts:?}");
    assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
}

#[test]
fn bad_steps_are_errors_that_say_what_is_wrong() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (_, source) = model();
    let options = DecoderOptions {
        context: 8,
        max_tokens: 4,
        batch: 2,
    };
    let kv = PagedKv {
        blocks: 4,
        block: BLOCK,
        dtype: DType::F16,
        window_blocks: None,
    };
    let mut paged = Decoder::load_paged(&gpu, &source, options, kv).unwrap();
    let toks = [1u32, 2, 3];
    let ok = |feed, blocks| SeqStep {
        seq: 0,
        pos: 0,
        feed,
        blocks,
        window_blocks: &[],
        sample: true,
    };
    let cases: Vec<(Vec<SeqStep<'_>>, &str)> = vec![
        (vec![], "at least one sequence"),
        (vec![ok(Feed::Tokens(&toks), &[])], "needs 1"),
        (vec![ok(Feed::Tokens(&toks), &[9])], "past the pool"),
        (vec![ok(Feed::Next, &[0])], "no earlier token"),
        (vec![ok(Feed::Tokens(&[500]), &[0])], "past the vocabulary"),
        (
            vec![ok(Feed::Tokens(&toks), &[0]), ok(Feed::Tokens(&toks), &[1])],
            "appears twice",
        ),
        (
            vec![
                ok(Feed::Tokens(&toks), &[0]),
                SeqStep {
                    seq: 1,
                    ..ok(Feed::Tokens(&toks), &[1])
                },
            ],
            "budget of 4",
        ),
        (
            vec![SeqStep {
                seq: 2,
                ..ok(Feed::Tokens(&toks), &[0])
            }],
            "holds 2",
        ),
        (
            vec![SeqStep {
                pos: 7,
                ..ok(Feed::Tokens(&toks), &[0, 1, 2])
            }],
            "past the context",
        ),
    ];
    for (step, want) in cases {
        let e = paged.step(&step).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    let e = paged.prefill(&toks).unwrap_err().to_string();
    assert!(e.contains("Decoder::step"), "{e}");
    let mut plain = Decoder::load(&gpu, &source, options).unwrap();
    let e = plain.step(&[ok(Feed::Tokens(&toks), &[0])]).unwrap_err();
    assert!(e.to_string().contains("load_paged"), "{e}");
}
