// Fused attention by teams, for adapters with subgroups of at least TEAM invocations: decode and
// prefill. A team of TEAM consecutive invocations owns R = GB·QB query rows — GB query heads that
// read the same KV head (grouped-query attention) times QB consecutive query positions — and
// walks keys one at a time, reading each key's K and V rows once for all R rows. The lanes of a
// team split the head dimension: lane i holds 8-element pieces i, i + TEAM, … of every row, so a
// row is read contiguously; a score is the team's partial dot products summed by
// subgroupShuffleXor within the team (never across teams, so any subgroup size ≥ TEAM works).
// Each lane keeps its pieces of the R queries and outputs in registers, and each row's running
// max m and sum l (the same in every lane of the team: the butterfly adds the same terms in every
// lane). Online softmax with one exponential per key and row: exp(−|s − m|) is either the rescale
// of the past (s raises the max) or the key's weight. With PF (GPUs) each team loads its next
// key's K and V rows before the current key's arithmetic.
//
// A workgroup of WG invocations has WG/TEAM teams: KT of them split the keys of the same queries
// (decode: one query, many keys) and are merged in workgroup memory at the end; the rest take the
// next queries (prefill). Workgroup (x, y, z): x picks the KV head and which GB of its query heads,
// y the block of queries, z the split of the keys, [z·chunk, (z+1)·chunk). Each workgroup writes
// unnormalized partial outputs with their (m, l) per (split, head, query), for combine.wgsl: the
// same partial layout as flash.wgsl. Causal: query i attends keys j ≤ i + (kv_len − q_len); a
// workgroup stops at its last query's last key.
//
// q is [n_heads, q_len, D]; k and v are [n_kv_heads, kv_stride, D]; f32, or f16 pairs (F16), read
// 8 elements at a time; accumulation is f32. D = 8·C8 is a constant, and every loop over the
// register arrays runs to exactly their length (guarded by r < GB·QB and the piece < C8),
// indexing them by its own counter: compilers (NIR's) then unroll it whatever its size, and the
// arrays stay in registers rather than in memory indexed at run time (lane by lane on llvmpipe).
//
// Constraints the launcher guarantees: subgroups of ≥ TEAM invocations made of consecutive local
// invocation indices; C8 ≤ TEAM·PIECES; GB·QB ≤ MAX_R; GB divides n_heads / n_kv_heads; WG/TEAM
// ≤ 8, a multiple of KT; every split has a key; (chunk / KT) < 65536 (llvmpipe's loop limit).

// The q, k and v bindings (0, 1, 2), the F16 constant and ld8 come from a prelude:
// teams_packed.wgsl binds 32-bit words (f32, or f16 pairs unpacked with unpack2x16float), and
// teams_f16.wgsl binds f16 values with shader-f16, for f16 inputs on adapters that have it.
// MAX_D comes from a width prelude, dim128.wgsl or dim256.wgsl: it sizes the register arrays,
// so head dimensions up to 128 keep the small ones.
@group(0) @binding(3) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override C8: u32 = 16u;
override GB: u32 = 1u;
override QB: u32 = 1u;
override KT: u32 = 1u;
override WG: u32 = 64u;
// Prefetch the next key (GPUs).
override PF: bool = false;
// One split only: write the normalized output (o / l, as combine.wgsl would) straight into
// part_o, bound to the output, so no combine pass runs.
override NORM: bool = false;

// What lands in part_o: the partial sum, or with NORM the output.
fn finish(o: f32, l: f32) -> f32 {
    if (NORM) {
        return select(0.0, o / l, l > 0.0);
    }
    return o;
}

const TEAM: u32 = 8u;
// Most 8-element pieces of a row per lane (MAX_D from the width prelude), and most rows per team.
const PIECES: u32 = MAX_D / (8u * TEAM);
const MAX_R: u32 = 4u;

