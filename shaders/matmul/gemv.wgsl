// Decode-path linear: y[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]) for a few rows of x
// (M ≤ MAX_M: one token per sequence, or a small batch). Memory-bound: every weight byte is read
// once, and the work is arranged so that those reads stream.
//
// A workgroup owns ROWS rows of w (outputs n), in ROWS/RPI groups of RPI consecutive rows. The
// T = WG·RPI/ROWS invocations of a group split K between them (split-K inside the workgroup);
// each keeps RPI·MAX_M partial sums in registers, and a tree reduction in workgroup memory adds
// them. Consecutive invocations read consecutive units of a row (8 weights for f32 and f16, one
// 32-weight block for Q8_0 and Q4_0), so loads coalesce on GPUs. RPI > 1 makes one invocation
// reuse each load of x for RPI rows of w: on adapters where every load is costly (llvmpipe runs
// each invocation's loads one by one) that, not the weight bytes, is what bounds the kernel.
//
// Weight formats (W_FMT): 0 f32, 1 f16 (packed pairs, unpack2x16float: works on every adapter),
// and ggml's quantized formats in their byte layout: 2 Q8_0, 3 Q4_0 and 5 Q5_0 (blocks of 32
// along k: an f16 scale, [Q5_0: 4 bytes of fifth bits,] then 32 i8 or 16 bytes of nibbles; 34, 18
// or 22 bytes, so blocks start on 2-byte boundaries; a block is read as the aligned words that
// cover it), 4 Q4_1 and 6 Q5_1 (an f16 scale and an f16 minimum in one word, [fifth bits,] then
// 16 bytes of nibbles: 20 or 24 bytes, whole words), and the K-quants, super-blocks of 256 along
// k: 7 Q4_K and 8 Q5_K (144 and 176 bytes: whole vec4s, read as such), 9 Q6_K (210 bytes, on
// 2-byte boundaries). A unit of a quantized weight is 32 weights: a block, or a K-quant's
// sub-block, whose scale (and minimum) come from its super-block's. x is f32, or f16 pairs when
// X_F16. Accumulation is f32. y is f32.
//
// SWIGLU: x is the fused gate/up projection's output [M, 2K] (gate in columns 0..K, up in
// K..2K) and each x value is silu(gate) · up, computed as it is loaded, so the SwiGLU MLP's down
// projection needs no separate pass (f32 x only).
//
// NORM: x's rows are RMS-normalized on the way in: y[m, n] = r_m · Σ_k x[m, k] · g[k] · w[n, k]
// with r_m = 1 / sqrt(mean_k x[m, k]² + eps) and g the norm's weight (binding 4, f32 [K]). The
// invocations of a group, which read each x value once between them, also sum its square, and
// the split-K reduction adds those up: the norm costs no pass and no extra loads of x (f32 x
// only, not with SWIGLU).
// ACCUM: the result is added to y instead of overwriting it (a residual add: y is the residual
// stream), so the layer's add needs no pass of its own either.
//
// The w binding may be a window of a larger tensor (for tensors over the storage-binding limit):
// it starts at row p.w_row0, and rows are indexed relative to it. Its byte offset is a multiple of
// 256, so the 2-byte block alignment argument above holds within the window too.
//
// Constraints the launcher guarantees: ROWS % RPI == 0; WG·RPI % ROWS == 0 and WG·RPI/ROWS is a
// power of two; WG·RPI·MAX_M ≤ 2048 and RPI·MAX_M ≤ 16; K a whole number of blocks (the tensor's shape); W_VEC
// only when rows of w start on 16-byte boundaries (and a row is whole units of 8: K % 8 == 0 for f32 and f16); X_VEC only
// when K % 8 == 0 (rows of x start on 16-byte boundaries in either format).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // First row of w in this binding, and how many rows this dispatch covers.
    w_row0: u32,
    w_rows: u32,
    has_bias: u32,
    // NORM's epsilon.
    eps: f32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<u32>>;
