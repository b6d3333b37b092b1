// Prelude of gemv.wgsl (the index prepends it): the weight as 32-bit words, for every format
// and adapter; f16 pairs are unpacked with unpack2x16float.

@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

// Word i of the weight.
fn w_word(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}

// Words 4i .. 4i+4.
fn w_vec4(i: u32) -> vec4<u32> {
    return w[i];
}

// f16 elements 8i .. 8i+8, as f32.
fn w_f16x8(i: u32) -> array<vec4<f32>, 2> {
    let q = w[i];
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
        vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)),
    );
}
