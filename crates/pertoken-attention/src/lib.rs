//! Attention on the GPU: `out = softmax(q·kᵀ·scale + mask)·v`.
//!
//! [`attention`] runs the fused flash kernel: K and V are walked in tiles staged in workgroup
//! memory with an online softmax, so the `q_len × kv_len` scores never reach device memory;
//! causal attention skips the tiles no query of a workgroup may see; grouped-query attention maps
//! query heads to KV heads inside the kernel, with no copy. q, k and v are f32 or f16 (all the
//! same), accumulation is f32, the output is f32. [`Kernel::Naive`] materializes the scores and is
//! kept as the bench baseline (f32 only).
//!
//! Where the adapter has subgroups of at least [`TEAM`] invocations and the head dimension is a
//! multiple of 8 up to [`TEAM_MAX_HEAD_DIM`], [`Kernel::Flash`] runs the team kernel instead, for
//! prefill and decode alike: teams of invocations split each K/V row (contiguous reads), read
//! every key once for up to [`TEAM_MAX_ROWS`] query rows (the heads of a GQA group, or
//! consecutive positions), and sum scores with subgroup shuffles; [`team_plan`] divides the work
//! (splitting the keys of a single query between teams and workgroups, split-KV, for decode).
//! Elsewhere the tiled flash kernel runs. Both hold a head in registers, up to [`MAX_HEAD_DIM`]
//! (256) elements: head dimensions over [`NARROW_HEAD_DIM`] (128) run wide variants of them,
//! whose arrays are twice as long, so the common sizes keep the small ones.
//!
//! Known limit: Mesa's llvmpipe (lavapipe) stops any shader loop after 65535 iterations in one
//! invocation, so on that adapter the flash kernel is wrong beyond about 1000 keys at head_dim 128
//! (and the naive one beyond 65535 / head_dim keys). `pertoken bench` verifies every result and
//! reports such runs as failures; the split-KV kernel, which bounds the keys per invocation, is
//! the fix.
//!
//! Layouts (row-major): `q: [n_heads, q_len, head_dim]`, `k, v: [n_kv_heads, kv_len, head_dim]`,
//! output `[n_heads, q_len, head_dim]`. With `causal`, query `i` attends keys
//! `j ≤ i + (kv_len − q_len)`: the queries are the last `q_len` positions.

mod cache;
mod launch;
mod paged;
mod shape;
mod split;
mod team;
mod tune;

pub use cache::KvCache;
pub use launch::{FLASH_WG, Kernel, attention, attention_into, attention_with};
pub(crate) use launch::{Partials, flash, strided_groups};
pub use paged::{
    BlockAllocator, DEFAULT_BLOCK, KvPool, PagedKernel, PagedRows, PagedScratch, blocks_for,
    paged_attention_into, paged_attention_with, paged_splits,
};
pub(crate) use shape::check_out;
pub use shape::{AttentionOptions, AttentionShape, MAX_HEAD_DIM, NARROW_HEAD_DIM, check};
pub use split::{KEYS_PER_SPLIT, Split, plan};
pub use team::{
    TEAM, TEAM_MAX_HEAD_DIM, TEAM_MAX_ROWS, TEAM_WIDE_MAX_ROWS, TeamKnobs, TeamPlan,
    team_candidates, team_kernel_applies, team_plan, team_plan_with,
};
pub use tune::{AttentionTuner, CACHE_FILE, CACHE_VERSION};

pub(crate) const OP: &str = "attention";
