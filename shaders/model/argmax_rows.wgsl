// Argmax of rows row0 .. row0 + groups of logits, one workgroup each (argmax_common.wgsl has the
// rest): row row0 + i's token goes to tokens[picked[i]], and then replaces picked[i], so that the
// host reads a step's tokens from the small `picked` buffer alone.

struct Params {
    row0: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(2) var<storage, read_write> picked: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = best(lid, (p.row0 + wid.x) * p.n, p.n);
    if (lid == 0u) {
        tokens[picked[wid.x]] = b;
        picked[wid.x] = b;
    }
}
