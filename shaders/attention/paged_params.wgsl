// The parameters of paged.wgsl and paged_combine.wgsl (one step's rows over a paged KV cache).

struct Params {
    n_rows: u32,
    n_heads: u32,
    n_kv_heads: u32,
    d: u32,
    max_blocks: u32,
    splits: u32,
    keys_per_split: u32,
    window: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
