// Final logit soft-capping (Gemma 2; Gemma 3 where the file sets final_logit_softcapping), in
// place: x = cap · tanh(x / cap) over n values. One invocation per value, striding over them.

struct Params {
    n: u32,
    cap: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    for (var i = gid.x; i < p.n; i = i + stride) {
        // tanh's argument clamped to where tanh is ±1 in f32 already (WGSL states no accuracy
        // for tanh at large arguments); NaN stays NaN.
        let a = clamp(x[i] / p.cap, -15.0, 15.0);
        x[i] = p.cap * tanh(a);
    }
}
