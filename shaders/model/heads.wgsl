// Heads-first to tokens-first: src [n_heads, t, d] (the attention output) → rows row0 .. row0 + t
// of dst [rows, n_heads·d] (the output projection's input). A single sequence's decode (t = 1)
// needs no copy, both layouts being the same; a batch of sequences gathers each one's row.
// One invocation per element, striding over the whole tensor.

struct Params {
    t: u32,
    d: u32,
    n_heads: u32,
    row0: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let total = p.t * p.n_heads * p.d;
    for (var e = gid.x; e < total; e = e + stride) {
        let i = e / (p.n_heads * p.d);
        let rest = e % (p.n_heads * p.d);
        let head = rest / p.d;
        let c = rest % p.d;
        dst[p.row0 * p.n_heads * p.d + e] = src[(head * p.t + i) * p.d + c];
    }
}
