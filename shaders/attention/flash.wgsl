// Fused attention, flash-attention style: out = softmax(q·kᵀ·scale + mask)·v, never writing the
// q_len×kv_len score matrix to memory. Split-KV (flash-decoding): workgroup_id.z takes keys
// [z·chunk, (z+1)·chunk) only and writes its unnormalized partial output with its softmax
// statistics (running max m, sum l); combine.wgsl merges the splits. Splitting fills the GPU when
// there are few queries (decode), and bounds the keys one invocation walks.
//
// A workgroup owns WG consecutive queries of one head; each invocation owns one query row, with
// the query, a running max m, a running sum l and the output accumulator in registers. K and V are
// walked in tiles of BKV keys, staged in workgroup memory once for all WG queries. Per tile, an
// invocation computes its BKV scores, rescales its accumulator once by exp(m_old − m_new) (online
// softmax), and adds p·v for each key.
//
// Layouts (row-major): q [n_heads, q_len, D]; k and v [n_kv_heads, kv_stride, D] of which the
// first kv_len rows are used (a KV cache's capacity is its stride); partial outputs
// [splits, n_heads, q_len, D] and statistics [splits, n_heads, q_len, 2] (m, l), f32.
// Grouped-query attention: query head h reads KV head h / (n_heads / n_kv_heads), with no copy.
// Causal: query i attends keys j ≤ i + (kv_len − q_len); tiles past the workgroup's last allowed
// key are skipped. With F16, q, k and v hold f16 pairs, converted to f32 on load; accumulation is
// f32 either way.
//
// Rows are processed four elements at a time (D4 = ceil(D/4) vec4s; the launcher requires
// D % 4 == 0 only through the loads below, which zero-fill past D). Besides speed, short loops
// matter on llvmpipe, which stops any loop after 65535 iterations in one invocation.
//
// Constraints the launcher guarantees: D ≤ MAX_D (128 or 256, the width prelude's);
// BKV·ceil(D/4) ≤ 512 (two 8 KiB tiles).

@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> k: array<u32>;
@group(0) @binding(2) var<storage, read> v: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 64u;
override BKV: u32 = 16u;
override F16: bool = false;
// One split only: write the normalized output (o / l, as combine.wgsl would) straight into
// part_o, bound to the output, so no combine pass runs.
override NORM: bool = false;

const MAX_D4: u32 = MAX_D / 4u; // MAX_D from the width prelude

var<workgroup> k_tile: array<vec4<f32>, 512>;
var<workgroup> v_tile: array<vec4<f32>, 512>;

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

    let d4 = (d + 3u) / 4u;
    var qr: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < MAX_D4; c = c + 1u) {
        acc[c] = vec4<f32>(0.0);
        qr[c] = vec4<f32>(0.0);
    }
    if (live) {
        let base = (h * p.q_len + i) * d;
        for (var c = 0u; c < d4; c = c + 1u) {
            qr[c] = row4(0u, base, c) * p.scale;
        }
    }
    // Keys this workgroup may need: all, or up to its last query's position when causal.
    var kv_end = p.kv_len;
    if (p.causal != 0u) {
        kv_end = min(p.kv_len, min(q0 + WG, p.q_len) + offset);
    }
    let my_last = i + offset; // last key this query may attend (causal)
    let k_begin = wid.z * p.chunk;
    let k_stop = min(k_begin + p.chunk, kv_end);

    var m = -3.0e38;
    var l = 0.0;
    var s: array<f32, 32>;
    let kv_base = kvh * p.kv_stride * d;
    for (var j0 = k_begin; j0 < k_stop; j0 = j0 + BKV) {
        for (var e = lid; e < BKV * d4; e = e + WG) {
            let j = j0 + e / d4;
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (j < k_stop) {
                let row = kv_base + j * d;
                kv = row4(1u, row, e % d4);
                vv = row4(2u, row, e % d4);
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
                if (j < k_stop && (p.causal == 0u || j <= my_last) && !before_window(j, my_last)) {
                    var dotp = vec4<f32>(0.0);
                    for (var c = 0u; c < d4; c = c + 1u) {
                        dotp = fma(qr[c], k_tile[t * d4 + c], dotp);
                    }
                    score = dotp.x + dotp.y + dotp.z + dotp.w;
                }
                s[t] = score;
                tile_max = max(tile_max, score);
            }
            if (tile_max > -1.0e38) {
                let m_new = max(m, tile_max);
                let corr = exp(m - m_new);
                l = l * corr;
                for (var c = 0u; c < d4; c = c + 1u) {
                    acc[c] = acc[c] * corr;
                }
                for (var t = 0u; t < BKV; t = t + 1u) {
                    if (s[t] > -1.0e38) {
                        let pt = exp(s[t] - m_new);
                        l = l + pt;
                        for (var c = 0u; c < d4; c = c + 1u) {
                            acc[c] = fma(vec4<f32>(pt), v_tile[t * d4 + c], acc[c]);
                        }
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }

    if (live) {
        let slot = (wid.z * p.n_heads + h) * p.q_len + i;
        for (var c = 0u; c < d; c = c + 1u) {
            let o = acc[c / 4u][c % 4u];
            part_o[slot * d + c] = select(o, select(0.0, o / l, l > 0.0), NORM);
        }
        part_ml[slot * 2u] = m;
        part_ml[slot * 2u + 1u] = l;
    }
}
