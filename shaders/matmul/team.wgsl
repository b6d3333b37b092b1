// Matmul for adapters whose subgroups are exactly TEAM = 8 invocations, one subgroup per
// workgroup: C[M,N] = A[M,K] · B[K,N] (+ bias[N]), or with B_TRANS C = A · Wᵀ for W[N,K]. f32
// accumulation; C is f32. Written for CPU adapters (llvmpipe), where every load from memory —
// device or workgroup — runs lane by lane, while arithmetic, and subgroup shuffles from a
// constant lane, run on all lanes at once: so there is no staging in workgroup memory, and A
// reaches the lanes through shuffles rather than loads.
//
// A workgroup computes a TM×(TEAM·TN) tile of C; lane l owns TN (4 or 8) consecutive columns in
// every row: TM·TN accumulators. Per step of 4 along K, lane l loads rows l, l + 8, l + 16, l + 24
// of the A tile (one vec4 each: 4 values of k), and its 4×TN values of B (vec4s along N, or along
// K for Wᵀ, transposed in registers); then row i's 4 values of A come from lane i % 8 by
// subgroupShuffle and feed 4·TN FMAs in every lane. Loads per FMA: 1/TM for B, 1/(8·TN) for A.
//
// The rows are written out one by one below rather than as a loop: a loop over 32 rows with
// this body is too large for NIR to unroll, and then the accumulators become an array indexed at
// run time — memory, read and written lane by lane — which made the kernel 3–4× slower on
// llvmpipe. Every index into acc is a constant, so acc lives in registers. Rows ≥ TM compile
// away (TM is a pipeline constant).
//
// Formats: A is f32, or f16 pairs (A_F16). B (B_FMT) is 0 f32, 1 f16 pairs, 2..9 the
// quantized formats of operands.wgsl, only with B_TRANS, dequantized 4 weights at a time by operands.wgsl's q4_of.
// Buffers are bound as arrays of vec4 (the runtime pads every tensor to 16 bytes). A_VEC4 (K % 4 == 0: rows of A start
// on 4-element boundaries) and B_VEC4 (rows of B — of W with B_TRANS — start on 4-element
// boundaries) load four elements at a time; otherwise one by one. Every load and store is
// bounds-checked, so any M, N, K ≥ 1 is valid. A leading batch dimension runs as workgroup_id.z.
// The B binding may be a window of W's rows (B_TRANS, over the storage-binding limit): it holds
// columns p.b_col0 .. p.b_col0 + p.b_cols of C, and the dispatch covers only those.
//
// Constraints the launcher guarantees: subgroup size exactly TEAM and WG = TEAM; TM is 8, 16, 24
// or 32; TN is 4 or 8; p.b_col0 % 4 == 0.

// The parameter block and the bindings of A, bias, C and p come from tile_io.wgsl; B (binding
// 1) and its accessors from the b_packed.wgsl prelude.

override TM: u32 = 32u;
override TN: u32 = 4u;
override A_F16: bool = false;
override A_VEC4: bool = false;
override B_FMT: u32 = 0u;
override B_TRANS: bool = false;
override B_VEC4: bool = false;
override C_VEC4: bool = false;

const TEAM: u32 = 8u;

// a1, a4, b1, b4 and q4_of: operands.wgsl, which the index appends.

// 4 consecutive elements of a row of `len` elements starting at element `row`, from `at` on,
// zero past the row's end; `vec` when rows start on 4-element boundaries and len % 4 == 0.
fn row4_a(row: u32, at: u32, len: u32) -> vec4<f32> {
    if (A_VEC4) {
        return a4(row + at);
    }
    var v = vec4<f32>(0.0);
    for (var x = 0u; x < 4u; x = x + 1u) {
        if (at + x < len) {
            v[x] = a1(row + at + x);
        }
    }
    return v;
}

fn row4_b(row: u32, at: u32, len: u32) -> vec4<f32> {
    if (B_VEC4 && at + 4u <= len) {
        return b4(row + at);
    }
    var v = vec4<f32>(0.0);
    for (var x = 0u; x < 4u; x = x + 1u) {
        if (at + x < len) {
            v[x] = b1(row + at + x);
        }
    }
    return v;
}

