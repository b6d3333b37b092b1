// Dequantizing B = W[N, K] in ggml's Q8_0 (B_FMT 2) and Q4_0 (B_FMT 3) layouts: blocks of 32
// along K, each an f16 scale then 32 i8 or 16 bytes of nibbles (34 or 18 bytes, so blocks start
// on 2-byte boundaries). Shared by tiled.wgsl and team.wgsl (the index appends it to both); uses
// their b_word, p.k and B_FMT.

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
    let off = (row * blocks + (k >> 5u)) * 18u;
    let word = b_u32_at(off + 2u + (within & 15u));
    let shift = select(0u, 4u, within >= 16u);
    let q = (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(15u);
    return (vec4<f32>(q) - 8.0) * b_f16_at(off);
}

