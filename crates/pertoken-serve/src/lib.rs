//! Continuous batching over pertoken's decoder, and what a serving run measures.
//!
//! Requests arrive with a prompt and an output length ([`Workload`] makes seeded ones). The
//! [`Scheduler`] keeps as many sequences running as the KV blocks and the decoder's slots allow:
//! each step it gives every running sequence one decode row, spends the rest of the step's token
//! budget on prompt chunks (a new request's, or the rest of one already admitted), admits waiting
//! requests while blocks and budget last, and frees a finished sequence's blocks at once so that a
//! waiting request takes its place. When a running sequence needs a block and none is free, the
//! youngest sequence is preempted: its blocks are freed, and it waits again at the front of the
//! queue to be recomputed (its prompt and the tokens it had chosen run again as one prompt), so a
//! preemption costs time, never a wrong token; every one is counted.
//!
//! [`serve`] runs a workload through a [`pertoken_model::Decoder`] loaded with a paged cache and
//! returns a [`ServeRun`]: per request its arrival, first token and each later token's time, per
//! step its rows, sequences and blocks in use; [`ServeReport`] turns it into throughput, TTFT,
//! TPOT and inter-token latency percentiles, occupancy and preemptions.

mod error;
mod report;
mod run;
mod scheduler;
mod workload;

pub use error::{Result, ServeError};
pub use report::{Latency, ServeReport};
pub use run::{Engine, RequestRecord, ServeRun, StepRecord, serve};
pub use scheduler::{Event, Planned, Scheduler, SchedulerOptions};
pub use workload::{Arrival, Lengths, Request, Workload};
