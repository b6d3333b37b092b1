// Token embedding: out[out_row0 + i, c] = table[tokens[tok0 + i], c] · scale for t tokens of width h
// (scale: 1, or Gemma's √h),
// dequantized to f32 from the table's format (FMT): 0 f32, 1 f16, 2 Q8_0, 3 Q4_0, 4 Q4_1, 5 Q5_0,
// 6 Q5_1 (blocks of 32 along a row), 7 Q4_K, 8 Q5_K, 9 Q6_K (super-blocks of 256), in ggml's
// byte layout, read as 32-bit words (kq_scale_min from the common/kquant.wgsl prelude).
//
// The table binding may be a window of rows row0 .. row0 + rows of a larger table (tables over
// the storage-binding limit take one dispatch per window): a token outside the window is left to
// another dispatch. A token past the vocabulary (argmax's 0xffffffff for an all-NaN row) gives a
// NaN row, written by the first window's dispatch, so it cannot pass unseen.
// embed.wgsl and embed_rows.wgsl add the uniform binding and the entry point: one invocation per
// element, striding over the whole output.

struct Params {
    t: u32,
    h: u32,
    row0: u32,
    rows: u32,
    tok0: u32,
    vocab: u32,
    out_row0: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override FMT: u32 = 0u;

fn byte_at(b: u32) -> u32 {
    return (table[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// The f16 at byte offset b (a multiple of 2).
fn f16_at(b: u32) -> f32 {
    return unpack2x16float((table[b >> 2u] >> ((b & 2u) * 8u)) & 0xffffu).x;
}

// Element c of row r (relative to the window).
fn element(r: u32, c: u32) -> f32 {
    if (FMT == 0u) {
        return bitcast<f32>(table[r * p.h + c]);
    }
    if (FMT == 1u) {
        let e = r * p.h + c;
        return unpack2x16float(table[e >> 1u])[e & 1u];
    }
    let block = r * (p.h / 32u) + c / 32u;
    let j = c % 32u;
    if (FMT == 2u) {
        let off = block * 34u;
        let q = bitcast<i32>(byte_at(off + 2u + j) << 24u) >> 24u;
        return f32(q) * f16_at(off);
    }
    let shift = select(0u, 4u, j >= 16u);
    if (FMT == 3u) {
        let off = block * 18u;
        let q = (byte_at(off + 2u + (j & 15u)) >> shift) & 15u;
        return (f32(q) - 8.0) * f16_at(off);
    }
    if (FMT == 4u) {
        let off = block * 20u;
        let q = (byte_at(off + 4u + (j & 15u)) >> shift) & 15u;
        return fma(f32(q), f16_at(off), f16_at(off + 2u));
    }
    if (FMT == 5u || FMT == 6u) {
        // Q5_0: d, qh (bit j: value j's fifth bit), nibbles; Q5_1: d, m, qh, nibbles.
        let off = block * select(22u, 24u, FMT == 6u);
        let qh_at = select(off + 2u, off + 4u, FMT == 6u);
        let hi = (byte_at(qh_at + j / 8u) >> (j % 8u)) & 1u;
        let q = f32(((byte_at(qh_at + 4u + (j & 15u)) >> shift) & 15u) | (hi << 4u));
        if (FMT == 5u) {
            return (q - 16.0) * f16_at(off);
        }
        return fma(q, f16_at(off), f16_at(off + 2u));
    }
    // The K-quants: super-block sb of the row, value e in it.
    let sb = r * (p.h / 256u) + c / 256u;
    let e = c % 256u;
    if (FMT == 9u) {
        // Q6_K: ql[128], qh[64], 16 signed scales, d; e = 128h + 32k + l.
        let off = sb * 210u;
        let h = e / 128u;
        let k = (e % 128u) / 32u;
        let l = e % 32u;
        let lo = (byte_at(off + 64u * h + 32u * (k % 2u) + l) >> (4u * (k / 2u))) & 15u;
        let hb = (byte_at(off + 128u + 32u * h + l) >> (2u * k)) & 3u;
        let sc = f32(bitcast<i32>(byte_at(off + 192u + e / 16u) << 24u) >> 24u);
        return f16_at(off + 208u) * sc * (f32(lo | (hb << 4u)) - 32.0);
    }
    // Q4_K (144 bytes: d, dmin, scales, qs[128]) and Q5_K (176: the same with qh[32] before qs).
    let words = select(36u, 44u, FMT == 8u);
    let w = sb * words;
    let s = e / 32u;
    let l = e % 32u;
    let dm = unpack2x16float(table[w]);
    let sm = kq_scale_min(vec3<u32>(table[w + 1u], table[w + 2u], table[w + 3u]), s);
    let qs = 4u * w + select(16u, 48u, FMT == 8u);
    var q = (byte_at(qs + 32u * (s / 2u) + l) >> (4u * (s % 2u))) & 15u;
    if (FMT == 8u) {
        q = q | (((byte_at(4u * w + 16u + l) >> s) & 1u) << 4u);
    }
    return dm.x * sm.x * f32(q) - dm.y * sm.y;
}