var<workgroup> red_m: array<f32, WG / TEAM>; // [team]
var<workgroup> red_l: array<f32, WG / TEAM>;
var<workgroup> red_o: array<vec4<f32>, WG / TEAM * 2u * C8>; // [team][2·C8]

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let lane = lid % TEAM;
    let team = lid / TEAM;
    let kt = team % KT;
    let qt = team / KT;
    let q_teams = WG / TEAM / KT;
    let rows = GB * QB;
    let group = p.n_heads / p.n_kv_heads;
    let parts = group / GB;
    let kvh = wid.x / parts;
    let h0 = kvh * group + (wid.x % parts) * GB;
    let i_wg = wid.y * q_teams * QB;
    let i0 = i_wg + qt * QB;
    let z = wid.z;
    let d = C8 * 8u;
    let offset = p.kv_len - min(p.q_len, p.kv_len);
    let k_begin = z * p.chunk;
    var k_end = min(k_begin + p.chunk, p.kv_len);
    if (p.causal != 0u) {
        k_end = min(k_end, min(i_wg + q_teams * QB, p.q_len) + offset);
    }

    // Row r is head h0 + r % GB at query position i0 + r / GB (clamped: rows past the last query
    // compute on its data and are never written).
    var qr: array<array<array<vec4<f32>, 2>, PIECES>, MAX_R>;
    var acc: array<array<array<vec4<f32>, 2>, PIECES>, MAX_R>;
    var m: array<f32, 4>;
    var l: array<f32, 4>;
    var last: array<u32, 4>; // last key row r attends
    var pos: array<u32, 4>; // row r's position (its sliding window ends there)
    for (var r = 0u; r < MAX_R; r = r + 1u) {
        let i = min(i0 + r / GB, p.q_len - 1u);
        last[r] = select(0xffffffffu, i + offset, p.causal != 0u);
        pos[r] = i + offset;
        for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
            let c = lane + pc * TEAM;
            if (r < rows && c < C8) {
                let x = ld8(0u, ((h0 + r % GB) * p.q_len + i) * d + 8u * c);
                qr[r][pc][0] = x[0] * p.scale;
                qr[r][pc][1] = x[1] * p.scale;
            }
            acc[r][pc][0] = vec4<f32>(0.0);
            acc[r][pc][1] = vec4<f32>(0.0);
        }
        m[r] = -3.0e38;
        l[r] = 0.0;
    }

    // With PF, the K and V pieces of the team's next key are loaded before this key's arithmetic
    // (software pipelining: a GPU keeps two keys' loads in flight per team instead of waiting on
    // each); the last iteration loads its own key again, harmlessly. Without, each key's loads
    // are issued where they are used (CPU adapters: on lavapipe prefetching did not help).
    var kn: array<array<vec4<f32>, 2>, PIECES>;
    var vn: array<array<vec4<f32>, 2>, PIECES>;
    if (PF) {
        let row = (kvh * p.kv_stride + min(k_begin + kt, k_end - 1u)) * d;
        for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
            let c = lane + pc * TEAM;
            if (C8 == TEAM * PIECES || c < C8) {
                kn[pc] = ld8(1u, row + 8u * c);
                vn[pc] = ld8(2u, row + 8u * c);
            }
        }
    }

    // The loop's control flow is uniform over the workgroup (keys a row may not see are
    // masked), so the shuffles always have their whole team.
    for (var j0 = k_begin; j0 < k_end; j0 = j0 + KT) {
        let j = min(j0 + kt, k_end - 1u);
        let live = j0 + kt < k_end;
        let row = (kvh * p.kv_stride + j) * d;
        var kc: array<array<vec4<f32>, 2>, PIECES>;
        var vc: array<array<vec4<f32>, 2>, PIECES>;
        if (PF) {
            kc = kn;
            vc = vn;
            let next = (kvh * p.kv_stride + min(j0 + KT + kt, k_end - 1u)) * d;
            for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
                let c = lane + pc * TEAM;
                if (C8 == TEAM * PIECES || c < C8) {
                    kn[pc] = ld8(1u, next + 8u * c);
                    vn[pc] = ld8(2u, next + 8u * c);
                }
            }
        }
        var sv: array<vec4<f32>, 4>;
        for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
            let c = lane + pc * TEAM;
            if (C8 == TEAM * PIECES || c < C8) {
                var kk = kc[pc];
                if (!PF) {
                    kk = ld8(1u, row + 8u * c);
                }
                for (var r = 0u; r < MAX_R; r = r + 1u) {
                    if (r < rows) {
                        sv[r] = fma(qr[r][pc][0], kk[0], fma(qr[r][pc][1], kk[1], sv[r]));
                    }
                }
            }
        }
        var pj: array<f32, 4>;
        var corr: array<f32, 4>;
        for (var r = 0u; r < MAX_R; r = r + 1u) {
            if (r < rows) {
                var s = sv[r].x + sv[r].y + sv[r].z + sv[r].w;
                s = s + subgroupShuffleXor(s, 4u);
                s = s + subgroupShuffleXor(s, 2u);
                s = s + subgroupShuffleXor(s, 1u);
                let ok = live && j <= last[r] && !before_window(j, pos[r]);
                let e = exp(-abs(s - m[r]));
                let raises = s > m[r];
                corr[r] = select(1.0, e, raises && ok);
                pj[r] = select(0.0, select(e, 1.0, raises), ok);
                l[r] = l[r] * corr[r] + pj[r];
                m[r] = select(m[r], max(m[r], s), ok);
            }
        }
        for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
            let c = lane + pc * TEAM;
            if (C8 == TEAM * PIECES || c < C8) {
                var vv = vc[pc];
                if (!PF) {
                    vv = ld8(2u, row + 8u * c);
                }
                for (var r = 0u; r < MAX_R; r = r + 1u) {
                    if (r < rows) {
                        acc[r][pc][0] = fma(vec4<f32>(pj[r]), vv[0], acc[r][pc][0] * corr[r]);
                        acc[r][pc][1] = fma(vec4<f32>(pj[r]), vv[1], acc[r][pc][1] * corr[r]);
                    }
                }
            }
        }
    }

    if (KT == 1u) {
        // Each team writes its own rows.
        for (var r = 0u; r < MAX_R; r = r + 1u) {
            let i = i0 + r / GB;
            if (r < rows && i < p.q_len) {
                let slot = (z * p.n_heads + h0 + r % GB) * p.q_len + i;
                for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
                    let c = lane + pc * TEAM;
                    if (C8 == TEAM * PIECES || c < C8) {
                        for (var x = 0u; x < 4u; x = x + 1u) {
                            part_o[slot * d + 8u * c + x] = finish(acc[r][pc][0][x], l[r]);
                            part_o[slot * d + 8u * c + 4u + x] = finish(acc[r][pc][1][x], l[r]);
                        }
                    }
                }
                if (lane == 0u) {
                    part_ml[slot * 2u] = m[r];
                    part_ml[slot * 2u + 1u] = l[r];
                }
            }
        }
        return;
    }

    // The KT teams of a query team split its keys: merge them, row by row — their max, then
    // every team rescaled to it. A team that saw no key has l = 0 and contributes nothing.
    // The loop holds barriers, so a driver may not unroll it: row r's registers are picked by
    // comparisons, with constant indices (MAX_R = 4), never by indexing with r, which would put
    // the arrays in memory for the whole kernel.
    for (var r = 0u; r < MAX_R; r = r + 1u) {
        if (r < rows) {
            var mr = m[0];
            var lr = l[0];
            var ar = acc[0];
            if (r == 1u) {
                mr = m[1];
                lr = l[1];
                ar = acc[1];
            }
            if (r == 2u) {
                mr = m[2];
                lr = l[2];
                ar = acc[2];
            }
            if (r == 3u) {
                mr = m[3];
                lr = l[3];
                ar = acc[3];
            }
            if (lane == 0u) {
                red_m[team] = select(-3.0e38, mr, lr > 0.0);
            }
            workgroupBarrier();
            var wm = -3.0e38;
            for (var u = 0u; u < KT; u = u + 1u) {
                wm = max(wm, red_m[qt * KT + u]);
            }
            let w = select(0.0, exp(mr - wm), lr > 0.0);
            if (lane == 0u) {
                red_l[team] = lr * w;
            }
            for (var pc = 0u; pc < PIECES; pc = pc + 1u) {
                let c = lane + pc * TEAM;
                if (C8 == TEAM * PIECES || c < C8) {
                    red_o[team * 2u * C8 + 2u * c] = ar[pc][0] * w;
                    red_o[team * 2u * C8 + 2u * c + 1u] = ar[pc][1] * w;
                }
            }
            workgroupBarrier();
            for (var col = lid; col < q_teams * 2u * C8; col = col + WG) {
                let t = col / (2u * C8);
                let cc = col % (2u * C8);
                let i = i_wg + t * QB + r / GB;
                if (i < p.q_len) {
                    var sum = vec4<f32>(0.0);
                    var tl = 0.0;
                    for (var u = 0u; u < KT; u = u + 1u) {
                        sum = sum + red_o[(t * KT + u) * 2u * C8 + cc];
                        tl = tl + red_l[t * KT + u];
                    }
                    let slot = (z * p.n_heads + h0 + r % GB) * p.q_len + i;
                    for (var x = 0u; x < 4u; x = x + 1u) {
                        part_o[slot * d + cc * 4u + x] = finish(sum[x], tl);
                    }
                }
            }
            if (lid < q_teams) {
                let i = i_wg + lid * QB + r / GB;
                if (i < p.q_len) {
                    var wl = 0.0;
                    var wmax = -3.0e38;
                    for (var u = 0u; u < KT; u = u + 1u) {
                        wl = wl + red_l[lid * KT + u];
                        wmax = max(wmax, red_m[lid * KT + u]);
                    }
                    let slot = (z * p.n_heads + h0 + r % GB) * p.q_len + i;
                    part_ml[slot * 2u] = wmax;
                    part_ml[slot * 2u + 1u] = wl;
                }
            }
            workgroupBarrier();
        }
    }
}
