// RoPE fused with the write into a paged KV cache, for every row of a step at once (rope.wgsl
// does the same for one sequence's contiguous cache).
//
// Row r of the step is rows[4r .. 4r + 4] = (token slot, sequence, position, unused). Its q, k and
// v heads are column windows of the projections' rows (as in rope.wgsl). Output:
//   q_out [rows, n_heads, d]: normed and rotated q, tokens first (the paged attention's layout);
//   the pools [blocks, n_kv_heads, BLOCK, d]: k (normed, rotated) and v (as is) of row r at
//   offset position % BLOCK of block table[sequence · max_blocks + position / BLOCK],
//   as 32-bit words: f32, or two f16 per word with F16.
//
// QK_NORM, the partial rotary width ROT, INTERLEAVED pairing and the attention factor are those of
// rope.wgsl. One workgroup per (head, row): x over n_heads + 2·n_kv_heads heads, y over rows. The
// head is staged in workgroup memory, so that f16 words pack two finished neighbours.

struct Params {
    n_rows: u32,
    d: u32,
    n_heads: u32,
    n_kv_heads: u32,
    q_stride: u32,
    k_stride: u32,
    v_stride: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    max_blocks: u32,
    rot: u32,
    eps: f32,
    factor: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q_src: array<f32>;
@group(0) @binding(1) var<storage, read> k_src: array<f32>;
@group(0) @binding(2) var<storage, read> v_src: array<f32>;
@group(0) @binding(3) var<storage, read> freq: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read> table: array<u32>;
@group(0) @binding(6) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_pool: array<u32>;
@group(0) @binding(8) var<storage, read_write> v_pool: array<u32>;
@group(0) @binding(9) var<storage, read> q_norm: array<f32>;
@group(0) @binding(10) var<storage, read> k_norm: array<f32>;
@group(0) @binding(11) var<uniform> p: Params;

override INTERLEAVED: bool = false;
override QK_NORM: bool = false;
override F16: bool = true;
override BLOCK: u32 = 16u;

// Invocations per workgroup, at most 64: 64 on GPUs, 16 on CPU adapters (fewer SIMD passes per
// barrier).
override WG: u32 = 64u;

var<workgroup> partial: array<f32, 64>;
var<workgroup> head_v: array<f32, 256>;

fn src_at(kind: u32, src: u32, e: u32) -> f32 {
    if (kind == 0u) {
        return q_src[src + e];
    }
    if (kind == 1u) {
        return k_src[src + e];
    }
    return v_src[src + e];
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let r = wid.y;
    let d = p.d;
    let seq = rows[4u * r + 1u];
    let pos = rows[4u * r + 2u];
    // kind 0: a q head, 1: a k head, 2: a v head; h: its index among its kind.
    var kind = 0u;
    var h = head;
    var src = 0u;
    if (head < p.n_heads) {
        src = r * p.q_stride + p.q_col + h * d;
    } else if (head < p.n_heads + p.n_kv_heads) {
        kind = 1u;
        h = head - p.n_heads;
        src = r * p.k_stride + p.k_col + h * d;
    } else {
        kind = 2u;
        h = head - p.n_heads - p.n_kv_heads;
        src = r * p.v_stride + p.v_col + h * d;
    }
    for (var e = lid; e < d; e = e + WG) {
        head_v[e] = src_at(kind, src, e);
    }
    workgroupBarrier();
    if (kind < 2u) {
        var inv = 1.0;
        if (QK_NORM) {
            var ss = 0.0;
            for (var e = lid; e < d; e = e + WG) {
                ss = fma(head_v[e], head_v[e], ss);
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
            workgroupBarrier();
            for (var e = lid; e < d; e = e + WG) {
                var w = k_norm[e];
                if (kind == 0u) {
                    w = q_norm[e];
                }
                head_v[e] = head_v[e] * inv * w;
            }
            workgroupBarrier();
        }
        let half = p.rot / 2u;
        for (var f = lid; f < half; f = f + WG) {
            var e0 = f;
            var e1 = f + half;
            if (INTERLEAVED) {
                e0 = 2u * f;
                e1 = 2u * f + 1u;
            }
            let a = head_v[e0];
            let b = head_v[e1];
            let angle = f32(pos) * freq[f];
            let c = cos(angle);
            let s = sin(angle);
            head_v[e0] = (a * c - b * s) * p.factor;
            head_v[e1] = (b * c + a * s) * p.factor;
        }
        workgroupBarrier();
    }
    if (kind == 0u) {
        let dst = (r * p.n_heads + h) * d;
        for (var e = lid; e < d; e = e + WG) {
            q_out[dst + e] = head_v[e];
        }
        return;
    }
    let blk = table[seq * p.max_blocks + pos / BLOCK];
    let dst = ((blk * p.n_kv_heads + h) * BLOCK + pos % BLOCK) * d;
    if (F16) {
        for (var w = lid; w < d / 2u; w = w + WG) {
            let packed = pack2x16float(vec2<f32>(head_v[2u * w], head_v[2u * w + 1u]));
            if (kind == 1u) {
                k_pool[dst / 2u + w] = packed;
            } else {
                v_pool[dst / 2u + w] = packed;
            }
        }
    } else {
        for (var e = lid; e < d; e = e + WG) {
            if (kind == 1u) {
                k_pool[dst + e] = bitcast<u32>(head_v[e]);
            } else {
                v_pool[dst + e] = bitcast<u32>(head_v[e]);
            }
        }
    }
}
