// RoPE fused with the per-head q/k RMSNorm, the KV-cache append and the heads-first layout the
// attention kernels read.
//
// Input: the q, k and v projections of t tokens, each a column window of a row-major [t, stride]
// tensor (the fused qkv linear's output, or three separate ones): head j of q is columns
// q_col + j·D .. + D of each row, and so on. Output:
//   q_out  [n_heads, t, D]                     normed and rotated q,
//   k_cache[n_kv_heads, capacity, D] rows len .. len + t: normed and rotated k,
//   v_cache[n_kv_heads, capacity, D] rows len .. len + t: v as it is.
// Token i is row row0 + i of the projections and sits at position len + i.
//
// QK_NORM (Gemma 3, Qwen3): each q head is first RMS-normed with q_norm [D], each k head with
// k_norm [D]: x / sqrt(mean(x²) + eps) · w, over the whole head.
// Then the first ROT elements turn (ROT = D unless the model rotates part of each head): pair f
// (f < ROT/2) turns by (len + i)·freq[f]; HF's rotate-half pairs elements (f, f + ROT/2), the
// interleaved pairing that llama.cpp's converter writes into GGUF files pairs (2f, 2f + 1)
// (INTERLEAVED), and is multiplied by factor (1, or Phi-3 LongRoPE's attention factor). Elements
// ROT .. D pass through (normed).
//
// One workgroup per (head, token): y over n_heads + 2·n_kv_heads heads (q's, then k's, then
// v's), z over tokens; its 64 invocations stride over the head.

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
    rot: u32,
    eps: f32,
    factor: f32,
}

@group(0) @binding(0) var<storage, read> q_src: array<f32>;
@group(0) @binding(1) var<storage, read> k_src: array<f32>;
@group(0) @binding(2) var<storage, read> v_src: array<f32>;
@group(0) @binding(3) var<storage, read> freq: array<f32>;
@group(0) @binding(4) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(7) var<storage, read> q_norm: array<f32>;
@group(0) @binding(8) var<storage, read> k_norm: array<f32>;
@group(0) @binding(9) var<uniform> p: Params;

override INTERLEAVED: bool = false;
override QK_NORM: bool = false;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, 64>;

// (a, b) turned by angle.
fn turn(a: f32, b: f32, angle: f32) -> vec2<f32> {
    let c = cos(angle);
    let s = sin(angle);
    return vec2<f32>(a * c - b * s, b * c + a * s);
}

// Element e of the head starting at src in q (is_q) or k.
fn load(is_q: bool, src: u32, e: u32) -> f32 {
    if (is_q) {
        return q_src[src + e];
    }
    return k_src[src + e];
}

// The norm's factor of element e (1 without QK_NORM).
fn weight(is_q: bool, e: u32, inv: f32) -> f32 {
    if (!QK_NORM) {
        return 1.0;
    }
    if (is_q) {
        return inv * q_norm[e];
    }
    return inv * k_norm[e];
}

fn store(is_q: bool, dst: u32, e: u32, v: f32) {
    if (is_q) {
        q_out[dst + e] = v;
    } else {
        k_cache[dst + e] = v;
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.y;
    let i = wid.z;
    let pos = p.len + i;
    let d = p.d;
    let is_q = head < p.n_heads;
    let is_k = !is_q && head < p.n_heads + p.n_kv_heads;
    if (!(is_q || is_k)) {
        // v: copied as it is.
        let vh = head - p.n_heads - p.n_kv_heads;
        let src = (p.row0 + i) * p.v_stride + p.v_col + vh * d;
        let dst = (vh * p.capacity + pos) * d;
        for (var e = lid; e < d; e = e + WG) {
            v_cache[dst + e] = v_src[src + e];
        }
        return;
    }
    var src = 0u;
    var dst = 0u;
    if (is_q) {
        src = (p.row0 + i) * p.q_stride + p.q_col + head * d;
        dst = (head * p.t + i) * d;
    } else {
        let kv = head - p.n_heads;
        src = (p.row0 + i) * p.k_stride + p.k_col + kv * d;
        dst = (kv * p.capacity + pos) * d;
    }
    var inv = 1.0;
    if (QK_NORM) {
        var ss = 0.0;
        for (var e = lid; e < d; e = e + WG) {
            let x = load(is_q, src, e);
            ss = fma(x, x, ss);
        }
        partial[lid] = ss;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s >> 1u) {
            if (lid < s) {
                partial[lid] = partial[lid] + partial[lid + s];
            }
            workgroupBarrier();
        }
        inv = inverseSqrt(partial[0] / f32(d) + p.eps);
    }
    let half = p.rot / 2u;
    for (var f = lid; f < half; f = f + WG) {
        var e0 = f;
        var e1 = f + half;
        if (INTERLEAVED) {
            e0 = 2u * f;
            e1 = 2u * f + 1u;
        }
        let a = load(is_q, src, e0) * weight(is_q, e0, inv);
        let b = load(is_q, src, e1) * weight(is_q, e1, inv);
        let r = turn(a, b, f32(pos) * freq[f]) * p.factor;
        store(is_q, dst, e0, r.x);
        store(is_q, dst, e1, r.y);
    }
    for (var e = p.rot + lid; e < d; e = e + WG) {
        store(is_q, dst, e, load(is_q, src, e) * weight(is_q, e, inv));
    }
}
