//! A paged KV cache: each layer's keys and values in one pool of fixed-size blocks that every
//! sequence shares, a block table per sequence (which block holds its positions `i·B .. (i+1)·B`),
//! and attention of a whole step's rows (many sequences, each at its own length, decode rows and
//! prompt chunks alike) over it in one dispatch.
//!
//! Layouts: a pool is `[blocks, n_kv_heads, B, head_dim]` in f16 (the default, as llama.cpp's) or
//! f32; the block tables one u32 tensor `[sequences, max_blocks]`; a step's rows `[rows, 4]` u32,
//! row r = (token slot, sequence, position, 0); q and the output `[rows, n_heads, head_dim]`.

mod blocks;

pub use blocks::{BlockAllocator, blocks_for};

use pertoken_gpu::{DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{ATTENTION_PAGED, ATTENTION_PAGED_COMBINE, ATTENTION_PAGED_SERIAL};

use crate::{AttentionOptions, MAX_HEAD_DIM};

/// Positions per block unless a caller asks otherwise (vLLM's default).
pub const DEFAULT_BLOCK: usize = 16;

/// Keys one split of the paged kernel takes at least (fewer splits are not worth their merge).
const MIN_KEYS_PER_SPLIT: usize = 256;
/// Most splits of one row.
const MAX_SPLITS: usize = 32;

/// One layer's pool of KV blocks.
#[derive(Debug)]
pub struct KvPool {
    k: Tensor,
    v: Tensor,
    blocks: usize,
    n_kv_heads: usize,
    block: usize,
    head_dim: usize,
}

impl KvPool {
    /// A pool of `blocks` blocks of `block` positions of `n_kv_heads` heads of `head_dim`, in
    /// `dtype` (f16 or f32; f16 needs an even `head_dim`). Each of K and V is bound whole, so it
    /// must fit the adapter's storage-binding limit.
    pub fn new(
        gpu: &Gpu,
        blocks: usize,
        (n_kv_heads, head_dim): (usize, usize),
        block: usize,
        dtype: DType,
    ) -> Result<KvPool> {
        let shape = vec![blocks, n_kv_heads, block, head_dim];
        let bad = |reason: String| Error::InvalidShape {
            op: "KvPool::new",
            shape: shape.clone(),
            reason,
        };
        match dtype {
            DType::F32 => {}
            DType::F16 if head_dim.is_multiple_of(2) => {}
            DType::F16 => return Err(bad("an f16 pool needs an even head_dim".into())),
            _ => return Err(bad(format!("the pool holds f16 or f32, not {dtype}"))),
        }
        if blocks == 0 || n_kv_heads == 0 || block == 0 || head_dim == 0 {
            return Err(bad("every dimension must be at least 1".into()));
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(bad(format!(
                "head_dim over the paged kernel's maximum of {MAX_HEAD_DIM}"
            )));
        }
        let bytes = Self::bytes_of(blocks, (n_kv_heads, head_dim), block, dtype);
        let limit = gpu.capabilities().max_storage_binding;
        if bytes > limit {
            return Err(Error::TooLarge {
                op: "KvPool::new",
                what: "one layer's K (or V) block pool, bound whole: use fewer KV blocks",
                bytes,
                limit,
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        Ok(KvPool {
            k: Tensor::zeros(gpu, &shape, dtype)?,
            v: Tensor::zeros(gpu, &shape, dtype)?,
            blocks,
            n_kv_heads,
            block,
            head_dim,
        })
    }

    /// Bytes of one of K or V of such a pool.
    pub fn bytes_of(
        blocks: usize,
        (n_kv_heads, head_dim): (usize, usize),
        block: usize,
        dtype: DType,
    ) -> u64 {
        [blocks, n_kv_heads, block, head_dim, dtype.block().1]
            .iter()
            .fold(1u64, |a, &x| a.saturating_mul(x as u64))
    }

    /// The keys, `[blocks, n_kv_heads, block, head_dim]`.
    pub fn keys(&self) -> &Tensor {
        &self.k
    }

    /// The values, as the keys.
    pub fn values(&self) -> &Tensor {
        &self.v
    }

    /// Blocks in the pool.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Positions per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// KV heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Elements per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// f16 or f32.
    pub fn dtype(&self) -> DType {
        self.k.dtype()
    }
}

/// A step's rows as the paged kernels read them: the row descriptions, the block tables, and
/// how many rows there are and keys the longest attends.
#[derive(Debug, Clone, Copy)]
pub struct PagedRows<'a> {
    /// `[≥ n, 4]` u32: (token slot, sequence, position, 0) of each row.
    pub rows: &'a Tensor,
    /// `[sequences, max_blocks]` u32.
    pub table: &'a Tensor,
    /// Rows of the step.
    pub n: usize,
    /// The largest position of any row, plus one.
    pub max_len: usize,
}

/// Scratch for the split-KV partial results of [`paged_attention_into`], grown on demand.
#[derive(Debug, Default)]
pub struct PagedScratch(Option<Tensor>);

/// Rows × heads from which [`paged_splits`] splits no more.
const SPLIT_BELOW: usize = 512;

impl PagedScratch {
    /// Scratch for every split [`paged_splits`] may choose on `gpu` with heads of `head_dim`,
    /// made now, so that steps allocate nothing (4 bytes on CPU adapters, which never split;
    /// 32 · 512 partial heads on GPUs: 17 MB at head_dim 256).
    pub fn for_adapter(gpu: &Gpu, head_dim: usize) -> Result<PagedScratch> {
        let len = Self::bytes_for(gpu, head_dim) as usize / 4;
        Ok(PagedScratch(Some(Tensor::zeros(gpu, &[len], DType::F32)?)))
    }

    /// Bytes [`PagedScratch::for_adapter`] takes.
    pub fn bytes_for(gpu: &Gpu, head_dim: usize) -> u64 {
        if gpu.capabilities().cpu {
            4
        } else {
            (4 * MAX_SPLITS * SPLIT_BELOW * (head_dim + 2)) as u64
        }
    }
}

/// How many splits of how many keys each: more splits where rows are few and long, so that a
/// GPU has enough workgroups; one on CPU adapters or where the rows already fill the device.
pub fn paged_splits(cpu: bool, rows_x_heads: usize, keys: usize) -> (usize, usize) {
    let splits = if cpu || rows_x_heads >= SPLIT_BELOW {
        1
    } else {
        (keys / MIN_KEYS_PER_SPLIT).clamp(1, MAX_SPLITS)
    };
    (splits, keys.div_ceil(splits).max(1))
}

/// Attention of each of the step's rows over its own sequence's keys in `pool`: `q` and `out`
/// `[≥ n, n_heads, head_dim]` f32; causal (a row at position P sees keys ≤ P), within
/// `options.window`, at `options.scale` (default 1/√head_dim). One dispatch, plus one merge pass
/// where the keys are split.
pub fn paged_attention_into(
    gpu: &Gpu,
    q: &Tensor,
    pool: &KvPool,
    step: PagedRows<'_>,
    out: &Tensor,
    options: AttentionOptions,
    scratch: &mut PagedScratch,
) -> Result<()> {
    paged_attention_with(
        gpu,
        (q, pool, step, out),
        options,
        scratch,
        PagedKernel::default(),
    )
}

/// How [`paged_attention_with`] runs: each field `None` leaves the choice to the adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagedKernel {
    /// Cut each row's keys into this many ranges (at least 1), else as [`paged_splits`]
    /// chooses.
    pub splits: Option<usize>,
    /// One invocation per (row, head) walking its keys alone (`true`; CPU adapters' default,
    /// where a workgroup's barriers cost more than its keys), or a workgroup per (row, head)
    /// sharing each tile of keys (`false`; GPUs' default).
    pub serial: Option<bool>,
}

/// [`paged_attention_into`] with the kernel's choices of `kernel`.
pub fn paged_attention_with(
    gpu: &Gpu,
    (q, pool, step, out): (&Tensor, &KvPool, PagedRows<'_>, &Tensor),
    options: AttentionOptions,
    scratch: &mut PagedScratch,
    kernel: PagedKernel,
) -> Result<()> {
    let splits = kernel.splits;
    const OP: &str = "paged_attention";
    let d = pool.head_dim;
    let n_heads = match q.shape() {
        [_, h, qd] if *qd == d => *h,
        _ => {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: q.shape().to_vec(),
                rhs: pool.k.shape().to_vec(),
                expected: "q [rows, n_heads, head_dim] with the pool's head_dim".into(),
            });
        }
    };
    if n_heads == 0 || !n_heads.is_multiple_of(pool.n_kv_heads) {
        return Err(Error::InvalidShape {
            op: OP,
            shape: q.shape().to_vec(),
            reason: format!(
                "{n_heads} query heads are not a multiple of the pool's {} KV heads",
                pool.n_kv_heads
            ),
        });
    }
    let n = step.n;
    let need = |t: &Tensor, len: usize, dtype: DType, what: &str| -> Result<()> {
        if t.dtype() != dtype || t.len() < len {
            return Err(Error::InvalidShape {
                op: OP,
                shape: t.shape().to_vec(),
                reason: format!("{what} must be {dtype} with at least {len} elements"),
            });
        }
        Ok(())
    };
    need(q, n * n_heads * d, DType::F32, "q")?;
    need(out, n * n_heads * d, DType::F32, "out")?;
    need(step.rows, n * 4, DType::U32, "the rows")?;
    let [_, max_blocks] = step.table.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: step.table.shape().to_vec(),
            reason: "the block table must be [sequences, max_blocks]".into(),
        });
    };
    need(step.table, 1, DType::U32, "the block table")?;
    if n == 0 {
        return Ok(());
    }
    if step.max_len == 0 || step.max_len > max_blocks * pool.block {
        return Err(Error::InvalidShape {
            op: OP,
            shape: step.table.shape().to_vec(),
            reason: format!(
                "a row at position {} is past what {max_blocks} blocks of {} hold",
                step.max_len.saturating_sub(1),
                pool.block
            ),
        });
    }
    let window = options.window.unwrap_or(0) as usize;
    let keys = if window > 0 {
        step.max_len.min(window)
    } else {
        step.max_len
    };
    let caps = gpu.capabilities();
    let (splits, per_split) = match splits {
        Some(z) => (z.clamp(1, keys), keys.div_ceil(z.clamp(1, keys))),
        None => paged_splits(caps.cpu, n * n_heads, keys),
    };
    let scale = options.scale.unwrap_or(1.0 / (d as f32).sqrt());
    if !scale.is_finite() {
        return Err(Error::InvalidOption {
            name: "attention scale",
            value: scale.to_string(),
            reason: "must be finite".into(),
        });
    }
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let params: [u32; 12] = [
        u(n),
        u(n_heads),
        u(pool.n_kv_heads),
        u(d),
        u(max_blocks),
        u(splits),
        u(per_split),
        u(window),
        scale.to_bits(),
        0,
        0,
        0,
    ];
    let part_len = if splits > 1 {
        splits * n * n_heads * (d + 2)
    } else {
        1
    };
    if scratch.0.as_ref().is_none_or(|t| t.len() < part_len) {
        scratch.0 = Some(Tensor::zeros(gpu, &[part_len], DType::F32)?);
    }
    let part = scratch.0.as_ref().expect("made above");
    let f16 = f64::from(u8::from(pool.dtype() == DType::F16));
    let constants = [("F16", f16), ("BLOCK", pool.block as f64)];
    let serial = kernel.serial.unwrap_or(caps.cpu);
    let (shader, workgroups) = if serial {
        (
            &ATTENTION_PAGED_SERIAL,
            [u((n * n_heads).div_ceil(64)), u(splits), 1],
        )
    } else {
        (&ATTENTION_PAGED, [u(n_heads), u(n), u(splits)])
    };
    gpu.launch(&Launch {
        op: OP,
        shader,
        constants: &constants,
        bindings: &[
            q.into(),
            (&pool.k).into(),
            (&pool.v).into(),
            step.table.into(),
            step.rows.into(),
            out.into(),
            part.into(),
        ],
        params: bytemuck::cast_slice(&params),
        workgroups,
    })?;
    if splits > 1 {
        gpu.launch(&Launch {
            op: OP,
            shader: &ATTENTION_PAGED_COMBINE,
            constants: &[],
            bindings: &[part.into(), out.into()],
            params: bytemuck::cast_slice(&params),
            workgroups: [u(n_heads), u(n), 1],
        })?;
    }
    Ok(())
}
