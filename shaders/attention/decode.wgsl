// Split-KV attention for a single query per head (decode), on adapters with subgroups of at
// least TEAM invocations. A workgroup takes one KV head, GB of the query heads that read it
// (grouped-query attention: all of them, or an equal part) and one chunk of keys. Its invocations
// form teams of TEAM consecutive invocations; each team walks every (WG/TEAM)-th key of the chunk,
// and the lanes of a team split the head dimension: lane i holds 8-element pieces i, i + TEAM, …
// of the row. So one key's K and V rows are read once, contiguously, by one team, for all GB
// heads; a score is the team's partial dot products summed by subgroupShuffleXor within the team
// (never across teams, so any subgroup size ≥ TEAM works). Each lane keeps, per head, its pieces
// of the query and of the output, and the team's running max m and sum l (the same in every lane).
// The workgroup then merges its teams (rescaling each by exp(m_team − m)) and writes one partial
// result per (split, head) with its (m, l), for combine.wgsl: the same partial layout as
// flash.wgsl.
//
// Keys: workgroup (x, z) takes keys [z·chunk, min((z+1)·chunk, kv_len)). q is [n_heads, 1, D]; k
// and v are [n_kv_heads, kv_stride, D]; f32, or f16 pairs (F16), read 8 elements at a time.
// Causal masking is moot for one query at the last position.
//
// Constraints the launcher guarantees: subgroups of ≥ TEAM invocations made of consecutive
// local invocation indices; D = 8·C8 with C8 ≤ TEAM·PIECES; GB ≤ MAX_GB and GB divides
// n_heads / n_kv_heads; WG a multiple of TEAM, at most 64 (red_o); every split has a key.

@group(0) @binding(0) var<storage, read> q: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override F16: bool = false;
override C8: u32 = 16u;
override GB: u32 = 1u;
override WG: u32 = 64u;

const TEAM: u32 = 8u;
// Most 8-element pieces of a row per lane, and most heads per workgroup.
const PIECES: u32 = 2u;
const MAX_GB: u32 = 4u;

var<workgroup> red_m: array<f32, 8>; // WG / TEAM
var<workgroup> red_l: array<f32, 8>;
var<workgroup> red_o: array<vec4<f32>, 256>; // WG / TEAM × 2·TEAM·PIECES

