// Greedy sampling on the GPU: the index of the largest of one row of logits (the first on ties;
// NaN never wins), written into the token buffer at `slot`, where the next step's embedding
// gather reads it. No host round trip between steps. One workgroup of WG invocations per row: each
// scans a stride of the row, then a tree reduction in workgroup memory. argmax.wgsl (one row)
// and argmax_rows.wgsl (many) add the entry points.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;

override WG: u32 = 256u;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// Whether (v, i) beats (w, j): larger, or equal and earlier. -inf loses to everything but -inf.
fn beats(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

// The workgroup's index of the largest of logits[base .. base + n] (every invocation gets it):
// 0xffffffff if every logit is NaN, past any vocabulary. The embedding gather turns it into NaN
// rows, and the host reports it when it reads the tokens.
fn best(lid: u32, base: u32, n: u32) -> u32 {
    var bv = -3.4028235e38;
    var bi = 0xffffffffu;
    for (var i = lid; i < n; i = i + WG) {
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
    let b = best_i[0];
    workgroupBarrier();
    return b;
}