// The weight binding (1, named b) and its accessors b_word, b_vec4 and b_f16x8 come from a
// prelude: b_packed.wgsl binds 32-bit words (every format; f16 unpacked with unpack2x16float),
// and b_f16.wgsl binds f16 values with shader-f16, for f16 weights on adapters that have it.
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> norm_w: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override W_FMT: u32 = 0u;
override W_VEC: bool = false;
override X_F16: bool = false;
override X_VEC: bool = false;
override SWIGLU: bool = false;
override NORM: bool = false;
override ACCUM: bool = false;
override MAX_M: u32 = 1u;
override WG: u32 = 256u;
override ROWS: u32 = 4u;
override RPI: u32 = 1u;
// Weights per unit of work along k: 8 (f32, f16 rows on 16-byte boundaries), 1 (other f32 and
// f16 rows), 32 (one Q8_0 or Q4_0 block).
override UNIT: u32 = select(select(1u, 8u, W_VEC), 32u, W_FMT >= 2u);

var<workgroup> red: array<f32, 2048>;

fn x_word(i: u32) -> u32 {
    return x[i >> 2u][i & 3u];
}

fn silu_times(g: f32, u: f32) -> f32 {
    return g / (1.0 + exp(-g)) * u;
}

fn x_at(m: u32, k: u32) -> f32 {
    if (SWIGLU) {
        let i = m * 2u * p.k + k;
        return silu_times(bitcast<f32>(x_word(i)), bitcast<f32>(x_word(i + p.k)));
    }
    let i = m * p.k + k;
    if (X_F16) {
        return unpack2x16float(x_word(i >> 1u))[i & 1u];
    }
    return bitcast<f32>(x_word(i));
}

fn f16x8(q: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
        vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)),
    );
}

// x[m, k..k+8], k a multiple of 8.
fn x8(m: u32, k: u32) -> array<vec4<f32>, 2> {
    if (SWIGLU && X_VEC) {
        let i = m * 2u * p.k + k;
        let j = i + p.k;
        let g0 = bitcast<vec4<f32>>(x[i >> 2u]);
        let g1 = bitcast<vec4<f32>>(x[(i >> 2u) + 1u]);
        let u0 = bitcast<vec4<f32>>(x[j >> 2u]);
        let u1 = bitcast<vec4<f32>>(x[(j >> 2u) + 1u]);
        return array<vec4<f32>, 2>(
            g0 / (vec4<f32>(1.0) + exp(-g0)) * u0,
            g1 / (vec4<f32>(1.0) + exp(-g1)) * u1,
        );
    }
    let i = m * p.k + k;
    if (X_VEC) {
        if (X_F16) {
            return f16x8(x[i >> 3u]);
        }
        return array<vec4<f32>, 2>(bitcast<vec4<f32>>(x[i >> 2u]), bitcast<vec4<f32>>(x[(i >> 2u) + 1u]));
    }
    var r: array<vec4<f32>, 2>;
    for (var e = 0u; e < 8u; e = e + 1u) {
        r[e >> 2u][e & 3u] = x_at(m, k + e);
    }
    return r;
}

// Signed bytes of a word, as f32.
fn i8x4(word: u32) -> vec4<f32> {
    let s = bitcast<i32>(word);
    return vec4<f32>(
        f32(extractBits(s, 0u, 8u)),
        f32(extractBits(s, 8u, 8u)),
        f32(extractBits(s, 16u, 8u)),
        f32(extractBits(s, 24u, 8u)),
    );
}

// Unit j of row `row` of w: UNIT weights along k, in order, as vec4s (only the first UNIT/4 —
// for UNIT = 1 the first element — are meaningful), to be multiplied by the scale d. Q4_0's and
// Q5_0's values are returned as stored (0..15, 0..31): unit_dot subtracts their 8 or 16 through
// Σx, once per block; the formats with a minimum (Q4_1, Q5_1, Q4_K, Q5_K) add mn·Σx.
struct Unit {
    v: array<vec4<f32>, 8>,
    d: f32,
    mn: f32,
    // Q6_K: each run of 8's scale (times d).
    sc: vec4<f32>,
}

