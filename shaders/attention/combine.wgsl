// Merges the split-KV partial results of flash.wgsl: for each query, m* = max over splits of m_z,
// l* = Σ l_z·exp(m_z − m*), out = Σ o_z·exp(m_z − m*) / l*. Splits that saw no key (l_z = 0,
// m_z = −3e38) contribute nothing. One invocation per output element.

@group(0) @binding(0) var<storage, read> part_o: array<f32>;
@group(0) @binding(1) var<storage, read> part_ml: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x; // element within the head: query e / d, column e % d
    let h = gid.y;
    if (e >= p.q_len * p.d) {
        return;
    }
    let i = e / p.d;
    let c = e % p.d;
    var m = -3.0e38;
    for (var z = 0u; z < p.splits; z = z + 1u) {
        let slot = (z * p.n_heads + h) * p.q_len + i;
        if (part_ml[slot * 2u + 1u] > 0.0) {
            m = max(m, part_ml[slot * 2u]);
        }
    }
    var l = 0.0;
    var o = 0.0;
    for (var z = 0u; z < p.splits; z = z + 1u) {
        let slot = (z * p.n_heads + h) * p.q_len + i;
        let lz = part_ml[slot * 2u + 1u];
        if (lz > 0.0) {
            let w = exp(part_ml[slot * 2u] - m);
            l = l + lz * w;
            o = o + part_o[slot * p.d + c] * w;
        }
    }
    out[(h * p.q_len + i) * p.d + c] = select(0.0, o / l, l > 0.0);
}
