//! Continuous batching: which sequences run in the next step, with which rows, in which blocks.
//! No GPU: a step's plan is handed to an engine, and its tokens come back through
//! [`Scheduler::commit`].

use std::collections::VecDeque;

use pertoken_attention::{BlockAllocator, blocks_for};
use pertoken_model::{Feed, SeqStep};

use crate::{Request, Result, ServeError};

/// The scheduler's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Sequences running at once (the decoder's batch of slots).
    pub slots: usize,
    /// Rows of one step: decode rows plus prompt chunks (the decoder's max_tokens).
    pub token_budget: usize,
    /// Positions per KV block.
    pub block: usize,
    /// KV blocks in the pool.
    pub blocks: usize,
    /// Positions one sequence may hold (the decoder's context).
    pub context: usize,
    /// A sliding-window pool ([`pertoken_model::PagedKv::window_blocks`]): the window in
    /// positions and the pool's blocks. Each sequence holds a second list of blocks there, and
    /// the blocks that slide out of its window are freed as it moves on.
    pub window: Option<(usize, usize)>,
}

/// A sequence that has been admitted at least once.
#[derive(Debug, Clone)]
struct Seq {
    /// The request's index in [`Scheduler::add`] order.
    req: usize,
    /// Its slot while running.
    slot: usize,
    /// Prompt, then every token chosen so far.
    tokens: Vec<u32>,
    /// Prompt tokens.
    prompt: usize,
    /// Tokens it ends at (prompt + output length).
    target: usize,
    /// Positions in the cache.
    fed: usize,
    /// Whether the token at position `fed` is in the decoder's token buffer (chosen by the
    /// step before): then it decodes with [`Feed::Next`].
    primed: bool,
    blocks: Vec<u32>,
    /// Its blocks in the sliding-window pool, by position as `blocks`; [`FREED`] where a block
    /// has slid out of the window and gone back.
    window_blocks: Vec<u32>,
    /// When it was (last) admitted: the youngest is preempted first.
    admitted: u64,
}

/// A sliding-window block that went back to the pool.
const FREED: u32 = u32::MAX;

/// What one sequence does in a planned step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// The request.
    pub req: usize,
    /// Rows it runs (1 for a decode row).
    pub rows: usize,
    /// Whether it decodes (else a prompt chunk, or a recompute's).
    pub decode: bool,
    /// Whether its last row chooses a token.
    pub sample: bool,
}

/// What happened to a request in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// It chose its `n`-th output token (1 is the first).
    Token {
        /// The request.
        req: usize,
        /// Output tokens so far.
        n: usize,
    },
    /// It has all its output tokens; its blocks are free.
    Finished(usize),
}

/// Continuous batching over a pool of KV blocks and a set of slots.
#[derive(Debug)]
pub struct Scheduler {
    options: SchedulerOptions,
    alloc: BlockAllocator,
    /// The sliding-window pool's free blocks.
    window_alloc: Option<BlockAllocator>,
    /// Arrived requests not running, oldest first; preempted ones go back to the front.
    waiting: VecDeque<Seq>,
    /// Running sequences, in admission order (the youngest last).
    running: Vec<Seq>,
    free_slots: Vec<usize>,
    /// The step planned and not yet committed: indices into `running`.
    planned: Vec<(usize, Planned)>,
    admissions: u64,
    preemptions: usize,
    finished: Vec<Seq>,
}

impl Scheduler {
    /// A scheduler with every block and slot free. Options that cannot run anything are errors.
    pub fn new(options: SchedulerOptions) -> Result<Scheduler> {
        let o = options;
        if o.slots == 0 || o.token_budget == 0 || o.block == 0 || o.blocks == 0 || o.context == 0 {
            return Err(ServeError::Invalid(format!(
                "scheduler options {o:?}: slots, token budget, block, blocks and context must \
                 each be at least 1"
            )));
        }
        let pool = |n| BlockAllocator::new(n).map_err(|e| ServeError::Invalid(e.to_string()));
        let window_alloc = match o.window {
            Some((w, n)) if w == 0 || n == 0 => {
                return Err(ServeError::Invalid(format!(
                    "a sliding window of {w} positions in {n} blocks: both at least 1"
                )));
            }
            Some((_, n)) => Some(pool(n)?),
            None => None,
        };
        Ok(Scheduler {
            options,
            alloc: pool(o.blocks)?,
            window_alloc,
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_slots: (0..o.slots).rev().collect(),
            planned: Vec::new(),
            admissions: 0,
            preemptions: 0,
            finished: Vec::new(),
        })
    }

