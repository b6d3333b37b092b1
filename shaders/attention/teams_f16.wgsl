enable f16;

// Prelude of teams.wgsl (the index prepends it, before params.wgsl) for f16 q, k and v on
// adapters with shader-f16: bound as f16 values and loaded as such, converted to f32 for the
// f32 arithmetic. F16 is declared for the launcher's common constants; it must be true.

@group(0) @binding(0) var<storage, read> q: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f16>>;

override F16: bool = true;

// Elements e .. e+8 of q (buf 0), k (1) or v (2); e is a multiple of 8.
fn ld8(buf: u32, e: u32) -> array<vec4<f32>, 2> {
    let i = e >> 2u;
    var a: vec4<f16>;
    var b: vec4<f16>;
    if (buf == 0u) {
        a = q[i];
        b = q[i + 1u];
    } else if (buf == 1u) {
        a = k[i];
        b = k[i + 1u];
    } else {
        a = v[i];
        b = v[i + 1u];
    }
    return array<vec4<f32>, 2>(vec4<f32>(a), vec4<f32>(b));
}
