// Decode and chunked-prefill attention over a paged KV cache, every row of a step in one dispatch.
//
// A step's rows belong to many sequences, each at its own position. Row r is described by
// rows[4r .. 4r + 4] = (token slot, sequence, position, unused): its query attends the keys of its
// sequence at positions lo .. position (causal; lo = position + 1 − window with a sliding window,
// else 0), which live in the pool's blocks that the sequence's row of the block table names:
// key j is offset j % BLOCK of block table[seq · max_blocks + j / BLOCK].
//
// Layouts: q [rows, n_heads, d] (tokens first, as the projections write them), the pools
// [blocks, n_kv_heads, BLOCK, d] as 32-bit words (f32, or two f16 per word with F16), out
// [rows, n_heads, d]: the next linear reads it as it is, with no layout pass.
//
// One workgroup of WG invocations per (head, row, split): the keys of a row are cut into
// `splits` ranges of `keys_per_split` (split-KV for long contexts). A tile of WG keys at a time:
// invocation i scores key i (q·k over the head), the workgroup takes the tile's max and the
// softmax sums with an online rescale, then invocation i accumulates output elements
// i, i + WG, … over the tile's keys. With one split the result is written normalized to out;
// with more, each writes its unnormalized sum and (max, sum of exponentials) to `part`, and
// paged_combine.wgsl merges them.


@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_pool: array<u32>;
@group(0) @binding(2) var<storage, read> v_pool: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;

override F16: bool = true;
override BLOCK: u32 = 16u;

const WG: u32 = 64u;
// Output elements per invocation: head dimensions up to 4 · WG = 256.
const PER: u32 = 4u;

var<workgroup> qv: array<f32, 256>;
var<workgroup> red: array<f32, 64>;
var<workgroup> pw: array<f32, 64>;
var<workgroup> base_w: array<u32, 64>;

// Element e of the pool row starting at element `base` (a multiple of d).
fn k_at(base: u32, e: u32) -> f32 {
    if (F16) {
        let w = k_pool[(base + e) >> 1u];
        return unpack2x16float(w)[e & 1u];
    }
    return bitcast<f32>(k_pool[base + e]);
}

fn v_at(base: u32, e: u32) -> f32 {
    if (F16) {
        let w = v_pool[(base + e) >> 1u];
        return unpack2x16float(w)[e & 1u];
    }
    return bitcast<f32>(v_pool[base + e]);
}

// q·k for the key whose row starts at `base`.
fn score(base: u32) -> f32 {
    var s = 0.0;
    if (F16) {
        for (var e = 0u; e < p.d; e = e + 2u) {
            let kk = unpack2x16float(k_pool[(base + e) >> 1u]);
            s = fma(qv[e], kk.x, s);
            s = fma(qv[e + 1u], kk.y, s);
        }
    } else {
        for (var e = 0u; e < p.d; e = e + 1u) {
            s = fma(qv[e], bitcast<f32>(k_pool[base + e]), s);
        }
    }
    return s;
}

