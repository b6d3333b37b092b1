// B's bytes, for the quantized formats' blocks at 2-byte offsets (Q8_0, Q4_0, Q5_0, Q6_K), over
// either prelude's b_word; the index appends this file to the prelude of every kernel that
// reads B (tiled, team, gemv).

// A little-endian u32 of b at a byte offset that is a multiple of 2.
fn b_u32_at(byte: u32) -> u32 {
    let i = byte >> 2u;
    let lo = b_word(i);
    if ((byte & 2u) == 0u) {
        return lo;
    }
    return (lo >> 16u) | (b_word(i + 1u) << 16u);
}

// The f16 of b at a byte offset that is a multiple of 2, as f32.
fn b_f16_at(byte: u32) -> f32 {
    let word = b_word(byte >> 2u);
    let bits = select(word & 0xffffu, word >> 16u, (byte & 2u) != 0u);
    return unpack2x16float(bits).x;
}
