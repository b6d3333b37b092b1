// Fused attention, flash-attention style: out = softmax(q·kᵀ·scale + mask)·v, never writing the
// q_len×kv_len score matrix to memory.
//
// A workgroup owns WG consecutive queries of one head; each invocation owns one query row, with
// the query, a running max m, a running sum l and the output accumulator in registers. K and V are
// walked in tiles of BKV keys, staged in workgroup memory once for all WG queries. Per tile, an
// invocation computes its BKV scores, rescales its accumulator once by exp(m_old − m_new) (online
// softmax), and adds p·v for each key.
//
// Layouts (row-major): q [n_heads, q_len, D]; k and v [n_kv_heads, kv_stride, D] of which the
// first kv_len rows are used (a KV cache's capacity is its stride); out [n_heads, q_len, D], f32.
// Grouped-query attention: query head h reads KV head h / (n_heads / n_kv_heads), with no copy.
// Causal: query i attends keys j ≤ i + (kv_len − q_len); tiles past the workgroup's last allowed
// key are skipped. With F16, q, k and v hold f16 pairs, converted to f32 on load; accumulation is
// f32 either way.
//
// Constraints the launcher guarantees: D ≤ MAX_D = 128; BKV·D ≤ 2048 (two 8 KiB tiles).

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    d: u32,
    q_len: u32,
    kv_len: u32,
    kv_stride: u32,
    causal: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> k: array<u32>;
@group(0) @binding(2) var<storage, read> v: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64u;
override BKV: u32 = 16u;
override F16: bool = false;

const MAX_D: u32 = 128u;

var<workgroup> k_tile: array<f32, 2048>;
var<workgroup> v_tile: array<f32, 2048>;

fn load(buf_is_k: bool, e: u32) -> f32 {
    var word: u32;
    if (buf_is_k) {
        word = k[select(e, e >> 1u, F16)];
    } else {
        word = v[select(e, e >> 1u, F16)];
    }
    if (F16) {
        return unpack2x16float(word)[e & 1u];
    }
    return bitcast<f32>(word);
}

fn load_q(e: u32) -> f32 {
    if (F16) {
        return unpack2x16float(q[e >> 1u])[e & 1u];
    }
    return bitcast<f32>(q[e]);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let h = wid.y;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let q0 = wid.x * WG;
    let i = q0 + lid;
    let live = i < p.q_len;
    let d = p.d;
    let offset = p.kv_len - min(p.q_len, p.kv_len);

    var qr: array<f32, MAX_D>;
    var acc: array<f32, MAX_D>;
    for (var c = 0u; c < MAX_D; c = c + 1u) {
        acc[c] = 0.0;
        qr[c] = 0.0;
    }
    if (live) {
        let base = (h * p.q_len + i) * d;
        for (var c = 0u; c < d; c = c + 1u) {
            qr[c] = load_q(base + c) * p.scale;
        }
    }
    // Keys this workgroup may need: all, or up to its last query's position when causal.
    var kv_end = p.kv_len;
    if (p.causal != 0u) {
        kv_end = min(p.kv_len, min(q0 + WG, p.q_len) + offset);
    }
    let my_last = i + offset; // last key this query may attend (causal)

    var m = -3.0e38;
    var l = 0.0;
    var s: array<f32, 32>;
    let kv_base = kvh * p.kv_stride * d;
    for (var j0 = 0u; j0 < kv_end; j0 = j0 + BKV) {
        for (var e = lid; e < BKV * d; e = e + WG) {
            let j = j0 + e / d;
            var kv = 0.0;
            var vv = 0.0;
            if (j < kv_end) {
                kv = load(true, kv_base + j0 * d + e);
                vv = load(false, kv_base + j0 * d + e);
            }
            k_tile[e] = kv;
            v_tile[e] = vv;
        }
        workgroupBarrier();

        if (live) {
            var tile_max = -3.0e38;
            for (var t = 0u; t < BKV; t = t + 1u) {
                let j = j0 + t;
                var score = -3.0e38;
                if (j < kv_end && (p.causal == 0u || j <= my_last)) {
                    var dotp = 0.0;
                    for (var c = 0u; c < d; c = c + 1u) {
                        dotp = fma(qr[c], k_tile[t * d + c], dotp);
                    }
                    score = dotp;
                }
                s[t] = score;
                tile_max = max(tile_max, score);
            }
            if (tile_max > -1.0e38) {
                let m_new = max(m, tile_max);
                let corr = exp(m - m_new);
                l = l * corr;
                for (var c = 0u; c < d; c = c + 1u) {
                    acc[c] = acc[c] * corr;
                }
                for (var t = 0u; t < BKV; t = t + 1u) {
                    if (s[t] > -1.0e38) {
                        let pt = exp(s[t] - m_new);
                        l = l + pt;
                        for (var c = 0u; c < d; c = c + 1u) {
                            acc[c] = fma(pt, v_tile[t * d + c], acc[c]);
                        }
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }

    if (live) {
        let base = (h * p.q_len + i) * d;
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = 0u; c < d; c = c + 1u) {
            out[base + c] = acc[c] * inv;
        }
    }
}
