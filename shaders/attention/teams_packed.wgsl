// Prelude of teams.wgsl (the index prepends it, after params.wgsl): q, k and v as 32-bit words,
// f32 or (F16) f16 pairs unpacked with unpack2x16float; works on every adapter.

@group(0) @binding(0) var<storage, read> q: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<u32>>;

override F16: bool = false;

// Elements e .. e+8 of q (buf 0), k (1) or v (2); e is a multiple of 8.
fn ld8(buf: u32, e: u32) -> array<vec4<f32>, 2> {
    if (F16) {
        var w: vec4<u32>;
        if (buf == 0u) {
            w = q[e >> 3u];
        } else if (buf == 1u) {
            w = k[e >> 3u];
        } else {
            w = v[e >> 3u];
        }
        return array<vec4<f32>, 2>(
            vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
            vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)),
        );
    }
    let i = e >> 2u;
    var a: vec4<u32>;
    var b: vec4<u32>;
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
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(a), bitcast<vec4<f32>>(b));
}

