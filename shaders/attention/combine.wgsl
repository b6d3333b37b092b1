// Merges the split-KV partial results of flash.wgsl and teams.wgsl: for each query,
// m* = max over splits of m_z, l* = Σ l_z·exp(m_z − m*), out = Σ o_z·exp(m_z − m*) / l*, in one
// pass with a running max (each split's loads do not wait on the previous split's arithmetic, so
// a GPU keeps many in flight). Splits that saw no key (l_z = 0) contribute nothing. One
// invocation per output element.

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
    var l = 0.0;
    var o = 0.0;
    for (var z = 0u; z < p.splits; z = z + 1u) {
        let slot = (z * p.n_heads + h) * p.q_len + i;
        let lz = part_ml[slot * 2u + 1u];
        let mz = part_ml[slot * 2u];
        let oz = part_o[slot * p.d + c];
        let seen = lz > 0.0;
        let mn = select(m, max(m, mz), seen);
        // Rescale what is summed so far to the new max (1 while it holds), and weigh split z.
        let a = exp(m - mn);
        let w = select(0.0, exp(mz - mn), seen);
        l = l * a + lz * w;
        o = o * a + select(0.0, oz * w, seen);
        m = mn;
    }
    out[(h * p.q_len + i) * p.d + c] = select(0.0, o / l, l > 0.0);
}