// The nibbles (0..15) of bytes 0..3 of `word`, each shifted right by `shift` first (masked as
// one word, then unpacked: fewer vector operations on adapters that run them lane by lane).
fn nibbles(word: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(unpack4xU8((word >> shift) & 0x0f0f0f0fu));
}

// Bits `bit`, bit + 1, bit + 2, bit + 3 of `word`, as the fifth bits (16) of four values.
fn fifth4(word: u32, bit: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(word >> bit) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) * 16u);
}

// The 2 words of w's bytes byte .. byte + 8 (byte a multiple of 2), from the 2 aligned words
// at a word boundary, else the 3 that cover them.
fn span2(byte: u32) -> vec2<u32> {
    let a = byte >> 2u;
    let w0 = b_word(a);
    let w1 = b_word(a + 1u);
    if ((byte & 2u) == 0u) {
        return vec2<u32>(w0, w1);
    }
    let w2 = b_word(a + 2u);
    return vec2<u32>((w0 >> 16u) | (w1 << 16u), (w1 >> 16u) | (w2 << 16u));
}

// The 8 words of w's bytes byte .. byte + 32 (byte a multiple of 2), from the 9 aligned words
// that cover them.
fn span8(byte: u32) -> array<u32, 8> {
    let a = byte >> 2u;
    let odd = (byte & 2u) != 0u;
    var wd: array<u32, 9>;
    for (var i = 0u; i < 9u; i = i + 1u) {
        wd[i] = b_word(a + i);
    }
    var out: array<u32, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        out[i] = select(wd[i], (wd[i] >> 16u) | (wd[i + 1u] << 16u), odd);
    }
    return out;
}

