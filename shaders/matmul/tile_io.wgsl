// Prelude of the tile kernels (tiled.wgsl, team.wgsl), after the B prelude (b_packed.wgsl or
// b_f16.wgsl, which binds B at 1): the parameter block and bindings the one launcher of both
// (pertoken-matmul's per_window) writes. C = A·B (+ bias) over p.m × p.n, B's columns (or, for
// [N, K] weights, rows) p.b_col0 .. p.b_col0 + p.b_cols of the whole in this binding.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    b_col0: u32,
    b_cols: u32,
    has_bias: u32,
    // Elements between consecutive batch entries (workgroup_id.z) of A, B and C; 0 broadcasts.
    a_bs: u32,
    b_bs: u32,
    c_bs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
// Binding 1 (B) and its accessors: the B prelude.
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;
