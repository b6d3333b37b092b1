// Decode-path linear: y[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]) for a few rows of x
// (M ≤ MAX_M: one token per sequence, or a small batch). Memory-bound: every weight byte is read
// once, and the work is arranged so that those reads stream.
//
// A workgroup owns ROWS rows of w (outputs n); the T = WG/ROWS invocations of a row split K
// between them (split-K inside the workgroup), each keeping MAX_M partial sums in registers, and a
// tree reduction in workgroup memory adds them. Consecutive invocations read consecutive 16-byte
// chunks (f32, f16) or consecutive blocks (Q8_0, Q4_0) of the row, so loads coalesce.
//
// Weight formats (W_FMT): 0 f32, 1 f16 (packed pairs, unpack2x16float: works on every adapter),
// 2 Q8_0 and 3 Q4_0 in ggml's byte layout (blocks of 32 along k: an f16 scale, then 32 i8 or 16
// bytes of nibbles; 34 or 18 bytes, so blocks start on 2-byte boundaries). x is f32, or f16 pairs
// when X_F16. Accumulation is f32. y is f32.
//
// The w binding may be a window of a larger tensor (for tensors over the storage-binding limit):
// it starts at row p.w_row0, and rows are indexed relative to it. Its byte offset is a multiple of
// 256, so the 2-byte block alignment argument above holds within the window too.
//
// Constraints the launcher guarantees: WG % ROWS == 0 and WG/ROWS is a power of two;
// WG·MAX_M ≤ 2048; K % 32 == 0 for Q8_0 and Q4_0; W_VEC only when rows of w start on 16-byte
// boundaries (f32: K % 4 == 0; f16: K % 8 == 0).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // First row of w in this binding, and how many rows this dispatch covers.
    w_row0: u32,
    w_rows: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

override W_FMT: u32 = 0u;
override W_VEC: bool = false;
override X_F16: bool = false;
override MAX_M: u32 = 1u;
override WG: u32 = 256u;
override ROWS: u32 = 4u;

var<workgroup> red: array<f32, 2048>;

fn w_word(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}

// A little-endian u32 at a byte offset that is a multiple of 2.
fn w_u32_at(byte: u32) -> u32 {
    let i = byte >> 2u;
    let lo = w_word(i);
    if ((byte & 2u) == 0u) {
        return lo;
    }
    return (lo >> 16u) | (w_word(i + 1u) << 16u);
}

// The f16 at a byte offset that is a multiple of 2, as f32.
fn w_f16_at(byte: u32) -> f32 {
    let word = w_word(byte >> 2u);
    let bits = select(word & 0xffffu, word >> 16u, (byte & 2u) != 0u);
    return unpack2x16float(bits).x;
}

fn x_at(m: u32, k: u32) -> f32 {
    let i = m * p.k + k;
    if (X_F16) {
        return unpack2x16float(x[i >> 1u])[i & 1u];
    }
    return bitcast<f32>(x[i]);
}

