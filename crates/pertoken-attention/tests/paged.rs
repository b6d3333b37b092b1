//! Attention over a paged KV cache: sequences of different lengths whose blocks are scattered
//! through a shared pool (in no order, interleaved with other sequences' blocks), decode rows and
//! a prompt chunk in one dispatch, against the f64 reference over each sequence's keys laid out
//! contiguously.

use pertoken_attention::{
    AttentionOptions, KvPool, PagedKernel, PagedRows, PagedScratch, paged_attention_with,
};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_reference::AttentionShape;
use pertoken_reference::random::uniform_f32;

mod common;
use common::{against_reference_windowed, per_key_tolerance};

const BLOCK: usize = 4;

/// Writes seeded random keys and values into the whole pool and returns what it holds
/// (rounded to f16 where the pool is f16), `[blocks, n_kv, BLOCK, d]` each.
fn fill(pool: &KvPool, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let n = pool.keys().len();
    let mut held = Vec::new();
    for (t, s) in [(pool.keys(), seed), (pool.values(), seed + 1)] {
        let v = uniform_f32(s, n);
        if pool.dtype() == DType::F16 {
            let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            t.write(&h).unwrap();
            held.push(h.iter().map(|x| x.to_f32()).collect());
        } else {
            t.write(&v).unwrap();
            held.push(v);
        }
    }
    let v = held.pop().unwrap();
    (held.pop().unwrap(), v)
}

/// Sequence s's first `len` keys (or values) from `pool_vals` through its blocks, as
/// `[n_kv, len, d]`.
fn gather(pool_vals: &[f32], blocks: &[u32], len: usize, (nkv, d): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0; nkv * len * d];
    for h in 0..nkv {
        for j in 0..len {
            let b = blocks[j / BLOCK] as usize;
            let src = ((b * nkv + h) * BLOCK + j % BLOCK) * d;
            out[(h * len + j) * d..][..d].copy_from_slice(&pool_vals[src..src + d]);
        }
    }
    out
}

/// One step over `lens.len()` sequences: sequence s has its keys 0..lens[s] in the pool, and the
/// step's rows are the positions `rows` names as (sequence, position).
fn check(gpu: &Gpu, dtype: DType, rows: &[(usize, usize)], window: Option<u32>, splits: usize) {
    for serial in [false, true] {
        check_kernel(gpu, dtype, rows, window, splits, serial);
    }
}

fn check_kernel(
    gpu: &Gpu,
    dtype: DType,
    rows: &[(usize, usize)],
    window: Option<u32>,
    splits: usize,
    serial: bool,
) {
    let (nh, nkv, d) = (4, 2, 64);
    let seqs = rows.iter().map(|r| r.0).max().unwrap() + 1;
    let max_blocks = 8;
    let total = seqs * max_blocks + 3;
    let pool = KvPool::new(gpu, total, (nkv, d), BLOCK, dtype).unwrap();
    let (kp, vp) = fill(&pool, 7 + splits as u64);
    // Block tables: a seeded shuffle of the whole pool, dealt out to the sequences in turn, so
    // each sequence's blocks are scattered and interleaved with the others'.
    let mut order: Vec<u32> = (0..total as u32).collect();
    let r = uniform_f32(99, total);
    order.sort_by(|&a, &b| r[a as usize].total_cmp(&r[b as usize]));
    let mut table = vec![u32::MAX; seqs * max_blocks];
    for (i, &b) in order.iter().take(seqs * max_blocks).enumerate() {
        table[(i % seqs) * max_blocks + i / seqs] = b;
    }
    let meta: Vec<u32> = rows
        .iter()
        .flat_map(|&(s, p)| [0, s as u32, p as u32, 0])
        .collect();
    let n = rows.len();
    let q_vals = uniform_f32(3, n * nh * d);
    let q = Tensor::from_slice(gpu, &q_vals, &[n, nh, d]).unwrap();
    let out = Tensor::from_slice(gpu, &vec![f32::NAN; n * nh * d], &[n, nh, d]).unwrap();
    let table_t = Tensor::from_slice(gpu, &table, &[seqs, max_blocks]).unwrap();
    let meta_t = Tensor::from_slice(gpu, &meta, &[n, 4]).unwrap();
    let step = PagedRows {
        rows: &meta_t,
        table: &table_t,
        n,
        max_len: rows.iter().map(|r| r.1 + 1).max().unwrap(),
    };
    let options = AttentionOptions {
        causal: true,
        scale: None,
        window,
    };
    let mut scratch = PagedScratch::default();
    let kernel = PagedKernel {
        splits: Some(splits),
        serial: Some(serial),
    };
    paged_attention_with(gpu, (&q, &pool, step, &out), options, &mut scratch, kernel).unwrap();
    let got = out.to_vec::<f32>().unwrap();
    for (i, &(s, p)) in rows.iter().enumerate() {
        let len = p + 1;
        let blocks = &table[s * max_blocks..(s + 1) * max_blocks];
        let k = gather(&kp, blocks, len, (nkv, d));
        let v = gather(&vp, blocks, len, (nkv, d));
        let qi = &q_vals[i * nh * d..(i + 1) * nh * d];
        let shape = AttentionShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: d,
            q_len: 1,
            kv_len: len,
            causal: true,
        };
        let tol = per_key_tolerance(len);
        let cmp = against_reference_windowed(
            &got[i * nh * d..(i + 1) * nh * d],
            (qi, &k, &v),
            shape,
            window.map(|w| w as usize),
            tol,
        );
        assert!(
            cmp.passed(),
            "{dtype} row {i} (sequence {s} at {p}), {splits} splits, serial {serial}: {cmp}"
        );
    }
}