// B[k + kk, col .. col + 4] for kk < 4 (col relative to the window), zero outside B.
fn b_block(b_base: u32, k: u32, col: u32) -> array<vec4<f32>, 4> {
    var bv: array<vec4<f32>, 4>;
    if (B_TRANS) {
        // W[col + n, k..k+4] for each of the 4 columns, transposed in registers.
        var wt: array<vec4<f32>, 4>;
        for (var n = 0u; n < 4u; n = n + 1u) {
            wt[n] = vec4<f32>(0.0);
            if (col + n < p.b_cols) {
                if (B_FMT >= 2u) {
                    wt[n] = q4_of(col + n, k);
                } else {
                    wt[n] = row4_b(b_base + (col + n) * p.k, k, p.k);
                }
            }
        }
        for (var kk = 0u; kk < 4u; kk = kk + 1u) {
            bv[kk] = vec4<f32>(wt[0][kk], wt[1][kk], wt[2][kk], wt[3][kk]);
        }
    } else {
        for (var kk = 0u; kk < 4u; kk = kk + 1u) {
            bv[kk] = vec4<f32>(0.0);
            if (k + kk < p.k && col < p.b_cols) {
                bv[kk] = row4_b(b_base + (k + kk) * p.b_cols, col, p.b_cols);
            }
        }
    }
    return bv;
}

// acc + a ⊗ b over 4 steps of k: a holds A[row, k..k+4], b[kk] B[k + kk, 4 columns].
fn rank4(acc: vec4<f32>, a: vec4<f32>, b: array<vec4<f32>, 4>) -> vec4<f32> {
    var r = fma(vec4<f32>(a.x), b[0], acc);
    r = fma(vec4<f32>(a.y), b[1], r);
    r = fma(vec4<f32>(a.z), b[2], r);
    return fma(vec4<f32>(a.w), b[3], r);
}

// C[row0 + i, col .. col + 4] (col relative to the window) = v (+ bias), within bounds.
fn store4(i: u32, row0: u32, col: u32, c_base: u32, v0: vec4<f32>) {
    let row = row0 + i;
    if (i >= TM || row >= p.m || col >= p.b_cols) {
        return;
    }
    let gcol = p.b_col0 + col;
    var v = v0;
    if (C_VEC4 && col + 4u <= p.b_cols) {
        if (p.has_bias != 0u) {
            v = v + vec4<f32>(bias[gcol], bias[gcol + 1u], bias[gcol + 2u], bias[gcol + 3u]);
        }
        c[(c_base + row * p.n + gcol) >> 2u] = v;
    } else {
        for (var jj = 0u; jj < 4u; jj = jj + 1u) {
            if (col + jj < p.b_cols) {
                var e = v[jj];
                if (p.has_bias != 0u) {
                    e = e + bias[gcol + jj];
                }
                let o = c_base + row * p.n + gcol + jj;
                c[o >> 2u][o & 3u] = e;
            }
        }
    }
}

