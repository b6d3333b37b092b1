// Elements of A and B as f32, shared by tiled.wgsl and team.wgsl (the index appends this file to
// both). Uses their `a` binding, A_F16, B_FMT and p.k, and the B accessors of the b_packed.wgsl
// or b_f16.wgsl prelude. B_FMT: 0 f32, 1 f16, 2 Q8_0, 3 Q4_0, 4 Q4_1, 5 Q5_0, 6 Q5_1, 7 Q4_K,
// 8 Q5_K, 9 Q6_K; the quantized formats in ggml's layout (blocks of 32 along K, or super-blocks
// of 256 for the K-quants; Q8_0, Q4_0, Q5_0 and Q6_K blocks, of 34, 18, 22 and 210 bytes, start
// on 2-byte boundaries, the others on 4-byte ones), read through q4_of (K-quant scales through
// the common/kquant.wgsl prelude, bytes at 2-byte offsets through matmul/b_bytes.wgsl's).

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

// The nibbles (0..15) of bytes 0..3 of `word`, each shifted right by `shift` first.
fn nibbles(word: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(15u);
}

// Bit `bit` of each byte of `word`, as the fifth bit (16) of four values.
fn fifth_bits(word: u32, bit: u32) -> vec4<u32> {
    return ((vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + bit)) & vec4<u32>(1u)) << vec4<u32>(4u);
}

// W[row, k..k+4] of a quantized weight (k a multiple of 4), dequantized.
fn q4_of(row: u32, k: u32) -> vec4<f32> {
    if (B_FMT >= 7u) {
        return kq_of(row, k);
    }
    let blocks = p.k / 32u;
    let block = row * blocks + (k >> 5u);
    let within = k & 31u;
    if (B_FMT == 2u) {
        let off = block * 34u;
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
        let w = block * 5u;
        let dm = unpack2x16float(b_word(w));
        let q = nibbles(b_word(w + 1u + ((within & 15u) >> 2u)), shift);
        return fma(vec4<f32>(q), vec4<f32>(dm.x), vec4<f32>(dm.y));
    }
    if (B_FMT == 5u) {
        // d, then qh (bit j: value j's fifth bit), then the nibbles; value = (q − 16) · d.
        let off = block * 22u;
        let qh = b_u32_at(off + 2u) >> within;
        let hi = (vec4<u32>(qh) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
        let q = nibbles(b_u32_at(off + 6u + (within & 15u)), shift) | (hi << vec4<u32>(4u));
        return (vec4<f32>(q) - 16.0) * b_f16_at(off);
    }
    if (B_FMT == 6u) {
        // d and m, qh, the nibbles (24 bytes: whole words); value = q · d + m.
        let w = block * 6u;
        let dm = unpack2x16float(b_word(w));
        let hi = (vec4<u32>(b_word(w + 1u) >> within) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
        let q = nibbles(b_word(w + 2u + ((within & 15u) >> 2u)), shift) | (hi << vec4<u32>(4u));
        return fma(vec4<f32>(q), vec4<f32>(dm.x), vec4<f32>(dm.y));
    }
    let off = block * 18u;
    let q = nibbles(b_u32_at(off + 2u + (within & 15u)), shift);
    return (vec4<f32>(q) - 8.0) * b_f16_at(off);
}

// W[row, k..k+4] of a K-quant weight: value e = k % 256 of super-block k / 256 of the row.
fn kq_of(row: u32, k: u32) -> vec4<f32> {
    let sb = row * (p.k / 256u) + (k >> 8u);
    let e = k & 255u;
    let l = e & 31u;
    if (B_FMT == 9u) {
        // Q6_K: ql[128], qh[64], 16 signed scales, d; e = 128h + 32j + l.
        let off = sb * 210u;
        let h = e >> 7u;
        let j = (e >> 5u) & 3u;
        let lo = nibbles(b_u32_at(off + 64u * h + 32u * (j & 1u) + l), 4u * (j >> 1u));
        let hb = (vec4<u32>(b_u32_at(off + 128u + 32u * h + l)) >> (vec4<u32>(0u, 8u, 16u, 24u) + 2u * j)) & vec4<u32>(3u);
        let g = off + 192u + (e >> 4u);
        let sc = kq_i8(b_word(g >> 2u), g & 3u);
        return (vec4<f32>(lo | (hb << vec4<u32>(4u))) - 32.0) * (b_f16_at(off + 208u) * sc);
    }
    // Q4_K (36 words: d and dmin, 3 words of scales, 32 of nibbles) and Q5_K (44: qh's 8 words
    // before the nibbles); sub-block s.
    let s = e >> 5u;
    let w = sb * select(36u, 44u, B_FMT == 8u);
    let dm = unpack2x16float(b_word(w));
    let sm = kq_scale_min(vec3<u32>(b_word(w + 1u), b_word(w + 2u), b_word(w + 3u)), s);
    let qs = w + select(4u, 12u, B_FMT == 8u) + 8u * (s >> 1u) + (l >> 2u);
    var q = nibbles(b_word(qs), 4u * (s & 1u));
    if (B_FMT == 8u) {
        q = q | fifth_bits(b_word(w + 4u + (l >> 2u)), s);
    }
    return vec4<f32>(q) * (dm.x * sm.x) - dm.y * sm.y;
}
