// Split-KV attention for a single query per head (decode): the invocations of a workgroup share
// one query and divide the workgroup's keys between them, so all WG invocations work even though
// there is one query. Each keeps a running max m, sum l and output row over its keys; the
// workgroup then merges them (rescaling each by exp(m_t − m)) and writes one partial result per
// (split, head) with its (m, l), for combine.wgsl — the same partial layout as flash.wgsl.
//
// Keys: workgroup (h, z) takes keys [z·chunk, min((z+1)·chunk, kv_len)); invocation t takes
// every WG-th of them. q is [n_heads, 1, D]; k and v are [n_kv_heads, kv_stride, D]; f32 or f16
// pairs (F16). Causal masking is moot for one query at the last position.
//
// Constraints the launcher guarantees: D ≤ 128; WG = 64.

@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> k: array<u32>;
@group(0) @binding(2) var<storage, read> v: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override F16: bool = false;

const WG: u32 = 64u;
const MAX_D4: u32 = 32u;
// Columns (vec4) merged per round of the workgroup reduction.
const COLS: u32 = 8u;

var<workgroup> red_m: array<f32, 64>;
var<workgroup> red_l: array<f32, 64>;
var<workgroup> red_o: array<vec4<f32>, 512>; // WG × COLS

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let h = wid.x;
    let z = wid.y;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let d = p.d;
    let d4 = (d + 3u) / 4u;
    let k_begin = z * p.chunk;
    let k_stop = min(k_begin + p.chunk, p.kv_len);
    let kv_base = kvh * p.kv_stride * d;

    var qr: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < d4; c = c + 1u) {
        qr[c] = row4(0u, h * d, c) * p.scale;
        acc[c] = vec4<f32>(0.0);
    }
    var m = -3.0e38;
    var l = 0.0;
    for (var j = k_begin + t; j < k_stop; j = j + WG) {
        let row = kv_base + j * d;
        var dotp = vec4<f32>(0.0);
        for (var c = 0u; c < d4; c = c + 1u) {
            dotp = fma(qr[c], row4(1u, row, c), dotp);
        }
        let s = dotp.x + dotp.y + dotp.z + dotp.w;
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let pj = exp(s - m_new);
        l = l * corr + pj;
        for (var c = 0u; c < d4; c = c + 1u) {
            acc[c] = fma(vec4<f32>(pj), row4(2u, row, c), acc[c] * corr);
        }
        m = m_new;
    }

    // Merge the invocations: the workgroup max, then every partial rescaled to it.
    red_m[t] = select(-3.0e38, m, l > 0.0);
    workgroupBarrier();
    var wm = -3.0e38;
    for (var u = 0u; u < WG; u = u + 1u) {
        wm = max(wm, red_m[u]);
    }
    let w = select(0.0, exp(m - wm), l > 0.0);
    red_l[t] = l * w;
    workgroupBarrier();
    var wl = 0.0;
    for (var u = 0u; u < WG; u = u + 1u) {
        wl = wl + red_l[u];
    }
    let slot = z * p.n_heads + h;
    for (var c0 = 0u; c0 < d4; c0 = c0 + COLS) {
        for (var c = 0u; c < COLS; c = c + 1u) {
            var o = vec4<f32>(0.0);
            if (c0 + c < d4) {
                o = acc[c0 + c] * w;
            }
            red_o[t * COLS + c] = o;
        }
        workgroupBarrier();
        if (t < COLS && c0 + t < d4) {
            var sum = vec4<f32>(0.0);
            for (var u = 0u; u < WG; u = u + 1u) {
                sum = sum + red_o[u * COLS + t];
            }
            for (var x = 0u; x < 4u; x = x + 1u) {
                let col = (c0 + t) * 4u + x;
                if (col < d) {
                    part_o[slot * d + col] = sum[x];
                }
            }
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        part_ml[slot * 2u] = wm;
        part_ml[slot * 2u + 1u] = wl;
    }
}
