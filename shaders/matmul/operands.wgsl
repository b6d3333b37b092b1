// Elements of A and B as f32, shared by tiled.wgsl and team.wgsl (the index appends this file to
// both). Uses their `a` binding, A_F16, B_FMT and p.k, and the B accessors of the b_packed.wgsl
// or b_f16.wgsl prelude. B_FMT: 0 f32, 1 f16, 2 Q8_0, 3 Q4_0, 4 Q4_1; the quantized formats in
// ggml's layout (blocks of 32 along K, each an f16 scale then 32 i8 or 16 bytes of nibbles: 34
// or 18 bytes, so blocks start on 2-byte boundaries; Q4_1 an f16 scale, an f16 minimum and 16
// bytes of nibbles: 20 bytes, on 4-byte boundaries), read through q4_of.

fn a_word(i: u32) -> u32 {
    return a[i >> 2u][i & 3u];
}

// Element e of a packed f32 or f16 array, from its 32-bit words.
fn a1(e: u32) -> f32 {
    if (A_F16) {
        return unpack2x16float(a_word(e >> 1u))[e & 1u];
    }
    return bitcast<f32>(a_word(e));
}

// Elements e..e+4 (e a multiple of 4).
fn a4(e: u32) -> vec4<f32> {
    if (A_F16) {
        let v = a[e >> 3u];
        if ((e & 4u) == 0u) {
            return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
        }
        return vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
    }
    return bitcast<vec4<f32>>(a[e >> 2u]);
}

fn b1(e: u32) -> f32 {
    if (B_FMT == 1u) {
        return b_f16(e);
    }
    return bitcast<f32>(b_word(e));
}

fn b4(e: u32) -> vec4<f32> {
    if (B_FMT == 1u) {
        return b_f16x4(e);
    }
    return bitcast<vec4<f32>>(b_vec4(e >> 2u));
}

// A little-endian u32 of b at a byte offset that is a multiple of 2.
fn b_u32_at(byte: u32) -> u32 {
    let i = byte >> 2u;
    let lo = b_word(i);
    if ((byte & 2u) == 0u) {
        return lo;
    }
    return (lo >> 16u) | (b_word(i + 1u) << 16u);
}

fn b_f16_at(byte: u32) -> f32 {
    let word = b_word(byte >> 2u);
    let bits = select(word & 0xffffu, word >> 16u, (byte & 2u) != 0u);
    return unpack2x16float(bits).x;
}

// W[row, k..k+4] of a quantized weight (k a multiple of 4), dequantized.
fn q4_of(row: u32, k: u32) -> vec4<f32> {
    let blocks = p.k / 32u;
    let within = k & 31u;
    if (B_FMT == 2u) {
        let off = (row * blocks + (k >> 5u)) * 34u;
        let s = bitcast<i32>(b_u32_at(off + 2u + within));
        let q = vec4<f32>(
            f32(extractBits(s, 0u, 8u)),
            f32(extractBits(s, 8u, 8u)),
            f32(extractBits(s, 16u, 8u)),
            f32(extractBits(s, 24u, 8u)),
        );
        return q * b_f16_at(off);
    }
    let shift = select(0u, 4u, within >= 16u);
    if (B_FMT == 4u) {
        // d and the minimum share the block's first word; value = nibble · d + m.
        let off = (row * blocks + (k >> 5u)) * 20u;
        let dm = unpack2x16float(b_word(off >> 2u));
        let word = b_word((off >> 2u) + 1u + ((within & 15u) >> 2u));
        let q = (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(15u);
        return fma(vec4<f32>(q), vec4<f32>(dm.x), vec4<f32>(dm.y));
    }
    let off = (row * blocks + (k >> 5u)) * 18u;
    let word = b_u32_at(off + 2u + (within & 15u));
    let q = (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(15u);
    return (vec4<f32>(q) - 8.0) * b_f16_at(off);
}