fn unit(row: u32, j: u32) -> Unit {
    var u: Unit;
    u.d = 1.0;
    u.mn = 0.0;
    if (W_FMT == 0u) {
        if (W_VEC) {
            let i = row * (p.k / 4u) + 2u * j;
            u.v[0] = bitcast<vec4<f32>>(b_vec4(i));
            u.v[1] = bitcast<vec4<f32>>(b_vec4(i + 1u));
        } else {
            u.v[0].x = bitcast<f32>(b_word(row * p.k + j));
        }
    } else if (W_FMT == 1u) {
        if (W_VEC) {
            let h = b_f16x8(row * (p.k / 8u) + j);
            u.v[0] = h[0];
            u.v[1] = h[1];
        } else {
            let e = row * p.k + j;
            u.v[0].x = unpack2x16float(b_word(e >> 1u))[e & 1u];
        }
    } else if (W_FMT == 4u || W_FMT == 6u) {
        // Q4_1 and Q5_1 blocks are 20 and 24 bytes, so each starts on a word: d and mn, [the
        // fifth bits,] then 4 words of nibbles.
        let q5 = W_FMT == 6u;
        let a = (row * (p.k / 32u) + j) * select(5u, 6u, q5);
        let dm = unpack2x16float(b_word(a));
        u.d = dm.x;
        u.mn = dm.y;
        var qh = 0u;
        if (q5) {
            qh = b_word(a + 1u);
        }
        let qs = a + select(1u, 2u, q5);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let q = b_word(qs + i);
            u.v[i] = nibbles(q, 0u);
            u.v[i + 4u] = nibbles(q, 4u);
            if (q5) {
                u.v[i] = u.v[i] + fifth4(qh, 4u * i);
                u.v[i + 4u] = u.v[i + 4u] + fifth4(qh, 16u + 4u * i);
            }
        }
    } else if (W_FMT == 7u || W_FMT == 8u) {
        // Q4_K (9 vec4s: d and dmin, the scales, 8 of nibbles) and Q5_K (11: the fifth bits'
        // 2 before the nibbles). Sub-blocks 2p and 2p + 1 take the low and the high nibbles of
        // the same 32 bytes; unit s of super-block sb (p = s / 2, r = s % 2) is values
        // 16r .. 16r + 16 of both (x's runs at run_start): one vec4 of nibbles, every bit of it
        // used, and for Q5_K one vec4 of fifth bits (bits 2p, 2p + 1 of qh[16r ..]).
        let q5 = W_FMT == 8u;
        let sb = row * (p.k / 256u) + j / 8u;
        let s = j % 8u;
        let pr = s / 2u;
        let r = s % 2u;
        let v = sb * select(9u, 11u, q5);
        let head = b_vec4(v);
        let dm = unpack2x16float(head.x);
        let sm0 = kq_scale_min(head.yzw, 2u * pr);
        let sm1 = kq_scale_min(head.yzw, 2u * pr + 1u);
        u.d = dm.x * sm0.x;
        u.mn = -(dm.y * sm0.y);
        u.sc = vec4<f32>(dm.x * sm1.x, -(dm.y * sm1.y), 0.0, 0.0);
        let q = b_vec4(v + select(1u, 3u, q5) + 2u * pr + r);
        u.v[0] = nibbles(q.x, 0u);
        u.v[1] = nibbles(q.y, 0u);
        u.v[2] = nibbles(q.z, 0u);
        u.v[3] = nibbles(q.w, 0u);
        u.v[4] = nibbles(q.x, 4u);
        u.v[5] = nibbles(q.y, 4u);
        u.v[6] = nibbles(q.z, 4u);
        u.v[7] = nibbles(q.w, 4u);
        if (q5) {
            let hv = b_vec4(v + 1u + r);
            let hw = array<u32, 4>(hv.x, hv.y, hv.z, hv.w);
            for (var i = 0u; i < 4u; i = i + 1u) {
                let w4 = vec4<u32>(hw[i]) >> vec4<u32>(0u, 8u, 16u, 24u);
                let b0 = (w4 >> vec4<u32>(2u * pr)) & vec4<u32>(1u);
                let b1 = (w4 >> vec4<u32>(2u * pr + 1u)) & vec4<u32>(1u);
                u.v[i] = u.v[i] + vec4<f32>(b0 * 16u);
                u.v[i + 4u] = u.v[i + 4u] + vec4<f32>(b1 * 16u);
            }
        }
    } else if (W_FMT == 9u) {
        // Q6_K (210 bytes: ql[128], qh[64], 16 signed scales, d). Its value 128h + 32k + l
        // takes the low (k < 2) or high nibble of ql[64h + 32(k % 2) + l], bits 2k, 2k + 1 of
        // qh[32h + l] and scale (128h + 32k + l) / 16. Unit s of super-block sb (h = s / 4,
        // q = s % 4) is the four runs of 8 values l = 8q .. 8q + 8 of k = 0, 1, 2, 3 (x's runs
        // at run_start): together they use every bit of 8 bytes of ql at 64h + 8q, 8 at
        // 64h + 32 + 8q and 8 of qh at 32h + 8q, so no byte is loaded for one nibble or bit
        // pair of it alone. A super-block starts on a word every other one (210 = 4·52 + 2):
        // there each 8 bytes are 2 words, else 3.
        let sb = row * (p.k / 256u) + j / 8u;
        let s = j % 8u;
        let h = s / 4u;
        let q = s % 4u;
        let off = sb * 210u;
        let a = span2(off + 64u * h + 8u * q);
        let b = span2(off + 64u * h + 32u + 8u * q);
        let hb = span2(off + 128u + 32u * h + 8u * q);
        // Scales 8h + 2k + q / 2 for k = 0..3: bytes q / 2, q / 2 + 2, q / 2 + 4, q / 2 + 6 of
        // the 8 at 192 + 8h.
        let sw = span2(off + 192u + 8u * h);
        let sh = 8u * (q / 2u);
        let d = b_f16_at(off + 208u);
        u.sc = d * vec4<f32>(
            f32(extractBits(bitcast<i32>(sw.x), sh, 8u)),
            f32(extractBits(bitcast<i32>(sw.x), 16u + sh, 8u)),
            f32(extractBits(bitcast<i32>(sw.y), sh, 8u)),
            f32(extractBits(bitcast<i32>(sw.y), 16u + sh, 8u)),
        );
        let lo = array<u32, 4>(a.x, a.y, b.x, b.y);
        let hi = array<u32, 2>(hb.x, hb.y);
        for (var c = 0u; c < 4u; c = c + 1u) {
            for (var i = 0u; i < 2u; i = i + 1u) {
                let l4 = (lo[2u * (c % 2u) + i] >> (4u * (c / 2u))) & 0x0f0f0f0fu;
                let h2 = ((hi[i] >> (2u * c)) & 0x03030303u) << 4u;
                // Each byte (0..63) less 32, with no borrow between bytes: signed bytes.
                u.v[2u * c + i] = vec4<f32>(unpack4xI8((((l4 | h2) ^ 0x80808080u) - 0x20202020u) ^ 0x80808080u));
            }
        }
    } else {
        // Q8_0, Q4_0, Q5_0: the block's bytes [off, off + size) lie in the aligned words
        // a .. a + data_words; its f16 scale is the low or high half of word a, and its data
        // starts at byte off + 2.
        let data_words = select(select(4u, 5u, W_FMT == 5u), 8u, W_FMT == 2u);
        let off = (row * (p.k / 32u) + j) * (2u + 4u * data_words);
        let a = off >> 2u;
        let odd = (off & 2u) != 0u;
        var wd: array<u32, 9>;
        for (var i = 0u; i <= data_words; i = i + 1u) {
            wd[i] = b_word(a + i);
        }
        u.d = unpack2x16float(select(wd[0] & 0xffffu, wd[0] >> 16u, odd)).x;
        var data: array<u32, 8>;
        for (var i = 0u; i < data_words; i = i + 1u) {
            data[i] = select((wd[i] >> 16u) | (wd[i + 1u] << 16u), wd[i + 1u], odd);
        }
        if (W_FMT == 2u) {
            for (var i = 0u; i < 8u; i = i + 1u) {
                u.v[i] = i8x4(data[i]);
            }
        } else if (W_FMT == 5u) {
            // data[0] is qh; data[1..5] the nibbles.
            for (var i = 0u; i < 4u; i = i + 1u) {
                u.v[i] = nibbles(data[i + 1u], 0u) + fifth4(data[0], 4u * i);
                u.v[i + 4u] = nibbles(data[i + 1u], 4u) + fifth4(data[0], 16u + 4u * i);
            }
        } else {
            for (var i = 0u; i < 4u; i = i + 1u) {
                u.v[i] = nibbles(data[i], 0u);
                u.v[i + 4u] = nibbles(data[i], 4u);
            }
        }
    }
    return u;
}

