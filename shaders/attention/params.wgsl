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
    // Sliding window (0: none): the query at position P = i + kv_len − q_len sees keys j with
    // P − window < j (and j ≤ P when causal).
    window: u32,
    _pad1: u32,
}

// Whether key j is outside the sliding window of the query at position `pos`.
fn before_window(j: u32, pos: u32) -> bool {
    return p.window != 0u && j + p.window <= pos;
}

