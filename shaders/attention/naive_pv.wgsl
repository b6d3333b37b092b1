// Naive attention, pass 3 of 3: out = P·V with the probabilities P from pass 2. One invocation
// per output element.

@group(0) @binding(0) var<storage, read> s: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn softmax_pv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    let h = gid.y;
    if (e >= p.q_len * p.d) {
        return;
    }
    let i = e / p.d;
    let c = e % p.d;
    let row = (h * p.q_len + i) * p.kv_len;
    let vb = (h / (p.n_heads / p.n_kv_heads)) * p.kv_stride * p.d;
    var o = 0.0;
    for (var j = 0u; j < p.kv_len; j = j + 1u) {
        o = fma(s[row + j], v[vb + j * p.d + c], o);
    }
    out[(h * p.q_len + i) * p.d + c] = o;
}