// x[m, k..k+4], k a multiple of 4 (and rows of x start on an even element for f16).
fn x4(m: u32, k: u32) -> vec4<f32> {
    let i = m * p.k + k;
    if (X_F16) {
        let j = i >> 1u;
        return vec4<f32>(unpack2x16float(x[j]), unpack2x16float(x[j + 1u]));
    }
    return vec4<f32>(
        bitcast<f32>(x[i]),
        bitcast<f32>(x[i + 1u]),
        bitcast<f32>(x[i + 2u]),
        bitcast<f32>(x[i + 3u]),
    );
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

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let threads = WG / ROWS;
    let r = lid / threads;
    let t = lid % threads;
    let local_row = (wid.y * nwg.x + wid.x) * ROWS + r;
    let n = p.w_row0 + local_row;
    let live = local_row < p.w_rows && n < p.n;

    var acc: array<f32, 16>;
    for (var m = 0u; m < 16u; m = m + 1u) {
        acc[m] = 0.0;
    }

    if (live) {
        if (W_FMT == 0u && W_VEC) {
            let base = local_row * (p.k / 4u);
            for (var j = t; j < p.k / 4u; j = j + threads) {
                let wv = bitcast<vec4<f32>>(w[base + j]);
                for (var m = 0u; m < MAX_M; m = m + 1u) {
                    if (m < p.m) {
                        acc[m] = acc[m] + dot(wv, x4(m, j * 4u));
                    }
                }
            }
        } else if (W_FMT == 0u) {
            let base = local_row * p.k;
            for (var k = t; k < p.k; k = k + threads) {
                let wv = bitcast<f32>(w_word(base + k));
                for (var m = 0u; m < MAX_M; m = m + 1u) {
                    if (m < p.m) {
                        acc[m] = fma(wv, x_at(m, k), acc[m]);
                    }
                }
            }
        } else if (W_FMT == 1u && W_VEC) {
            let base = local_row * (p.k / 8u);
            for (var j = t; j < p.k / 8u; j = j + threads) {
                let q = w[base + j];
                let w0 = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
                let w1 = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
                for (var m = 0u; m < MAX_M; m = m + 1u) {
                    if (m < p.m) {
                        acc[m] = acc[m] + dot(w0, x4(m, j * 8u)) + dot(w1, x4(m, j * 8u + 4u));
                    }
                }
            }
        } else if (W_FMT == 1u) {
            let base = local_row * p.k;
            for (var k = t; k < p.k; k = k + threads) {
                let e = base + k;
                let wv = unpack2x16float(w_word(e >> 1u))[e & 1u];
                for (var m = 0u; m < MAX_M; m = m + 1u) {
                    if (m < p.m) {
                        acc[m] = fma(wv, x_at(m, k), acc[m]);
                    }
                }
            }
        } else if (W_FMT == 2u) {
            let blocks = p.k / 32u;
            for (var b = t; b < blocks; b = b + threads) {
                let off = (local_row * blocks + b) * 34u;
                let d = w_f16_at(off);
                for (var i = 0u; i < 8u; i = i + 1u) {
                    let wv = i8x4(w_u32_at(off + 2u + 4u * i)) * d;
                    let k = b * 32u + 4u * i;
                    for (var m = 0u; m < MAX_M; m = m + 1u) {
                        if (m < p.m) {
                            acc[m] = acc[m] + dot(wv, x4(m, k));
                        }
                    }
                }
            }
        } else {
            let blocks = p.k / 32u;
            for (var b = t; b < blocks; b = b + threads) {
                let off = (local_row * blocks + b) * 18u;
                let d = w_f16_at(off);
                for (var i = 0u; i < 4u; i = i + 1u) {
                    let q = vec4<u32>(w_u32_at(off + 2u + 4u * i)) >> vec4<u32>(0u, 8u, 16u, 24u);
                    let lo = (vec4<f32>(q & vec4<u32>(15u)) - 8.0) * d;
                    let hi = (vec4<f32>((q >> vec4<u32>(4u)) & vec4<u32>(15u)) - 8.0) * d;
                    let k = b * 32u + 4u * i;
                    for (var m = 0u; m < MAX_M; m = m + 1u) {
                        if (m < p.m) {
                            acc[m] = acc[m] + dot(lo, x4(m, k)) + dot(hi, x4(m, k + 16u));
                        }
                    }
                }
            }
        }
    }

    for (var m = 0u; m < MAX_M; m = m + 1u) {
        red[m * WG + lid] = acc[m];
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
    if (t == 0u && live) {
        var b = 0.0;
        if (p.has_bias != 0u) {
            b = bias[n];
        }
        for (var m = 0u; m < MAX_M; m = m + 1u) {
            if (m < p.m) {
                y[m * p.n + n] = red[m * WG + lid] + b;
            }
        }
    }
}
