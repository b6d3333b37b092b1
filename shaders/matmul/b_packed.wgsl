// Prelude of every matmul kernel that reads B (the weight, for linear) — tiled.wgsl, team.wgsl,
// gemv.wgsl; the index prepends it: B as 32-bit words, for every format and adapter; f16 pairs
// are unpacked with unpack2x16float. b_f16.wgsl is its shader-f16 twin.

@group(0) @binding(1) var<storage, read> b: array<vec4<u32>>;

// Word i of B.
fn b_word(i: u32) -> u32 {
    return b[i >> 2u][i & 3u];
}

// Words 4i .. 4i+4.
fn b_vec4(i: u32) -> vec4<u32> {
    return b[i];
}

// f16 element e of B, as f32.
fn b_f16(e: u32) -> f32 {
    return unpack2x16float(b_word(e >> 1u))[e & 1u];
}

// f16 elements e .. e+4 (e a multiple of 4), as f32.
fn b_f16x4(e: u32) -> vec4<f32> {
    let v = b[e >> 3u];
    if ((e & 4u) == 0u) {
        return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
    }
    return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
}

// f16 elements 8i .. 8i+8, as f32.
fn b_f16x8(i: u32) -> array<vec4<f32>, 2> {
    let q = b[i];
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
        vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)),
    );
}
