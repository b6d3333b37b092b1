// Appends new keys or values to a KV cache in place: src [n_kv_heads, t, W] → dst rows
// len .. len+t of [n_kv_heads, capacity, W], where W is a row's 32-bit words (head_dim for f32,
// head_dim / 2 for f16). One invocation per word; no host round trip.

struct Params {
    t: u32,
    words: u32,
    capacity: u32,
    len: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    let h = gid.y;
    if (e >= p.t * p.words) {
        return;
    }
    let j = e / p.words;
    let w = e % p.words;
    dst[(h * p.capacity + p.len + j) * p.words + w] = src[(h * p.t + j) * p.words + w];
}
