//! The decoder's kernels over a whole step's rows, many sequences at once: RoPE with the write
//! into the paged KV cache, and greedy argmax of each sampled row into its slot (the embedding
//! gather of each row's token is `embed_rows`). One dispatch each, however many sequences share the step.

use pertoken_attention::{KvPool, PagedRows};
use pertoken_cost::RopePairing;
use pertoken_gpu::{DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{MODEL_ARGMAX_ROWS, MODEL_ROPE_PAGED};

use super::{Columns, HeadRope, need_f32, u};

/// Checks that `t` is u32 with at least `len` elements.
fn need_u32(op: &'static str, t: &Tensor, len: usize, what: &str) -> Result<()> {
    if t.dtype() != DType::U32 || t.len() < len {
        return Err(Error::InvalidShape {
            op,
            shape: t.shape().to_vec(),
            reason: format!("{what} must be u32 with at least {len} elements"),
        });
    }
    Ok(())
}

/// Turns the q and k heads of each of the step's rows (row r of the projections) by RoPE at the
/// row's position (RMS-norming each head first where `rope` says), writes q tokens-first into
/// `q_out: [rows, n_heads, head_dim]`, and k (turned) and v (as they are) into `pool` at the
/// row's position through its sequence's block table.
pub fn rope_paged(
    gpu: &Gpu,
    [q, k, v]: [Columns<'_>; 3],
    step: PagedRows<'_>,
    rope: &HeadRope<'_>,
    q_out: &Tensor,
    pool: &KvPool,
) -> Result<()> {
    const OP: &str = "rope_paged";
    let (n, d, n_kv) = (step.n, pool.head_dim(), pool.n_kv_heads());
    let [_, n_heads, qd] = q_out.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: q_out.shape().to_vec(),
            reason: "q_out must be [rows, n_heads, head_dim]".into(),
        });
    };
    if qd != d {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: q_out.shape().to_vec(),
            rhs: pool.keys().shape().to_vec(),
            expected: "q_out's head_dim equal to the pool's".into(),
        });
    }
    let rot = rope.rotary(OP, d)?;
    let (qn, kn, eps) = rope.norms(OP, d)?;
    q.check(OP, n, n_heads * d)?;
    k.check(OP, n, n_kv * d)?;
    v.check(OP, n, n_kv * d)?;
    need_f32(OP, q_out, n * n_heads * d, "q_out")?;
    need_u32(OP, step.rows, 4 * n, "the rows")?;
    let [_, max_blocks] = step.table.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: step.table.shape().to_vec(),
            reason: "the block table must be [sequences, max_blocks]".into(),
        });
    };
    need_u32(OP, step.table, 1, "the block table")?;
    if n == 0 {
        return Ok(());
    }
    let params: [u32; 16] = [
        u(n),
        u(d),
        u(n_heads),
        u(n_kv),
        u(q.stride()),
        u(k.stride()),
        u(v.stride()),
        u(q.col),
        u(k.col),
        u(v.col),
        u(max_blocks),
        u(rot),
        eps.to_bits(),
        rope.factor.to_bits(),
        0,
        0,
    ];
    let flag = |b: bool| f64::from(u8::from(b));
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_ROPE_PAGED,
        constants: &[
            (
                "INTERLEAVED",
                flag(rope.pairing == RopePairing::Interleaved),
            ),
            ("QK_NORM", flag(rope.qk_norm.is_some())),
            ("F16", flag(pool.dtype() == DType::F16)),
            ("BLOCK", pool.block() as f64),
            ("WG", if gpu.capabilities().cpu { 16.0 } else { 64.0 }),
        ],
        bindings: &[
            q.tensor.into(),
            k.tensor.into(),
            v.tensor.into(),
            rope.freq.into(),
            step.rows.into(),
            step.table.into(),
            q_out.into(),
            pool.keys().into(),
            pool.values().into(),
            qn.into(),
            kn.into(),
        ],
        params: bytemuck::cast_slice(&params),
        workgroups: [u(n_heads + 2 * n_kv), u(n), 1],
    })
}

/// Greedy argmax of `logits` rows `row0 .. row0 + n` (`logits: [rows, vocab]`), one dispatch:
/// row `row0 + i`'s token goes to `tokens[picked[i]]` and then replaces `picked[i]`, so that the
/// host reads the step's tokens from `picked` alone.
pub fn argmax_rows(
    gpu: &Gpu,
    logits: &Tensor,
    (row0, n): (usize, usize),
    tokens: &Tensor,
    picked: &Tensor,
) -> Result<()> {
    const OP: &str = "argmax_rows";
    let [rows, vocab] = logits.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: logits.shape().to_vec(),
            reason: "logits must be [rows, vocab]".into(),
        });
    };
    if row0 + n > rows {
        return Err(Error::InvalidShape {
            op: OP,
            shape: logits.shape().to_vec(),
            reason: format!("rows {row0}..{} are past the logits' {rows}", row0 + n),
        });
    }
    need_f32(OP, logits, rows * vocab, "logits")?;
    need_u32(OP, tokens, 1, "tokens")?;
    need_u32(OP, picked, n, "picked")?;
    let params: [u32; 4] = [u(row0), u(vocab), 0, 0];
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_ARGMAX_ROWS,
        constants: &[],
        bindings: &[logits.into(), tokens.into(), picked.into()],
        params: bytemuck::cast_slice(&params),
        workgroups: [u(n), 1, 1],
    })
}
