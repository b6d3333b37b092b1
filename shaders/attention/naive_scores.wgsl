// Naive attention, pass 1 of 3, kept as the bench baseline: the q_len×kv_len scores are
// materialized in device memory. S[h, i, j] = q_i·k_j·scale, or −3e38 where masked; one
// invocation per score. Same layouts and masking as flash.wgsl; f32 only.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn kv_head(h: u32) -> u32 {
    return h / (p.n_heads / p.n_kv_heads);
}

@compute @workgroup_size(64, 1, 1)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    let h = gid.z;
    if (j >= p.kv_len || i >= p.q_len) {
        return;
    }
    let offset = p.kv_len - min(p.q_len, p.kv_len);
    var score = -3.0e38;
    if ((p.causal == 0u || j <= i + offset) && !before_window(j, i + offset)) {
        let qb = (h * p.q_len + i) * p.d;
        let kb = (kv_head(h) * p.kv_stride + j) * p.d;
        var dotp = 0.0;
        for (var c = 0u; c < p.d; c = c + 1u) {
            dotp = fma(q[qb + c], k[kb + c], dotp);
        }
        score = dotp * p.scale;
    }
    s[(h * p.q_len + i) * p.kv_len + j] = score;
}