// Where run c (8 values) of unit j starts along k: the unit's 32 consecutive values, except
// Q6_K's units, four runs of 8 spaced 32 apart (see unit()).
fn run_start(j: u32, c: u32) -> u32 {
    if (W_FMT == 7u || W_FMT == 8u) {
        // Q4_K, Q5_K: values 16r .. 16r + 16 of sub-blocks 2p and 2p + 1 (s = 2p + r).
        let s = j % 8u;
        return 256u * (j / 8u) + 64u * (s / 2u) + 32u * (c / 2u) + 16u * (s % 2u) + 8u * (c % 2u);
    }
    if (W_FMT == 9u) {
        let s = j % 8u;
        return 256u * (j / 8u) + 128u * (s / 4u) + 8u * (s % 4u) + 32u * c;
    }
    return j * UNIT + 8u * c;
}

// Unit j of row m of x, laid out as unit() lays out w's.
fn x_unit(m: u32, j: u32) -> array<vec4<f32>, 8> {
    var u: array<vec4<f32>, 8>;
    if (UNIT == 1u) {
        u[0].x = x_at(m, j);
    } else {
        for (var c = 0u; c < UNIT / 8u; c = c + 1u) {
            let h = x8(m, run_start(j, c));
            u[2u * c] = h[0];
            u[2u * c + 1u] = h[1];
        }
    }
    return u;
}