// The workgroup's max (MAX) or sum of each invocation's v; every invocation gets it.
fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] = red[lid] + red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let row = wid.y;
    let z = wid.z;
    let d = p.d;
    let seq = rows[4u * row + 1u];
    let pos = rows[4u * row + 2u];
    let kvh = head / (p.n_heads / p.n_kv_heads);
    var lo = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    let start = lo + z * p.keys_per_split;
    let end = min(pos + 1u, start + p.keys_per_split);
    let q0 = (row * p.n_heads + head) * d;
    for (var e = lid; e < d; e = e + WG) {
        qv[e] = q[q0 + e] * p.scale;
    }
    workgroupBarrier();
    var m = -3.0e38;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = start; t0 < end; t0 = t0 + WG) {
        let j = t0 + lid;
        var s = -3.0e38;
        var base = 0u;
        if (j < end) {
            let blk = table[seq * p.max_blocks + j / BLOCK];
            base = ((blk * p.n_kv_heads + kvh) * BLOCK + j % BLOCK) * d;
            s = score(base);
        }
        let mt = reduce(lid, s, true);
        let mn = max(m, mt);
        var pj = 0.0;
        if (j < end) {
            pj = exp(s - mn);
        }
        let alpha = exp(m - mn);
        let sum = reduce(lid, pj, false);
        l = l * alpha + sum;
        m = mn;
        pw[lid] = pj;
        base_w[lid] = base;
        workgroupBarrier();
        let n = min(WG, end - t0);
        for (var u = 0u; u < PER; u = u + 1u) {
            let e = lid + u * WG;
            if (e < d) {
                var a = acc[u] * alpha;
                for (var i = 0u; i < n; i = i + 1u) {
                    a = fma(pw[i], v_at(base_w[i], e), a);
                }
                acc[u] = a;
            }
        }
        workgroupBarrier();
    }
    if (p.splits == 1u) {
        for (var u = 0u; u < PER; u = u + 1u) {
            let e = lid + u * WG;
            if (e < d) {
                out[q0 + e] = acc[u] / l;
            }
        }
        return;
    }
    // Split z's partial: [splits, rows, heads, d + 2], the sum then (max, sum of exponentials).
    let slot = ((z * p.n_rows + row) * p.n_heads + head) * (d + 2u);
    for (var u = 0u; u < PER; u = u + 1u) {
        let e = lid + u * WG;
        if (e < d) {
            part[slot + e] = acc[u];
        }
    }
    if (lid == 0u) {
        part[slot + d] = m;
        part[slot + d + 1u] = l;
    }
}

// The same attention with one invocation per (row, head) and no barriers: each walks its keys
// alone, the head's q and sum in registers. For CPU adapters (llvmpipe runs a workgroup's
// invocations as SIMD lanes and pays for every barrier; here the lanes are 64 different rows and
// heads doing the same loop), where the workgroup form's reductions cost more than the keys.
@compute @workgroup_size(64, 1, 1)
fn serial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x;
    if (idx >= p.n_rows * p.n_heads) {
        return;
    }
    let row = idx / p.n_heads;
    let head = idx % p.n_heads;
    let z = gid.y;
    let d = p.d;
    let seq = rows[4u * row + 1u];
    let pos = rows[4u * row + 2u];
    let kvh = head / (p.n_heads / p.n_kv_heads);
    var lo = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    let start = lo + z * p.keys_per_split;
    let end = min(pos + 1u, start + p.keys_per_split);
    let q0 = (row * p.n_heads + head) * d;
    var qh: array<f32, 256>;
    var acc: array<f32, 256>;
    for (var e = 0u; e < d; e = e + 1u) {
        qh[e] = q[q0 + e] * p.scale;
        acc[e] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;
    for (var j = start; j < end; j = j + 1u) {
        let blk = table[seq * p.max_blocks + j / BLOCK];
        let base = ((blk * p.n_kv_heads + kvh) * BLOCK + j % BLOCK) * d;
        var s = 0.0;
        for (var e = 0u; e < d; e = e + 1u) {
            s = fma(qh[e], k_at(base, e), s);
        }
        let mn = max(m, s);
        let alpha = exp(m - mn);
        let pj = exp(s - mn);
        l = fma(l, alpha, pj);
        m = mn;
        for (var e = 0u; e < d; e = e + 1u) {
            acc[e] = fma(acc[e], alpha, pj * v_at(base, e));
        }
    }
    if (p.splits == 1u) {
        for (var e = 0u; e < d; e = e + 1u) {
            out[q0 + e] = acc[e] / l;
        }
        return;
    }
    let slot = ((z * p.n_rows + row) * p.n_heads + head) * (d + 2u);
    for (var e = 0u; e < d; e = e + 1u) {
        part[slot + e] = acc[e];
    }
    part[slot + d] = m;
    part[slot + d + 1u] = l;
}