// Elements e .. e+8 of q (buf 0), k (1) or v (2); e is a multiple of 8.
fn ld8(buf: u32, e: u32) -> array<vec4<f32>, 2> {
    if (F16) {
        var w: vec4<u32>;
        if (buf == 0u) {
            w = q[e >> 3u];
        } else if (buf == 1u) {
            w = k[e >> 3u];
        } else {
            w = v[e >> 3u];
        }
        return array<vec4<f32>, 2>(
            vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
            vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)),
        );
    }
    let i = e >> 2u;
    var a: vec4<u32>;
    var b: vec4<u32>;
    if (buf == 0u) {
        a = q[i];
        b = q[i + 1u];
    } else if (buf == 1u) {
        a = k[i];
        b = k[i + 1u];
    } else {
        a = v[i];
        b = v[i + 1u];
    }
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(a), bitcast<vec4<f32>>(b));
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let lane = lid % TEAM;
    let team = lid / TEAM;
    let teams = WG / TEAM;
    let group = p.n_heads / p.n_kv_heads;
    let parts = group / GB;
    let kvh = wid.x / parts;
    let h0 = kvh * group + (wid.x % parts) * GB;
    let z = wid.y;
    let d = C8 * 8u;
    let k_begin = z * p.chunk;
    let k_stop = min(k_begin + p.chunk, p.kv_len);

    // qr[g][i]: head g's piece lane + i·TEAM (two vec4s), and so for acc. Every loop over these
    // arrays runs to exactly their length (guarded by g < GB and the piece < C8) and indexes
    // them by its own counter: compilers (NIR's) then unroll it whatever its size, and the arrays
    // stay in registers rather than in memory indexed at run time.
    var qr: array<array<array<vec4<f32>, 2>, 2>, 4>; // [MAX_GB][PIECES]
    var acc: array<array<array<vec4<f32>, 2>, 2>, 4>;
    var m: array<f32, 4>;
    var l: array<f32, 4>;
    for (var g = 0u; g < MAX_GB; g = g + 1u) {
        for (var i = 0u; i < PIECES; i = i + 1u) {
            let c = lane + i * TEAM;
            if (g < GB && c < C8) {
                let x = ld8(0u, (h0 + g) * d + 8u * c);
                qr[g][i][0] = x[0] * p.scale;
                qr[g][i][1] = x[1] * p.scale;
            }
            acc[g][i][0] = vec4<f32>(0.0);
            acc[g][i][1] = vec4<f32>(0.0);
        }
        m[g] = -3.0e38;
        l[g] = 0.0;
    }

    // The loop's control flow is uniform over the workgroup (keys past the end are masked), so
    // the shuffles always have their whole team.
    for (var j0 = k_begin; j0 < k_stop; j0 = j0 + teams) {
        let j = min(j0 + team, k_stop - 1u);
        let live = j0 + team < k_stop;
        let row = (kvh * p.kv_stride + j) * d;
        var sv: array<vec4<f32>, 4>;
        for (var i = 0u; i < PIECES; i = i + 1u) {
            let c = lane + i * TEAM;
            if (c < C8) {
                let kk = ld8(1u, row + 8u * c);
                for (var g = 0u; g < MAX_GB; g = g + 1u) {
                    if (g < GB) {
                        sv[g] = fma(qr[g][i][0], kk[0], fma(qr[g][i][1], kk[1], sv[g]));
                    }
                }
            }
        }
        var pj: array<f32, 4>;
        var corr: array<f32, 4>;
        for (var g = 0u; g < MAX_GB; g = g + 1u) {
            if (g < GB) {
                var s = sv[g].x + sv[g].y + sv[g].z + sv[g].w;
                s = s + subgroupShuffleXor(s, 4u);
                s = s + subgroupShuffleXor(s, 2u);
                s = s + subgroupShuffleXor(s, 1u);
                // One exponential per key: a new max rescales the past by e and weighs the key
                // 1; otherwise the past stays and the key weighs e.
                let e = exp(-abs(s - m[g]));
                let raises = s > m[g];
                corr[g] = select(1.0, e, raises && live);
                pj[g] = select(0.0, select(e, 1.0, raises), live);
                l[g] = l[g] * corr[g] + pj[g];
                m[g] = select(m[g], max(m[g], s), live);
            }
        }
        for (var i = 0u; i < PIECES; i = i + 1u) {
            let c = lane + i * TEAM;
            if (c < C8) {
                let vv = ld8(2u, row + 8u * c);
                for (var g = 0u; g < MAX_GB; g = g + 1u) {
                    if (g < GB) {
                        acc[g][i][0] = fma(vec4<f32>(pj[g]), vv[0], acc[g][i][0] * corr[g]);
                        acc[g][i][1] = fma(vec4<f32>(pj[g]), vv[1], acc[g][i][1] * corr[g]);
                    }
                }
            }
        }
    }

    // Merge the teams, head by head: the workgroup max, then every team rescaled to it. A team
    // that saw no key has l = 0 and contributes nothing.
    for (var g = 0u; g < MAX_GB; g = g + 1u) {
        if (g < GB) {
            if (lane == 0u) {
                red_m[team] = select(-3.0e38, m[g], l[g] > 0.0);
            }
            workgroupBarrier();
            var wm = -3.0e38;
            for (var u = 0u; u < teams; u = u + 1u) {
                wm = max(wm, red_m[u]);
            }
            let w = select(0.0, exp(m[g] - wm), l[g] > 0.0);
            if (lane == 0u) {
                red_l[team] = l[g] * w;
            }
            for (var i = 0u; i < PIECES; i = i + 1u) {
                let c = lane + i * TEAM;
                if (c < C8) {
                    red_o[team * 2u * C8 + 2u * c] = acc[g][i][0] * w;
                    red_o[team * 2u * C8 + 2u * c + 1u] = acc[g][i][1] * w;
                }
            }
            workgroupBarrier();
            let slot = z * p.n_heads + h0 + g;
            for (var col = lid; col < 2u * C8; col = col + WG) {
                var sum = vec4<f32>(0.0);
                for (var u = 0u; u < teams; u = u + 1u) {
                    sum = sum + red_o[u * 2u * C8 + col];
                }
                for (var x = 0u; x < 4u; x = x + 1u) {
                    part_o[slot * d + col * 4u + x] = sum[x];
                }
            }
            if (lid == 0u) {
                var wl = 0.0;
                for (var u = 0u; u < teams; u = u + 1u) {
                    wl = wl + red_l[u];
                }
                part_ml[slot * 2u] = wm;
                part_ml[slot * 2u + 1u] = wl;
            }
            workgroupBarrier();
        }
    }
}
