// Shared by every attention shader: the index prepends this file to each of them (WGSL has no
// includes). Layouts: q [n_heads, q_len, d]; k, v [n_kv_heads, kv_stride, d], first kv_len rows.

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    d: u32,
    q_len: u32,
    kv_len: u32,
    kv_stride: u32,
    causal: u32,
    scale: f32,
    // Keys per split (a multiple of BKV), and the number of splits.
    chunk: u32,
    splits: u32,
    _pad0: u32,
    _pad1: u32,
}