    /// Checks that `request` can ever run (alone, it fits the context and the pool), and
    /// queues it. Its index is the order of the calls.
    pub fn add(&mut self, request: &Request) -> Result<()> {
        let total = request.prompt.len() + request.max_new;
        let o = self.options;
        if request.prompt.is_empty() || request.max_new == 0 {
            return Err(ServeError::Invalid(format!(
                "request {}: a prompt and an output of at least one token each",
                request.id
            )));
        }
        if total > o.context {
            return Err(ServeError::Invalid(format!(
                "request {}: {} prompt + {} output tokens are more than the context of {}; use \
                 a longer --context or shorter --isl/--osl",
                request.id,
                request.prompt.len(),
                request.max_new,
                o.context
            )));
        }
        if blocks_for(total, o.block) > o.blocks {
            return Err(ServeError::Invalid(format!(
                "request {}: {total} positions need {} KV blocks of {}, and the pool holds {}: \
                 not even one sequence fits; use more KV memory or shorter requests",
                request.id,
                blocks_for(total, o.block),
                o.block,
                o.blocks
            )));
        }
        if let Some((w, n)) = o.window {
            // One sequence at its widest: the window before a decode row, plus that row.
            let need = blocks_for(total, o.block).min(blocks_for(w, o.block) + 1);
            if need > n {
                return Err(ServeError::Invalid(format!(
                    "request {}: its sliding-window layers need {need} blocks of {} at once, and \
                     their pool holds {n}: not even one sequence fits; give them more blocks",
                    request.id, o.block
                )));
            }
        }
        let req = self.waiting.len() + self.running.len() + self.finished.len();
        self.waiting.push_back(Seq {
            req,
            slot: usize::MAX,
            tokens: request.prompt.clone(),
            prompt: request.prompt.len(),
            target: total,
            fed: 0,
            primed: false,
            blocks: Vec::new(),
            window_blocks: Vec::new(),
            admitted: 0,
        });
        Ok(())
    }

