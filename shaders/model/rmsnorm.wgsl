// RMSNorm of rows of the residual stream, optionally adding a layer's output into it first:
//   if ADD: x[r] += delta[r]            (the residual add, written back to x)
//   if POST: x[r] += rms_norm(delta[r]) · w_post   (Gemma's sandwich: the layer's output normed
//                                                    before the add)
//   y[r - row0] = x[r] / sqrt(mean(x[r]²) + eps) · w
// for rows r in row0 .. row0 + rows. One workgroup per row; WG invocations stride over the row
// and sum squares in workgroup memory. The last layer's norm runs on the last row only
// (row0 = T − 1): generation needs the last position's logits.
//
// x, delta, y: f32 [T, h]; w, w_post: f32 [h]. Accumulation is f32.

struct Params {
    row0: u32,
    h: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> w_post: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 256u;
override ADD: bool = false;
override POST: bool = false;

var<workgroup> partial: array<f32, 256>;

// The sum of ss over the workgroup (every invocation gets it).
fn total(lid: u32, ss: f32) -> f32 {
    partial[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    let sum = partial[0];
    workgroupBarrier();
    return sum;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = p.row0 + wid.x;
    let base = row * p.h;
    var post = 0.0;
    if (POST) {
        var ds = 0.0;
        for (var i = lid; i < p.h; i = i + WG) {
            let v = delta[base + i];
            ds = fma(v, v, ds);
        }
        post = inverseSqrt(total(lid, ds) / f32(p.h) + p.eps);
    }
    var ss = 0.0;
    for (var i = lid; i < p.h; i = i + WG) {
        var v = x[base + i];
        if (POST) {
            v = v + delta[base + i] * post * w_post[i];
            x[base + i] = v;
        } else if (ADD) {
            v = v + delta[base + i];
            x[base + i] = v;
        }
        ss = fma(v, v, ss);
    }
    let inv = inverseSqrt(total(lid, ss) / f32(p.h) + p.eps);
    let out = wid.x * p.h;
    for (var i = lid; i < p.h; i = i + WG) {
        y[out + i] = x[base + i] * inv * w[i];
    }
}