/// Decode rows of five sequences of different lengths (one inside its first block, some ending
/// on a block edge), then a 6-row prompt chunk of a sixth sequence attending causally.
fn mixed_rows() -> Vec<(usize, usize)> {
    let mut rows = vec![(0, 0), (1, 3), (2, 4), (3, 17), (4, 31)];
    rows.extend((9..15).map(|p| (5, p)));
    rows
}

#[test]
fn paged_attention_over_scattered_blocks_matches_the_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    for dtype in [DType::F32, DType::F16] {
        check(&gpu, dtype, &mixed_rows(), None, 1);
    }
}

#[test]
fn split_keys_and_windows_match_the_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    check(&gpu, DType::F32, &mixed_rows(), None, 3);
    check(&gpu, DType::F16, &mixed_rows(), Some(5), 1);
    check(&gpu, DType::F32, &mixed_rows(), Some(6), 2);
}

#[test]
fn bad_pools_and_steps_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    assert!(KvPool::new(&gpu, 4, (2, 63), BLOCK, DType::F16).is_err());
    assert!(KvPool::new(&gpu, 0, (2, 64), BLOCK, DType::F32).is_err());
    assert!(KvPool::new(&gpu, 4, (2, 64), BLOCK, DType::Q8_0).is_err());
    let huge = gpu.capabilities().max_storage_binding as usize / (2 * 64 * 4) + 1;
    let err = KvPool::new(&gpu, huge, (2, 64), 1, DType::F32).unwrap_err();
    assert!(err.to_string().contains("fewer KV blocks"), "{err}");
    let pool = KvPool::new(&gpu, 4, (2, 64), BLOCK, DType::F32).unwrap();
    let q = Tensor::zeros(&gpu, &[1, 4, 64], DType::F32).unwrap();
    let table = Tensor::from_slice(&gpu, &[0u32, 1], &[1, 2]).unwrap();
    let rows = Tensor::from_slice(&gpu, &[0u32, 0, 8, 0], &[1, 4]).unwrap();
    let step = PagedRows {
        rows: &rows,
        table: &table,
        n: 1,
        max_len: 9,
    };
    let mut scratch = PagedScratch::default();
    let err = paged_attention_with(
        &gpu,
        (&q, &pool, step, &q),
        AttentionOptions {
            causal: true,
            scale: None,
            window: None,
        },
        &mut scratch,
        PagedKernel::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("past what 2 blocks"), "{err}");
}