    /// Whether every request added has finished.
    pub fn is_done(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Sequences running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Requests waiting (arrived or preempted, not running).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// KV blocks handed out now.
    pub fn blocks_in_use(&self) -> usize {
        self.alloc.in_use()
    }

    /// Sliding-window blocks handed out now (0 without a window pool).
    pub fn window_blocks_in_use(&self) -> usize {
        self.window_alloc.as_ref().map_or(0, BlockAllocator::in_use)
    }

    /// Preemptions so far.
    pub fn preemptions(&self) -> usize {
        self.preemptions
    }

    /// Every token of finished request `req` (prompt, then output), if it has finished.
    pub fn output_of(&self, req: usize) -> Option<&[u32]> {
        self.finished
            .iter()
            .find(|s| s.req == req)
            .map(|s| &s.tokens[s.prompt..])
    }

    /// Plans the next step: a decode row for every running sequence that has a token to
    /// continue (oldest first; where one needs a new block and none is free, the youngest
    /// running sequence is preempted), then prompt chunks of running sequences, then admissions
    /// of waiting requests in order, while the token budget, the free blocks and the slots
    /// last. Where running sequences hold every block and none can move, the youngest is
    /// preempted until one can. Empty only when nothing is running or waiting.
    pub fn plan(&mut self) -> Vec<Planned> {
        loop {
            self.plan_once();
            if !self.planned.is_empty() || self.running.is_empty() {
                return self.planned.iter().map(|p| p.1).collect();
            }
            let youngest = self.running.len() - 1;
            self.preempt(youngest);
        }
    }

    fn plan_once(&mut self) {
        self.planned.clear();
        let o = self.options;
        let mut budget = o.token_budget;
        // Decode rows, oldest first.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            if !self.running[i].primed {
                i += 1;
                continue;
            }
            if !self.grow(i, 1) {
                // Nothing free: preempt the youngest (which may be this one).
                let victim = self.running.len() - 1;
                self.preempt(victim);
                if victim == i {
                    break;
                }
                continue;
            }
            let s = &self.running[i];
            self.planned.push((
                i,
                Planned {
                    req: s.req,
                    rows: 1,
                    decode: true,
                    sample: true,
                },
            ));
            budget -= 1;
            i += 1;
        }
        // Prompt chunks of sequences already running, oldest first.
        for i in 0..self.running.len() {
            if budget == 0 {
                break;
            }
            if self.running[i].primed {
                continue;
            }
            if let Some(p) = self.chunk(i, budget) {
                budget -= p.rows;
                self.planned.push((i, p));
            }
        }
        // Admissions, in arrival order, while a slot, budget and a block are free.
        while budget > 0 && !self.free_slots.is_empty() {
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            s.slot = self.free_slots.pop().expect("checked");
            self.admissions += 1;
            s.admitted = self.admissions;
            self.running.push(s);
            let i = self.running.len() - 1;
            match self.chunk(i, budget) {
                Some(p) => {
                    budget -= p.rows;
                    self.planned.push((i, p));
                }
                None => {
                    // No block for even one row: it waits at the front.
                    let s = self.running.pop().expect("pushed");
                    self.free_slots.push(s.slot);
                    self.waiting.push_front(s);
                    break;
                }
            }
        }
    }

    /// The planned step as the decoder takes it.
    pub fn steps(&self) -> Vec<SeqStep<'_>> {
        self.planned
            .iter()
            .map(|&(i, p)| {
                let s = &self.running[i];
                SeqStep {
                    seq: s.slot,
                    pos: s.fed,
                    feed: if p.decode {
                        Feed::Next
                    } else {
                        Feed::Tokens(&s.tokens[s.fed..s.fed + p.rows])
                    },
                    blocks: &s.blocks,
                    window_blocks: &s.window_blocks,
                    sample: p.sample,
                }
            })
            .collect()
    }

    /// Takes the planned step's sampled tokens (in plan order) and moves every sequence on;
    /// finished ones free their blocks and slots at once.
    pub fn commit(&mut self, tokens: &[u32]) -> Result<Vec<Event>> {
        let sampled = self.planned.iter().filter(|p| p.1.sample).count();
        if tokens.len() != sampled {
            return Err(ServeError::Invalid(format!(
                "the step returned {} tokens for {sampled} sampled sequences",
                tokens.len()
            )));
        }
        let mut events = Vec::new();
        let mut next = tokens.iter();
        for &(i, p) in &self.planned {
            let s = &mut self.running[i];
            s.fed += p.rows;
            if p.sample {
                s.tokens.push(*next.next().expect("counted"));
                s.primed = true;
                events.push(Event::Token {
                    req: s.req,
                    n: s.tokens.len() - s.prompt,
                });
            }
        }
        self.planned.clear();
        for i in 0..self.running.len() {
            self.slide(i)?;
        }
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].tokens.len() >= self.running[i].target {
                let s = self.running.remove(i);
                self.release(&s)?;
                self.free_slots.push(s.slot);
                events.push(Event::Finished(s.req));
                self.finished.push(Seq {
                    blocks: Vec::new(),
                    window_blocks: Vec::new(),
                    ..s
                });
            } else {
                i += 1;
            }
        }
        Ok(events)
    }

    /// Gives running sequence `i` the blocks for `more` positions past `fed` (in both pools);
    /// false (and nothing taken) if too few are free.
    fn grow(&mut self, i: usize, more: usize) -> bool {
        let b = self.options.block;
        let s = &self.running[i];
        let logical = blocks_for(s.fed + more, b);
        let need = logical.saturating_sub(s.blocks.len());
        let need_w = logical.saturating_sub(s.window_blocks.len());
        let window_ok = self
            .window_alloc
            .as_ref()
            .is_none_or(|a| a.available() >= need_w);
        if self.alloc.available() < need || !window_ok {
            return false;
        }
        let got = self.alloc.allocate(need).expect("counted");
        self.running[i].blocks.extend(got);
        if let Some(a) = &mut self.window_alloc {
            let got = a.allocate(need_w).expect("counted");
            self.running[i].window_blocks.extend(got);
        }
        true
    }

    /// Frees sequence `i`'s sliding-window blocks that no later query can see: those wholly
    /// before position `fed + 1 − window` (its next query, at `fed`, sees from there).
    fn slide(&mut self, i: usize) -> Result<()> {
        let (Some((w, _)), Some(a)) = (self.options.window, &mut self.window_alloc) else {
            return Ok(());
        };
        let b = self.options.block;
        let s = &mut self.running[i];
        let first = (s.fed + 1).saturating_sub(w) / b;
        for id in s.window_blocks.iter_mut().take(first) {
            if *id != FREED {
                a.release(&[*id])
                    .map_err(|e| ServeError::Invalid(e.to_string()))?;
                *id = FREED;
            }
        }
        Ok(())
    }

    /// Gives every block of `s` back.
    fn release(&mut self, s: &Seq) -> Result<()> {
        self.alloc
            .release(&s.blocks)
            .map_err(|e| ServeError::Invalid(e.to_string()))?;
        if let Some(a) = &mut self.window_alloc {
            let held: Vec<u32> = s
                .window_blocks
                .iter()
                .copied()
                .filter(|&b| b != FREED)
                .collect();
            a.release(&held)
                .map_err(|e| ServeError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// The largest prompt chunk of running sequence `i` within `budget` rows and the free
    /// blocks, with its blocks taken; `None` if not one row fits.
    fn chunk(&mut self, i: usize, budget: usize) -> Option<Planned> {
        let b = self.options.block;
        let s = &self.running[i];
        let pending = s.tokens.len() - s.fed;
        let mut room = (s.blocks.len() + self.alloc.available()) * b - s.fed;
        if let Some(a) = &self.window_alloc {
            room = room.min((s.window_blocks.len() + a.available()) * b - s.fed);
        }
        let rows = pending.min(budget).min(room);
        if rows == 0 {
            return None;
        }
        let grown = self.grow(i, rows);
        debug_assert!(grown, "room counted the free blocks");
        let s = &self.running[i];
        Some(Planned {
            req: s.req,
            rows,
            decode: false,
            sample: s.fed + rows == s.tokens.len(),
        })
    }

    /// Frees running sequence `i`'s blocks and slot and puts it at the front of the queue, to
    /// run its prompt and the tokens it chose again (one sample at the end gives its next).
    fn preempt(&mut self, i: usize) {
        let mut s = self.running.remove(i);
        self.release(&s)
            .expect("a running sequence's blocks are handed out");
        s.blocks.clear();
        s.window_blocks.clear();
        self.free_slots.push(s.slot);
        s.slot = usize::MAX;
        s.fed = 0;
        s.primed = false;
        self.preemptions += 1;
        self.waiting.push_front(s);
    }
}
