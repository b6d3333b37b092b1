// The gather of a step's rows: row i's token is tokens[rows[4 (tok0 + i)]], the token slot of
// the step's row description (see model/rope_paged.wgsl), so the rows of many sequences gather in
// one dispatch. embed_table.wgsl has the rest.

@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    for (var e = gid.x; e < p.t * p.h; e = e + stride) {
        let i = e / p.h;
        let c = e % p.h;
        let tok = tokens[rows[4u * (p.tok0 + i)]];
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
