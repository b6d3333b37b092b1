enable f16;

// Prelude of gemv.wgsl (the index prepends it) for f16 weights on adapters with shader-f16: the
// weight bound as f16 values and loaded as such. The launcher uses it for W_FMT = 1 only; the
// word accessors, which the other formats' code paths name, repack f16 pairs so the module
// type-checks (and stay correct should they run).

@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;

// Word i of the weight: f16 elements 2i and 2i+1.
fn w_word(i: u32) -> u32 {
    let v = w[i >> 1u];
    return pack2x16float(vec2<f32>(select(v.xy, v.zw, (i & 1u) != 0u)));
}

// Words 4i .. 4i+4.
fn w_vec4(i: u32) -> vec4<u32> {
    return vec4<u32>(w_word(4u * i), w_word(4u * i + 1u), w_word(4u * i + 2u), w_word(4u * i + 3u));
}

// f16 elements 8i .. 8i+8, as f32.
fn w_f16x8(i: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(vec4<f32>(w[2u * i]), vec4<f32>(w[2u * i + 1u]));
}
