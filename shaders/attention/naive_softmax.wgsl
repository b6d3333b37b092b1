// Naive attention, pass 2 of 3: each row of the materialized scores S becomes probabilities, in
// place (masked entries, −3e38, become 0). One invocation per (head, query).

@group(0) @binding(0) var<storage, read_write> s: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
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
        var e = 0.0;
        if (s[row + j] > -1.0e38) {
            e = exp(s[row + j] - m);
        }
        s[row + j] = e;
        l = l + e;
    }
    for (var j = 0u; j < p.kv_len; j = j + 1u) {
        s[row + j] = s[row + j] / l;
    }
}