// NORM's weights for unit j, laid out as x_unit lays out x.
fn g_unit(j: u32) -> array<vec4<f32>, 8> {
    var u: array<vec4<f32>, 8>;
    if (UNIT == 1u) {
        u[0].x = norm_w[j];
    } else {
        for (var c = 0u; c < UNIT / 4u; c = c + 1u) {
            let k = run_start(j, c / 2u) + 4u * (c % 2u);
            u[c] = vec4<f32>(norm_w[k], norm_w[k + 1u], norm_w[k + 2u], norm_w[k + 3u]);
        }
    }
    return u;
}

// NORM: the sum of the squares of x's unit b (only its meaningful elements are nonzero).
fn squares(b: array<vec4<f32>, 8>) -> f32 {
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < (UNIT + 3u) / 4u; c = c + 1u) {
        s = fma(b[c], b[c], s);
    }
    return s.x + s.y + s.z + s.w;
}

// NORM: x's unit b times the norm's weights g.
fn times(b: array<vec4<f32>, 8>, g: array<vec4<f32>, 8>) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var c = 0u; c < (UNIT + 3u) / 4u; c = c + 1u) {
        out[c] = b[c] * g[c];
    }
    return out;
}

// Σ over one unit of x's values, which the formats with an offset or a minimum need (Q4_0's
// weights are d·(nibble − 8), Q5_0's d·(q − 16), Q4_1's and Q5_1's d·q + mn; Q4_K and Q5_K
// sum their two halves in unit_dot).
fn x_sum(b: array<vec4<f32>, 8>) -> f32 {
    var s = vec4<f32>(0.0);
    if (W_FMT >= 3u && W_FMT <= 6u) {
        for (var c = 0u; c < 8u; c = c + 1u) {
            s = s + b[c];
        }
    }
    return s.x + s.y + s.z + s.w;
}

