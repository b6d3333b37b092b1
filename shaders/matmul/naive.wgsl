// Simple f32 matmul, kept as the baseline: C[M,N] = A[M,K] · B[K,N], all row-major.
//
// One invocation computes one element of C with a plain loop over K. Every shape is valid; the
// launcher dispatches ceil(N / WG_X) × ceil(M / WG_Y) workgroups and the bounds check below
// discards the invocations that fall outside C.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    if (row >= p.m || col >= p.n) {
        return;
    }
    var acc = 0.0;
    let a_row = row * p.k;
    for (var i = 0u; i < p.k; i = i + 1u) {
        acc = fma(a[a_row + i], b[i * p.n + col], acc);
    }
    c[row * p.n + col] = acc;
}
