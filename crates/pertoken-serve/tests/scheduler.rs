//! The scheduler with a stand-in engine that keeps its "KV cache" in a paged pool exactly as the
//! decoder does (each position's token at its block and offset) and answers with a hash of the
//! sequence it reads back through the block table: a block shared by two live sequences, freed
//! too early or missing, or a preempted sequence recomputed wrongly, changes the answer.

use pertoken_model::{Feed, SeqStep};
use pertoken_serve::{
    Arrival, Engine, Lengths, Request, Scheduler, SchedulerOptions, Workload, serve,
};

const VOCAB: u32 = 97;

/// The next token of a sequence: a hash of all of it.
fn next_of(tokens: &[u32]) -> u32 {
    let mut h: u64 = 1469598103934665603;
    for &t in tokens {
        h = (h ^ u64::from(t)).wrapping_mul(1099511628211);
    }
    (h % u64::from(VOCAB)) as u32
}

struct Fake {
    block: usize,
    pool: Vec<Option<u32>>,
    /// The token each slot's last sample chose.
    last: Vec<u32>,
    steps: usize,
}

impl Engine for Fake {
    fn step(&mut self, seqs: &[SeqStep<'_>]) -> pertoken_model::Result<Vec<u32>> {
        self.steps += 1;
        let mut out = Vec::new();
        // Every row's write first, as the decoder's RoPE pass, then every read.
        for s in seqs {
            let toks: Vec<u32> = match s.feed {
                Feed::Tokens(t) => t.to_vec(),
                Feed::Next => vec![self.last[s.seq]],
            };
            for (i, &t) in toks.iter().enumerate() {
                let p = s.pos + i;
                self.pool[s.blocks[p / self.block] as usize * self.block + p % self.block] =
                    Some(t);
            }
        }
        for s in seqs {
            let n = s.pos + s.rows();
            if !s.sample {
                continue;
            }
            let seen: Vec<u32> = (0..n)
                .map(|p| {
                    self.pool[s.blocks[p / self.block] as usize * self.block + p % self.block]
                        .expect("a position read before it was written")
                })
                .collect();
            let t = next_of(&seen);
            self.last[s.seq] = t;
            out.push(t);
        }
        Ok(out)
    }
}

fn expected(r: &Request) -> Vec<u32> {
    let mut seq = r.prompt.clone();
    for _ in 0..r.max_new {
        seq.push(next_of(&seq));
    }
    seq[r.prompt.len()..].to_vec()
}

fn run(options: SchedulerOptions, requests: &[Request]) -> (pertoken_serve::ServeRun, usize) {
    let mut fake = Fake {
        block: options.block,
        pool: vec![None; options.blocks * options.block],
        last: vec![0; options.slots],
        steps: 0,
    };
    let run = serve(&mut fake, requests, options, None, &mut |_, _| {}).unwrap();
    for (r, rec) in requests.iter().zip(&run.requests) {
        assert_eq!(rec.id, r.id);
        assert_eq!(rec.output, expected(r), "request {}", r.id);
        assert_eq!(rec.token_times.len(), r.max_new);
    }
    (run, fake.steps)
}

fn workload(n: usize, seed: u64) -> Vec<Request> {
    Workload {
        isl: Lengths::Uniform { lo: 1, hi: 40 },
        osl: Lengths::Uniform { lo: 1, hi: 30 },
        requests: n,
        arrival: Arrival::Concurrency(8),
        seed,
    }
    .make(VOCAB)
    .unwrap()
}

#[test]
fn every_request_gets_its_own_tokens_with_room_to_spare() {
    let options = SchedulerOptions {
        slots: 8,
        token_budget: 32,
        block: 4,
        blocks: 200,
        context: 80,
        window: None,
    };
    let (run, _) = run(options, &workload(60, 1));
    assert_eq!(run.preemptions, 0);
    assert!(
        run.steps.iter().any(|s| s.running == 8),
        "the slots fill up"
    );
    assert!(
        run.steps
            .iter()
            .any(|s| s.decode_rows > 0 && s.rows > s.decode_rows),
        "prompt chunks share steps with decode rows"
    );
    assert!(run.steps.iter().all(|s| s.rows <= 32));
}

#[test]
fn a_tight_pool_preempts_and_recomputes_without_a_wrong_token() {
    let options = SchedulerOptions {
        slots: 8,
        token_budget: 16,
        block: 4,
        blocks: 24,
        context: 80,
        window: None,
    };
    let (run, _) = run(options, &workload(60, 2));
    assert!(
        run.preemptions > 0,
        "24 blocks of 4 cannot hold 8 long sequences"
    );
    assert!(run.steps.iter().all(|s| s.blocks_in_use <= 24));
}

#[test]
fn freed_blocks_are_reused_and_all_come_back() {
    let options = SchedulerOptions {
        slots: 2,
        token_budget: 8,
        block: 2,
        blocks: 40,
        context: 80,
        window: None,
    };
    let requests = workload(30, 3);
    let mut s = Scheduler::new(options).unwrap();
    let mut fake = Fake {
        block: 2,
        pool: vec![None; 80],
        last: vec![0; 2],
        steps: 0,
    };
    for r in &requests {
        s.add(r).unwrap();
    }
    let mut peak = 0;
    while !s.is_done() {
        assert!(!s.plan().is_empty());
        let t = fake.step(&s.steps()).unwrap();
        s.commit(&t).unwrap();
        peak = peak.max(s.blocks_in_use());
    }
    assert_eq!(s.blocks_in_use(), 0, "every block came back");
    // Two sequences of at most 70 positions never need more than 2 · 35 blocks, and 30
    // requests needed far more in all: blocks were reused.
    let total: usize = requests
        .iter()
        .map(|r| (r.prompt.len() + r.max_new).div_ceil(2))
        .sum();
    assert!(peak <= 40 && total > 40, "peak {peak}, total {total}");
    for r in &requests {
        assert_eq!(s.output_of(r.id).unwrap(), expected(r));
    }
}

#[test]
fn requests_that_can_never_run_are_refused_before_anything_runs() {
    let options = SchedulerOptions {
        slots: 2,
        token_budget: 8,
        block: 4,
        blocks: 3,
        context: 64,
        window: None,
    };
    let mut s = Scheduler::new(options).unwrap();
    let long = Request {
        id: 0,
        prompt: vec![1; 60],
        max_new: 10,
        arrival: 0.0,
    };
    let e = s.add(&long).unwrap_err().to_string();
    assert!(e.contains("more than the context of 64"), "{e}");
    let big = Request {
        prompt: vec![1; 10],
        max_new: 5,
        ..long.clone()
    };
    let e = s.add(&big).unwrap_err().to_string();
    assert!(e.contains("not even one sequence fits"), "{e}");
    let mut fake = Fake {
        block: 4,
        pool: vec![None; 12],
        last: vec![0; 2],
        steps: 0,
    };
    let ok = Request {
        prompt: vec![1; 3],
        max_new: 2,
        ..long.clone()
    };
    let e = serve(&mut fake, &[ok, big], options, None, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("not even one sequence fits"), "{e}");
    assert_eq!(fake.steps, 0, "nothing ran");
    assert!(
        Scheduler::new(SchedulerOptions {
            slots: 0,
            ..options
        })
        .is_err()
    );
}
