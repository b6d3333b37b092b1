enable f16;

// b_packed.wgsl's twin for f16 B on adapters with shader-f16 (the tiled and GEMV kernels): B
// bound as f16 values and loaded as such. The launchers use it for f16 B only; the word
// accessors, which the other formats' code paths name, repack f16 pairs so the module
// type-checks (and stay correct should they run).

@group(0) @binding(1) var<storage, read> b: array<vec4<f16>>;

// Word i of B: f16 elements 2i and 2i+1.
fn b_word(i: u32) -> u32 {
    let v = b[i >> 1u];
    return pack2x16float(vec2<f32>(select(v.xy, v.zw, (i & 1u) != 0u)));
}

// Words 4i .. 4i+4.
fn b_vec4(i: u32) -> vec4<u32> {
    return vec4<u32>(b_word(4u * i), b_word(4u * i + 1u), b_word(4u * i + 2u), b_word(4u * i + 3u));
}

// f16 element e of B, as f32.
fn b_f16(e: u32) -> f32 {
    return f32(b[e >> 2u][e & 3u]);
}

// f16 elements e .. e+4 (e a multiple of 4), as f32.
fn b_f16x4(e: u32) -> vec4<f32> {
    return vec4<f32>(b[e >> 2u]);
}

// f16 elements 8i .. 8i+8, as f32.
fn b_f16x8(i: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(vec4<f32>(b[2u * i]), vec4<f32>(b[2u * i + 1u]));
}
