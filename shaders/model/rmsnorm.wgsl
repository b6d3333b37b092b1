// RMSNorm of rows of the residual stream, optionally adding a layer's output into it first:
//   if ADD: x[r] += delta[r]            (the residual add, written back to x)
//   y[r - row0] = x[r] / sqrt(mean(x[r]²) + eps) · w
// for rows r in row0 .. row0 + rows. One workgroup per row; WG invocations stride over the row
// and sum squares in workgroup memory. The last layer's norm runs on the last row only
// (row0 = T − 1): generation needs the last position's logits.
//
// x, delta, y: f32 [T, h]; w: f32 [h]. Accumulation is f32.

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
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256u;
override ADD: bool = false;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = p.row0 + wid.x;
    let base = row * p.h;
    var ss = 0.0;
    for (var i = lid; i < p.h; i = i + WG) {
        var v = x[base + i];
        if (ADD) {
            v = v + delta[base + i];
            x[base + i] = v;
        }
        ss = fma(v, v, ss);
    }
    partial[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            partial[lid] = partial[lid] + partial[lid + s];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(partial[0] / f32(p.h) + p.eps);
    let out = wid.x * p.h;
    for (var i = lid; i < p.h; i = i + WG) {
        y[out + i] = x[base + i] * inv * w[i];
    }
}
