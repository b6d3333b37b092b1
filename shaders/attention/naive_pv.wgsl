// Naive attention, pass 2 of 2: each row of the materialized scores S becomes probabilities and
// is multiplied by V; one invocation per (head, query).

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    d: u32,
    q_len: u32,
    kv_len: u32,
    kv_stride: u32,
    causal: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> s: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn kv_head(h: u32) -> u32 {
    return h / (p.n_heads / p.n_kv_heads);
}

@compute @workgroup_size(64, 1, 1)
fn softmax_pv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let h = gid.y;
    if (i >= p.q_len) {
        return;
    }
    let row = (h * p.q_len + i) * p.kv_len;
    var m = -3.0e38;
    for (var j = 0u; j < p.kv_len; j = j + 1u) {
        m = max(m, s[row + j]);
    }
    var l = 0.0;
    for (var j = 0u; j < p.kv_len; j = j + 1u) {
        if (s[row + j] > -1.0e38) {
            l = l + exp(s[row + j] - m);
        }
    }
    let ob = (h * p.q_len + i) * p.d;
    let vb = kv_head(h) * p.kv_stride * p.d;
    for (var c = 0u; c < p.d; c = c + 1u) {
        var o = 0.0;
        for (var j = 0u; j < p.kv_len; j = j + 1u) {
            if (s[row + j] > -1.0e38) {
                o = fma(exp(s[row + j] - m) / l, v[vb + j * p.d + c], o);
            }
        }
        out[ob + c] = o;
    }
}