// Σ over one unit of w·x, given x's unit and its x_sum.
fn unit_dot(a: Unit, b: array<vec4<f32>, 8>, b_sum: f32) -> f32 {
    if (UNIT == 1u) {
        return a.v[0].x * b[0].x;
    }
    if (W_FMT == 9u) {
        // Q6_K: run c (vec4s 2c, 2c + 1) under its own scale.
        var t = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c = c + 1u) {
            let r = fma(a.v[2u * c], b[2u * c], a.v[2u * c + 1u] * b[2u * c + 1u]);
            t[c] = r.x + r.y + r.z + r.w;
        }
        return dot(t, a.sc);
    }
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < UNIT / 4u; c = c + 1u) {
        s = fma(a.v[c], b[c], s);
    }
    var t = s.x + s.y + s.z + s.w;
    if (W_FMT == 3u) {
        t = t - 8.0 * b_sum;
    }
    if (W_FMT == 5u) {
        t = t - 16.0 * b_sum;
    }
    if (W_FMT == 7u || W_FMT == 8u) {
        // Q4_K, Q5_K: two sub-blocks' halves, each with its scale and minimum.
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var x0 = vec4<f32>(0.0);
        var x1 = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c = c + 1u) {
            s0 = fma(a.v[c], b[c], s0);
            s1 = fma(a.v[c + 4u], b[c + 4u], s1);
            x0 = x0 + b[c];
            x1 = x1 + b[c + 4u];
        }
        let h = vec4<f32>(s0.x + s0.y + s0.z + s0.w, x0.x + x0.y + x0.z + x0.w, s1.x + s1.y + s1.z + s1.w, x1.x + x1.y + x1.z + x1.w);
        return dot(h, vec4<f32>(a.d, a.mn, a.sc.x, a.sc.y));
    }
    if (W_FMT == 4u || W_FMT == 6u) {
        return fma(a.d, t, a.mn * b_sum);
    }
    return a.d * t;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let threads = WG * RPI / ROWS;
    let g = lid / threads;
    let t = lid % threads;
    // This invocation's rows, relative to the window: row0 .. row0 + RPI. Rows past the last one
    // are read as the last one (uniform control flow, in-bounds loads) and never stored.
    let row0 = (wid.y * nwg.x + wid.x) * ROWS + g * RPI;
    let rows_here = min(p.w_rows, p.n - min(p.n, p.w_row0));
    let last = max(rows_here, 1u) - 1u;

    var acc: array<f32, 16>; // acc[r · MAX_M + m]
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = 0.0;
    }

    // NORM: this invocation's share of each row of x's squares.
    var ss: array<f32, 16>;
    for (var m = 0u; m < 16u; m = m + 1u) {
        ss[m] = 0.0;
    }

    let units = p.k / UNIT;
    for (var j = t; j < units; j = j + threads) {
        var g: array<vec4<f32>, 8>;
        if (NORM) {
            g = g_unit(j);
        }
        if (RPI == 1u) {
            // One row: its unit stays in registers while each row of x is read.
            let u = unit(min(row0, last), j);
            for (var m = 0u; m < MAX_M; m = m + 1u) {
                if (m < p.m) {
                    var xu = x_unit(m, j);
                    if (NORM) {
                        ss[m] = ss[m] + squares(xu);
                        xu = times(xu, g);
                    }
                    acc[m] = acc[m] + unit_dot(u, xu, x_sum(xu));
                }
            }
        } else {
            // Several rows (then MAX_M ≤ 8): x's units stay in registers, read once for all rows.
            var xs: array<array<vec4<f32>, 8>, 8>;
            var sums: array<f32, 8>;
            for (var m = 0u; m < MAX_M; m = m + 1u) {
                if (m < p.m) {
                    xs[m] = x_unit(m, j);
                    if (NORM) {
                        ss[m] = ss[m] + squares(xs[m]);
                        xs[m] = times(xs[m], g);
                    }
                    sums[m] = x_sum(xs[m]);
                }
            }
            for (var r = 0u; r < RPI; r = r + 1u) {
                let u = unit(min(row0 + r, last), j);
                for (var m = 0u; m < MAX_M; m = m + 1u) {
                    acc[r * MAX_M + m] = acc[r * MAX_M + m] + unit_dot(u, xs[m], sums[m]);
                }
            }
        }
    }

    if (threads > 1u) {
        for (var i = 0u; i < RPI * MAX_M; i = i + 1u) {
            red[i * WG + lid] = acc[i];
        }
        workgroupBarrier();
        for (var s = threads / 2u; s > 0u; s = s >> 1u) {
            if (t < s) {
                for (var i = 0u; i < RPI * MAX_M; i = i + 1u) {
                    red[i * WG + lid] = red[i * WG + lid] + red[i * WG + lid + s];
                }
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < RPI * MAX_M; i = i + 1u) {
            acc[i] = red[i * WG + lid];
        }
        if (NORM) {
            // The group's squares, added up the same way (MAX_M ≤ RPI·MAX_M slots).
            workgroupBarrier();
            for (var m = 0u; m < MAX_M; m = m + 1u) {
                red[m * WG + lid] = ss[m];
            }
            workgroupBarrier();
            for (var s = threads / 2u; s > 0u; s = s >> 1u) {
                if (t < s) {
                    for (var m = 0u; m < MAX_M; m = m + 1u) {
                        red[m * WG + lid] = red[m * WG + lid] + red[m * WG + lid + s];
                    }
                }
                workgroupBarrier();
            }
            for (var m = 0u; m < MAX_M; m = m + 1u) {
                ss[m] = red[m * WG + lid];
            }
        }
    }
    var inv: array<f32, 16>;
    if (NORM) {
        for (var m = 0u; m < MAX_M; m = m + 1u) {
            inv[m] = inverseSqrt(ss[m] / f32(p.k) + p.eps);
        }
    }
    if (t == 0u) {
        for (var r = 0u; r < RPI; r = r + 1u) {
            let local_row = row0 + r;
            let n = p.w_row0 + local_row;
            if (local_row < rows_here) {
                var b = 0.0;
                if (p.has_bias != 0u) {
                    b = bias[n];
                }
                for (var m = 0u; m < MAX_M; m = m + 1u) {
                    if (m < p.m) {
                        var v = acc[r * MAX_M + m];
                        if (NORM) {
                            v = v * inv[m];
                        }
                        v = v + b;
                        if (ACCUM) {
                            v = v + y[m * p.n + n];
                        }
                        y[m * p.n + n] = v;
                    }
                }
            }
        }
    }
}
