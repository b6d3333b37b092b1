// The gather of t consecutive tokens from tokens[tok0 ..] (embed_table.wgsl has the rest).

@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    for (var e = gid.x; e < p.t * p.h; e = e + stride) {
        let i = e / p.h;
        let c = e % p.h;
        let tok = tokens[p.tok0 + i];
        let at = p.out_row0 * p.h + e;
        if (tok >= p.vocab) {
            if (p.row0 == 0u) {
                out[at] = bitcast<f32>(0x7fc00000u);
            }
        } else if (tok >= p.row0 && tok - p.row0 < p.rows) {
            out[at] = element(tok - p.row0, c) * p.scale;
        }
    }
}
