// Copy kernel: dst = src, 16 bytes per load and store. Its rate is the adapter's achievable
// memory bandwidth, the roofline ceiling every memory-bound kernel is reported against.
//
// A grid-stride loop: the launcher dispatches a fixed number of workgroups and each invocation
// copies every (workgroups·WG)-th vec4, so any length works.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 256u;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let stride = nwg.x * WG;
    for (var i = gid.x; i < p.n; i = i + stride) {
        dst[i] = src[i];
    }
}