@compute @workgroup_size(8, 1, 1)
fn main(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    // Workgroups run row tile by row tile down one strip of columns (x), so consecutive ones
    // share that strip of B while it is in cache.
    let row0 = wid.x * TM;
    // This lane's first column, relative to the window.
    let col0 = wid.y * (TEAM * TN) + lane * TN;
    let a_base = wid.z * p.a_bs;
    let b_base = wid.z * p.b_bs;
    let c_base = wid.z * p.c_bs;

    // acc[i]: row row0 + i, columns col0 .. col0 + 4; hi[i]: columns col0 + 4 .. col0 + 8 (TN 8).
    var acc = array<vec4<f32>, 32>();
    var hi = array<vec4<f32>, 32>();

    for (var k = 0u; k < p.k; k = k + 4u) {
        // av[s]: A[row0 + lane + 8s, k..k+4].
        var av: array<vec4<f32>, 4>;
        for (var s = 0u; s < 4u; s = s + 1u) {
            av[s] = vec4<f32>(0.0);
            let r = row0 + lane + 8u * s;
            if (s < TM / 8u && r < p.m) {
                av[s] = row4_a(a_base + r * p.k, k, p.k);
            }
        }
        let bv = b_block(b_base, k, col0);
        var bh: array<vec4<f32>, 4>;
        if (TN == 8u) {
            bh = b_block(b_base, k, col0 + 4u);
        }
        {
            let a0 = subgroupShuffle(av[0], 0u);
            acc[0] = rank4(acc[0], a0, bv);
            if (TN == 8u) {
                hi[0] = rank4(hi[0], a0, bh);
            }
            let a1 = subgroupShuffle(av[0], 1u);
            acc[1] = rank4(acc[1], a1, bv);
            if (TN == 8u) {
                hi[1] = rank4(hi[1], a1, bh);
            }
            let a2 = subgroupShuffle(av[0], 2u);
            acc[2] = rank4(acc[2], a2, bv);
            if (TN == 8u) {
                hi[2] = rank4(hi[2], a2, bh);
            }
            let a3 = subgroupShuffle(av[0], 3u);
            acc[3] = rank4(acc[3], a3, bv);
            if (TN == 8u) {
                hi[3] = rank4(hi[3], a3, bh);
            }
            let a4 = subgroupShuffle(av[0], 4u);
            acc[4] = rank4(acc[4], a4, bv);
            if (TN == 8u) {
                hi[4] = rank4(hi[4], a4, bh);
            }
            let a5 = subgroupShuffle(av[0], 5u);
            acc[5] = rank4(acc[5], a5, bv);
            if (TN == 8u) {
                hi[5] = rank4(hi[5], a5, bh);
            }
            let a6 = subgroupShuffle(av[0], 6u);
            acc[6] = rank4(acc[6], a6, bv);
            if (TN == 8u) {
                hi[6] = rank4(hi[6], a6, bh);
            }
            let a7 = subgroupShuffle(av[0], 7u);
            acc[7] = rank4(acc[7], a7, bv);
            if (TN == 8u) {
                hi[7] = rank4(hi[7], a7, bh);
            }
        }
        if (TM > 8u) {
            let a8 = subgroupShuffle(av[1], 0u);
            acc[8] = rank4(acc[8], a8, bv);
            if (TN == 8u) {
                hi[8] = rank4(hi[8], a8, bh);
            }
            let a9 = subgroupShuffle(av[1], 1u);
            acc[9] = rank4(acc[9], a9, bv);
            if (TN == 8u) {
                hi[9] = rank4(hi[9], a9, bh);
            }
            let a10 = subgroupShuffle(av[1], 2u);
            acc[10] = rank4(acc[10], a10, bv);
            if (TN == 8u) {
                hi[10] = rank4(hi[10], a10, bh);
            }
            let a11 = subgroupShuffle(av[1], 3u);
            acc[11] = rank4(acc[11], a11, bv);
            if (TN == 8u) {
                hi[11] = rank4(hi[11], a11, bh);
            }
            let a12 = subgroupShuffle(av[1], 4u);
            acc[12] = rank4(acc[12], a12, bv);
            if (TN == 8u) {
                hi[12] = rank4(hi[12], a12, bh);
            }
            let a13 = subgroupShuffle(av[1], 5u);
            acc[13] = rank4(acc[13], a13, bv);
            if (TN == 8u) {
                hi[13] = rank4(hi[13], a13, bh);
            }
            let a14 = subgroupShuffle(av[1], 6u);
            acc[14] = rank4(acc[14], a14, bv);
            if (TN == 8u) {
                hi[14] = rank4(hi[14], a14, bh);
            }
            let a15 = subgroupShuffle(av[1], 7u);
            acc[15] = rank4(acc[15], a15, bv);
            if (TN == 8u) {
                hi[15] = rank4(hi[15], a15, bh);
            }
        }
        if (TM > 16u) {
            let a16 = subgroupShuffle(av[2], 0u);
            acc[16] = rank4(acc[16], a16, bv);
            if (TN == 8u) {
                hi[16] = rank4(hi[16], a16, bh);
            }
            let a17 = subgroupShuffle(av[2], 1u);
            acc[17] = rank4(acc[17], a17, bv);
            if (TN == 8u) {
                hi[17] = rank4(hi[17], a17, bh);
            }
            let a18 = subgroupShuffle(av[2], 2u);
            acc[18] = rank4(acc[18], a18, bv);
            if (TN == 8u) {
                hi[18] = rank4(hi[18], a18, bh);
            }
            let a19 = subgroupShuffle(av[2], 3u);
            acc[19] = rank4(acc[19], a19, bv);
            if (TN == 8u) {
                hi[19] = rank4(hi[19], a19, bh);
            }
            let a20 = subgroupShuffle(av[2], 4u);
            acc[20] = rank4(acc[20], a20, bv);
            if (TN == 8u) {
                hi[20] = rank4(hi[20], a20, bh);
            }
            let a21 = subgroupShuffle(av[2], 5u);
            acc[21] = rank4(acc[21], a21, bv);
            if (TN == 8u) {
                hi[21] = rank4(hi[21], a21, bh);
            }
            let a22 = subgroupShuffle(av[2], 6u);
            acc[22] = rank4(acc[22], a22, bv);
            if (TN == 8u) {
                hi[22] = rank4(hi[22], a22, bh);
            }
            let a23 = subgroupShuffle(av[2], 7u);
            acc[23] = rank4(acc[23], a23, bv);
            if (TN == 8u) {
                hi[23] = rank4(hi[23], a23, bh);
            }
        }
        if (TM > 24u) {
            let a24 = subgroupShuffle(av[3], 0u);
            acc[24] = rank4(acc[24], a24, bv);
            if (TN == 8u) {
                hi[24] = rank4(hi[24], a24, bh);
            }
            let a25 = subgroupShuffle(av[3], 1u);
            acc[25] = rank4(acc[25], a25, bv);
            if (TN == 8u) {
                hi[25] = rank4(hi[25], a25, bh);
            }
            let a26 = subgroupShuffle(av[3], 2u);
            acc[26] = rank4(acc[26], a26, bv);
            if (TN == 8u) {
                hi[26] = rank4(hi[26], a26, bh);
            }
            let a27 = subgroupShuffle(av[3], 3u);
            acc[27] = rank4(acc[27], a27, bv);
            if (TN == 8u) {
                hi[27] = rank4(hi[27], a27, bh);
            }
            let a28 = subgroupShuffle(av[3], 4u);
            acc[28] = rank4(acc[28], a28, bv);
            if (TN == 8u) {
                hi[28] = rank4(hi[28], a28, bh);
            }
            let a29 = subgroupShuffle(av[3], 5u);
            acc[29] = rank4(acc[29], a29, bv);
            if (TN == 8u) {
                hi[29] = rank4(hi[29], a29, bh);
            }
            let a30 = subgroupShuffle(av[3], 6u);
            acc[30] = rank4(acc[30], a30, bv);
            if (TN == 8u) {
                hi[30] = rank4(hi[30], a30, bh);
            }
            let a31 = subgroupShuffle(av[3], 7u);
            acc[31] = rank4(acc[31], a31, bv);
            if (TN == 8u) {
                hi[31] = rank4(hi[31], a31, bh);
            }
        }
    }

    store4(0u, row0, col0, c_base, acc[0]);
    if (TN == 8u) {
        store4(0u, row0, col0 + 4u, c_base, hi[0]);
    }
    store4(1u, row0, col0, c_base, acc[1]);
    if (TN == 8u) {
        store4(1u, row0, col0 + 4u, c_base, hi[1]);
    }
    store4(2u, row0, col0, c_base, acc[2]);
    if (TN == 8u) {
        store4(2u, row0, col0 + 4u, c_base, hi[2]);
    }
    store4(3u, row0, col0, c_base, acc[3]);
    if (TN == 8u) {
        store4(3u, row0, col0 + 4u, c_base, hi[3]);
    }
    store4(4u, row0, col0, c_base, acc[4]);
    if (TN == 8u) {
        store4(4u, row0, col0 + 4u, c_base, hi[4]);
    }
    store4(5u, row0, col0, c_base, acc[5]);
    if (TN == 8u) {
        store4(5u, row0, col0 + 4u, c_base, hi[5]);
    }
    store4(6u, row0, col0, c_base, acc[6]);
    if (TN == 8u) {
        store4(6u, row0, col0 + 4u, c_base, hi[6]);
    }
    store4(7u, row0, col0, c_base, acc[7]);
    if (TN == 8u) {
        store4(7u, row0, col0 + 4u, c_base, hi[7]);
    }
    store4(8u, row0, col0, c_base, acc[8]);
    if (TN == 8u) {
        store4(8u, row0, col0 + 4u, c_base, hi[8]);
    }
    store4(9u, row0, col0, c_base, acc[9]);
    if (TN == 8u) {
        store4(9u, row0, col0 + 4u, c_base, hi[9]);
    }
    store4(10u, row0, col0, c_base, acc[10]);
    if (TN == 8u) {
        store4(10u, row0, col0 + 4u, c_base, hi[10]);
    }
    store4(11u, row0, col0, c_base, acc[11]);
    if (TN == 8u) {
        store4(11u, row0, col0 + 4u, c_base, hi[11]);
    }
    store4(12u, row0, col0, c_base, acc[12]);
    if (TN == 8u) {
        store4(12u, row0, col0 + 4u, c_base, hi[12]);
    }
    store4(13u, row0, col0, c_base, acc[13]);
    if (TN == 8u) {
        store4(13u, row0, col0 + 4u, c_base, hi[13]);
    }
    store4(14u, row0, col0, c_base, acc[14]);
    if (TN == 8u) {
        store4(14u, row0, col0 + 4u, c_base, hi[14]);
    }
    store4(15u, row0, col0, c_base, acc[15]);
    if (TN == 8u) {
        store4(15u, row0, col0 + 4u, c_base, hi[15]);
    }
    store4(16u, row0, col0, c_base, acc[16]);
    if (TN == 8u) {
        store4(16u, row0, col0 + 4u, c_base, hi[16]);
    }
    store4(17u, row0, col0, c_base, acc[17]);
    if (TN == 8u) {
        store4(17u, row0, col0 + 4u, c_base, hi[17]);
    }
    store4(18u, row0, col0, c_base, acc[18]);
    if (TN == 8u) {
        store4(18u, row0, col0 + 4u, c_base, hi[18]);
    }
    store4(19u, row0, col0, c_base, acc[19]);
    if (TN == 8u) {
        store4(19u, row0, col0 + 4u, c_base, hi[19]);
    }
    store4(20u, row0, col0, c_base, acc[20]);
    if (TN == 8u) {
        store4(20u, row0, col0 + 4u, c_base, hi[20]);
    }
    store4(21u, row0, col0, c_base, acc[21]);
    if (TN == 8u) {
        store4(21u, row0, col0 + 4u, c_base, hi[21]);
    }
    store4(22u, row0, col0, c_base, acc[22]);
    if (TN == 8u) {
        store4(22u, row0, col0 + 4u, c_base, hi[22]);
    }
    store4(23u, row0, col0, c_base, acc[23]);
    if (TN == 8u) {
        store4(23u, row0, col0 + 4u, c_base, hi[23]);
    }
    store4(24u, row0, col0, c_base, acc[24]);
    if (TN == 8u) {
        store4(24u, row0, col0 + 4u, c_base, hi[24]);
    }
    store4(25u, row0, col0, c_base, acc[25]);
    if (TN == 8u) {
        store4(25u, row0, col0 + 4u, c_base, hi[25]);
    }
    store4(26u, row0, col0, c_base, acc[26]);
    if (TN == 8u) {
        store4(26u, row0, col0 + 4u, c_base, hi[26]);
    }
    store4(27u, row0, col0, c_base, acc[27]);
    if (TN == 8u) {
        store4(27u, row0, col0 + 4u, c_base, hi[27]);
    }
    store4(28u, row0, col0, c_base, acc[28]);
    if (TN == 8u) {
        store4(28u, row0, col0 + 4u, c_base, hi[28]);
    }
    store4(29u, row0, col0, c_base, acc[29]);
    if (TN == 8u) {
        store4(29u, row0, col0 + 4u, c_base, hi[29]);
    }
    store4(30u, row0, col0, c_base, acc[30]);
    if (TN == 8u) {
        store4(30u, row0, col0 + 4u, c_base, hi[30]);
    }
    store4(31u, row0, col0, c_base, acc[31]);
    if (TN == 8u) {
        store4(31u, row0, col0 + 4u, c_base, hi[31]);
    }
}
