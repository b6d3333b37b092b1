// Appends new keys or values to a KV cache in place: src [n_kv_heads, t, W] → dst rows
// len .. len+t of [n_kv_heads, capacity, W], where W is a row's 32-bit words (head_dim for f32,
// head_dim / 2 for f16). Each invocation copies words gid.x, gid.x + stride, … (stride: every
// invocation in x, so a long append needs no more workgroups than a dispatch allows); no host
// round trip.

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
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = gid.y;
    let stride = groups.x * 64u;
    for (var e = gid.x; e < p.t * p.words; e = e + stride) {
        let j = e / p.words;
        let w = e % p.words;
        dst[(h * p.capacity + p.len + j) * p.words + w] = src[(h * p.t + j) * p.words + w];
    }
}
