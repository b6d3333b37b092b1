// Merges the split-KV partial results of flash.wgsl and teams.wgsl: for each query,
// m* = max over splits of m_z, l* = Σ l_z·exp(m_z − m*), out = Σ o_z·exp(m_z − m*) / l*, in one
// pass with a running max, U splits at a time: their loads are all issued before any of them is
// used, so a GPU waits on U loads at once instead of one split after another. Splits that saw no
// key (l_z = 0) contribute nothing. One invocation per output element of a head: elements
// gid.x, gid.x + stride, … (stride: every invocation in x, so long prefills fit a dispatch).

@group(0) @binding(0) var<storage, read> part_o: array<f32>;
@group(0) @binding(1) var<storage, read> part_ml: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Splits per step, at most 8: 8 on GPUs, 1 on CPU adapters (llvmpipe runs the masked tail's
// arithmetic too: 8 cost a 1024-token prefill, one split, 15%) and for a single split.
override U: u32 = 8u;

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = gid.y;
    for (var e = gid.x; e < p.q_len * p.d; e = e + groups.x * 64u) {
        combine(e, h);
    }
}

// Element e of head h: query e / d, column e % d.
fn combine(e: u32, h: u32) {
    let i = e / p.d;
    let c = e % p.d;
    var m = -3.0e38;
    var l = 0.0;
    var o = 0.0;
    for (var z0 = 0u; z0 < p.splits; z0 = z0 + U) {
        // U splits' loads first (clamped to the last split, and ignored past it), then their
        // arithmetic: one rescale of the running sums per U splits.
        var mz: array<f32, 8>;
        var lz: array<f32, 8>;
        var oz: array<f32, 8>;
        for (var u = 0u; u < U; u = u + 1u) {
            let slot = (min(z0 + u, p.splits - 1u) * p.n_heads + h) * p.q_len + i;
            mz[u] = part_ml[slot * 2u];
            lz[u] = select(0.0, part_ml[slot * 2u + 1u], z0 + u < p.splits);
            oz[u] = part_o[slot * p.d + c];
        }
        var mn = m;
        for (var u = 0u; u < U; u = u + 1u) {
            mn = select(mn, max(mn, mz[u]), lz[u] > 0.0);
        }
        // Rescale what is summed so far to the new max (1 while it holds), and weigh each split.
        let a = exp(m - mn);
        l = l * a;
        o = o * a;
        for (var u = 0u; u < U; u = u + 1u) {
            let seen = lz[u] > 0.0;
            let w = select(0.0, exp(mz[u] - mn), seen);
            l = l + lz[u] * w;
            o = o + select(0.0, oz[u] * w, seen);
        }
        m = mn;
    }
    out[(h * p.q_len + i) * p.d + c] = select(0.0, o / l, l > 0.0);
}
