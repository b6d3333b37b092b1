// Greedy sampling on the GPU: the index of the largest of one row of logits (the first on ties;
// NaN never wins), written into the token buffer at `slot`, where the next step's embedding
// gather reads it. No host round trip between steps. One workgroup of WG invocations: each scans
// a stride of the row, then a tree reduction in workgroup memory.

struct Params {
    row: u32,
    n: u32,
    slot: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 256u;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// Whether (v, i) beats (w, j): larger, or equal and earlier. -inf loses to everything but -inf.
fn beats(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    var bv = -3.4028235e38;
    var bi = 0xffffffffu;
    let base = p.row * p.n;
    for (var i = lid; i < p.n; i = i + WG) {
        let v = logits[base + i];
        // v == v is false for NaN.
        if (v == v && (bi == 0xffffffffu || beats(v, i, bv, bi))) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (oi != 0xffffffffu && (best_i[lid] == 0xffffffffu || beats(ov, oi, best_v[lid], best_i[lid]))) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        // Every logit NaN: 0xffffffff, past any vocabulary. The embedding gather turns it into
        // NaN rows, and the host reports it when it reads the tokens.
        tokens[p.slot] = best_i[0];
    }
}
