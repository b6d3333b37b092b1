// The SwiGLU MLP's gate: h[i, j] = silu(g[i, j]) · u[i, j], silu(z) = z / (1 + e^−z), for t rows
// of f columns. g and u are column windows of row-major tensors (the fused gate-up linear's
// output [t, 2f]: g at column 0, u at column f; or two separate [t, f] tensors). h: f32 [t, f].
// One invocation per element, striding over the whole output.

struct Params {
    t: u32,
    f: u32,
    g_stride: u32,
    u_stride: u32,
    g_col: u32,
    u_col: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    for (var e = gid.x; e < p.t * p.f; e = e + stride) {
        let i = e / p.f;
        let j = e % p.f;
        let z = g[i * p.g_stride + p.g_col + j];
        let silu = z / (1.0 + exp(-z));
        h[e] = silu * u[i * p.u_stride + p.u_col + j];
    }
}
