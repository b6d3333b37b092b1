// Argmax of one row of logits into tokens[slot] (argmax_common.wgsl has the rest).

struct Params {
    row: u32,
    n: u32,
    slot: u32,
    _pad: u32,
}

@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    let b = best(lid, p.row * p.n, p.n);
    if (lid == 0u) {
        tokens[p.slot] = b;
    }
}
