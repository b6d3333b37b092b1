// Prelude of the kernels that read K-quant weights (gemv, tiled, team, embed; the index prepends
// it): Q4_K's and Q5_K's 6-bit scales and minimums. A super-block's bytes 4..16 (words 1..3 of
// its 144 or 176, both whole words) hold eight of each, one pair per sub-block of 32, as ggml's
// get_scale_min_k4 reads them: bytes 0-3 of them sc0-3 in their low 6 bits and bits 4-5 of
// sc4-7 on top, bytes 4-7 the same for the minimums, bytes 8-11 the low nibbles of sc4-7 (low)
// and of m4-7 (high).

// Sub-block j's (scale, minimum) from the three words w = (bytes 4-7, 8-11, 12-15), as f32.
fn kq_scale_min(w: vec3<u32>, j: u32) -> vec2<f32> {
    let sh = 8u * (j & 3u);
    let b0 = (w.x >> sh) & 0xffu;
    let b4 = (w.y >> sh) & 0xffu;
    if (j < 4u) {
        return vec2<f32>(f32(b0 & 63u), f32(b4 & 63u));
    }
    let b8 = (w.z >> sh) & 0xffu;
    return vec2<f32>(f32((b8 & 15u) | ((b0 >> 6u) << 4u)), f32((b8 >> 4u) | ((b4 >> 6u) << 4u)));
}

// The signed byte i (0..3) of a word, as f32.
fn kq_i8(word: u32, i: u32) -> f32 {
    return f32(extractBits(bitcast<i32>(word), 8u * i, 8u));
}
