// Merges the splits of paged.wgsl (see there): out = Σ_z acc_z·exp(m_z − m*) / Σ_z l_z·exp(m_z − m*), splits
// that saw no key (l_z = 0) left out. One workgroup per (head, row), invocations over the head.

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = 64u;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let row = wid.y;
    let d = p.d;
    var mx = -3.0e38;
    for (var z = 0u; z < p.splits; z = z + 1u) {
        let slot = ((z * p.n_rows + row) * p.n_heads + head) * (d + 2u);
        if (part[slot + d + 1u] > 0.0) {
            mx = max(mx, part[slot + d]);
        }
    }
    for (var e = lid; e < d; e = e + WG) {
        var l = 0.0;
        var o = 0.0;
        for (var z = 0u; z < p.splits; z = z + 1u) {
            let slot = ((z * p.n_rows + row) * p.n_heads + head) * (d + 2u);
            let lz = part[slot + d + 1u];
            if (lz > 0.0) {
                let w = exp(part[slot + d] - mx);
                l = l + lz * w;
                o = o + part[slot + e] * w;
            }
        }
        out[(row * p.n_heads + head) * d + e] = o / l;
    }
}
