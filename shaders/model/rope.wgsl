// RoPE fused with the KV-cache append and the heads-first layout the attention kernels read.
//
// Input: the q, k and v projections of t tokens, each a column window of a row-major [t, stride]
// tensor (the fused qkv linear's output, or three separate ones): head j of q is columns
// q_col + j·D .. + D of each row, and so on. Output:
//   q_out  [n_heads, t, D]                     rotated q,
//   k_cache[n_kv_heads, capacity, D] rows len .. len + t: rotated k,
//   v_cache[n_kv_heads, capacity, D] rows len .. len + t: v as it is.
// Token i is row row0 + i of the projections and sits at position len + i. Pair f of a head (f < D/2) turns by (len + i)·freq[f]:
// HF's rotate-half pairs elements (f, f + D/2); the interleaved pairing that llama.cpp's
// converter writes into GGUF files pairs (2f, 2f + 1) (INTERLEAVED).
//
// One invocation per (pair, head, token): x over pairs, y over n_heads + 2·n_kv_heads heads
// (q's, then k's, then v's), z over tokens.

struct Params {
    t: u32,
    d: u32,
    n_heads: u32,
    n_kv_heads: u32,
    q_stride: u32,
    k_stride: u32,
    v_stride: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    capacity: u32,
    len: u32,
    row0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> q_src: array<f32>;
@group(0) @binding(1) var<storage, read> k_src: array<f32>;
@group(0) @binding(2) var<storage, read> v_src: array<f32>;
@group(0) @binding(3) var<storage, read> freq: array<f32>;
@group(0) @binding(4) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;

override INTERLEAVED: bool = false;

// (a, b) turned by angle.
fn turn(a: f32, b: f32, angle: f32) -> vec2<f32> {
    let c = cos(angle);
    let s = sin(angle);
    return vec2<f32>(a * c - b * s, b * c + a * s);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.d / 2u;
    let f = gid.x;
    let head = gid.y;
    let i = gid.z;
    if (f >= half) {
        return;
    }
    // The pair's two elements within a head.
    var e0 = f;
    var e1 = f + half;
    if (INTERLEAVED) {
        e0 = 2u * f;
        e1 = 2u * f + 1u;
    }
    let pos = p.len + i;
    let angle = f32(pos) * freq[f];
    if (head < p.n_heads) {
        let src = (p.row0 + i) * p.q_stride + p.q_col + head * p.d;
        let r = turn(q_src[src + e0], q_src[src + e1], angle);
        let dst = (head * p.t + i) * p.d;
        q_out[dst + e0] = r.x;
        q_out[dst + e1] = r.y;
        return;
    }
    let kv = head - p.n_heads;
    if (kv < p.n_kv_heads) {
        let src = (p.row0 + i) * p.k_stride + p.k_col + kv * p.d;
        let r = turn(k_src[src + e0], k_src[src + e1], angle);
        let dst = (kv * p.capacity + pos) * p.d;
        k_cache[dst + e0] = r.x;
        k_cache[dst + e1] = r.y;
        return;
    }
    let vh = kv - p.n_kv_heads;
    let src = (p.row0 + i) * p.v_stride + p.v_col + vh * p.d;
    let dst = (vh * p.capacity + pos) * p.d;
    v_cache[dst + e0] = v_src[src + e0];
    v_cache[dst + e1] = v_src[src + e1];
}
