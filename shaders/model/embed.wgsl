// Token embedding: out[out_row0 + i, c] = table[tokens[tok0 + i], c] for t tokens of width h,
// dequantized to f32 from the table's format (FMT): 0 f32, 1 f16, 2 Q8_0, 3 Q4_0, 4 Q4_1, in
// ggml's byte layout (blocks of 32 along a row), read as 32-bit words.
//
// The table binding may be a window of rows row0 .. row0 + rows of a larger table (tables over
// the storage-binding limit take one dispatch per window): a token outside the window is left to
// another dispatch. A token past the vocabulary (argmax's 0xffffffff for an all-NaN row) gives a
// NaN row, written by the first window's dispatch, so it cannot pass unseen.
// One invocation per element, striding over the whole output.

struct Params {
    t: u32,
    h: u32,
    row0: u32,
    rows: u32,
    tok0: u32,
    vocab: u32,
    out_row0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

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
    let off = block * 20u;
    let q = (byte_at(off + 4u + (j & 15u)) >> shift) & 15u;
    return fma(f32(q), f16_at(off), f16_at(off + 2u));
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    for (var e = gid.x; e < p.t * p.h; e = e + stride) {
        let i = e / p.h;
        let c = e % p.h;
        let tok = tokens[p.tok0 + i];
        let at = p.out_row0 * p.h + e;
        if (tok >= p.vocab) {
            if (p.row0 == 0u) {
                out[at] = bitcast<f32>(0x7fc00000u);
            }
        } else if (tok >= p.row0 && tok - p.row0 < p.rows) {
            out[at] = element(tok - p.row0, c);
        }
    }
}
