// Register-blocked tiled matmul: C[M,N] = A[M,K] · B[K,N] (+ bias[N]), or with B_TRANS,
// C = A · Wᵀ for weights W[N,K] stored as PyTorch's Linear stores them. f32 accumulation; C is
// f32.
//
// A workgroup computes a BM×BN tile of C. It walks K in steps of BK, staging a BM×BK tile of A
// (transposed, so a thread's rows are contiguous) and a BK×BN tile of B in workgroup memory,
// converting both to f32 on the way in: this is where f16 is unpacked and Q8_0/Q4_0 blocks are
// dequantized. Each of the (BM/TM)·(BN/TN) invocations keeps a TM×TN block of C in registers and
// updates it with outer products read as vec4s from workgroup memory.
//
// A thread's rows and columns are interleaved in groups of four (row group i of thread ty is
// i·(BM/TM) + ty), so neighbouring threads touch neighbouring vec4s: workgroup reads are free of
// bank conflicts and the stores to C are coalesced.
//
// Formats: A is f32, or f16 pairs (A_F16). B (B_FMT) is 0 f32, 1 f16, or a quantized format (2
// Q8_0, 3 Q4_0, 4 Q4_1, 5 Q5_0, 6 Q5_1, 7 Q4_K, 8 Q5_K, 9 Q6_K) only with B_TRANS, in ggml's
// layout, dequantized 4 weights at a time by operands.wgsl's q4_of. Buffers are bound as arrays of vec4 (the runtime
// pads every tensor to 16 bytes). When rows of an operand start on a 4-element boundary (A_VEC4,
// B_VEC4) it is loaded four elements at a time, else one by one. C_VEC4 stores four outputs at
// once. Every load and store is bounds-checked, so any M, N, K ≥ 1 is valid.
//
// A leading batch dimension runs as workgroup_id.z, each entry offset by the batch strides.
//
// The B binding may be a window of a larger weight (for tensors over the storage-binding limit):
// it holds columns p.b_col0 .. p.b_col0 + p.b_cols of C (rows of W, with B_TRANS), and the
// dispatch covers only those.
//
// Constraints the launcher guarantees: TM and TN are 4 or 8; BM % TM == 0, BN % TN == 0;
// WG == (BM/TM)·(BN/TN); BK is 8, 16 or 32; BM·BK ≤ 2048 and BK·BN ≤ 2048; p.b_col0 % 4 == 0.

// The parameter block and the bindings of A, bias, C and p come from tile_io.wgsl; B (binding
// 1) and its accessors from a prelude: b_packed.wgsl binds 32-bit words (every format; f16
// unpacked with unpack2x16float), and b_f16.wgsl binds f16 values with shader-f16, for f16 B on
// adapters that have it.

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override WG: u32 = 256u;
override A_F16: bool = false;
override A_VEC4: bool = false;
override B_FMT: u32 = 0u;
override B_TRANS: bool = false;
override B_VEC4: bool = false;
override C_VEC4: bool = false;

// Staging tiles: 512 vec4 = 8 KiB each (16 KiB in all, WebGPU's guaranteed minimum), so BM·BK and
// BK·BN are at most 2048.
// A tile, transposed: element (r, kk) lives at kk·BM + r.
var<workgroup> a_tile: array<vec4<f32>, 512>;
// B tile: element (kk, n) lives at kk·BN + n.
var<workgroup> b_tile: array<vec4<f32>, 512>;

// a1, a4, b1, b4 (elements of A and B as f32) and q4_of (4 weights of a Q8_0 or Q4_0 W,
// dequantized) come from operands.wgsl, which the index appends.

fn stage_a(lid: u32, base: u32, row0: u32, k0: u32) {
    if (A_VEC4) {
        let per_row = BK / 4u;
        for (var i = lid; i < BM * per_row; i = i + WG) {
            let r = i / per_row;
            let kq = (i % per_row) * 4u;
            let grow = row0 + r;
            let gk = k0 + kq;
            var v = vec4<f32>(0.0);
            if (grow < p.m && gk < p.k) {
                v = a4(base + grow * p.k + gk);
            }
            let dst = kq * BM + r;
            a_tile[dst >> 2u][dst & 3u] = v.x;
            a_tile[(dst + BM) >> 2u][dst & 3u] = v.y;
            a_tile[(dst + 2u * BM) >> 2u][dst & 3u] = v.z;
            a_tile[(dst + 3u * BM) >> 2u][dst & 3u] = v.w;
        }
    } else {
        for (var i = lid; i < BM * BK; i = i + WG) {
            let r = i / BK;
            let kk = i % BK;
            let grow = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if (grow < p.m && gk < p.k) {
                v = a1(base + grow * p.k + gk);
            }
            let dst = kk * BM + r;
            a_tile[dst >> 2u][dst & 3u] = v;
        }
    }
}

// B[k, n] for B[K,N] (n relative to the window).
fn stage_b_plain(lid: u32, base: u32, col0: u32, k0: u32) {
    if (B_VEC4) {
        let per_row = BN / 4u;
        for (var i = lid; i < BK * per_row; i = i + WG) {
            let kk = i / per_row;
            let nq = (i % per_row) * 4u;
            let gk = k0 + kk;
            let gn = col0 + nq;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gn < p.b_cols) {
                v = b4(base + gk * p.b_cols + gn);
            }
            b_tile[i] = v;
        }
    } else {
        for (var i = lid; i < BK * BN; i = i + WG) {
            let kk = i / BN;
            let nn = i % BN;
            let gk = k0 + kk;
            let gn = col0 + nn;
            var v = 0.0;
            if (gk < p.k && gn < p.b_cols) {
                v = b1(base + gk * p.b_cols + gn);
            }
            b_tile[i >> 2u][i & 3u] = v;
        }
    }
}

// B[k, n] = W[n, k] for W[N,K] (n relative to the window).
fn stage_b_trans(lid: u32, base: u32, col0: u32, k0: u32) {
    if (B_VEC4 || B_FMT >= 2u) {
        let per_col = BK / 4u;
        for (var i = lid; i < BN * per_col; i = i + WG) {
            let nn = i / per_col;
            let kq = (i % per_col) * 4u;
            let gn = col0 + nn;
            let gk = k0 + kq;
            var v = vec4<f32>(0.0);
            if (gn < p.b_cols && gk < p.k) {
                if (B_FMT >= 2u) {
                    v = q4_of(gn, gk);
                } else {
                    v = b4(base + gn * p.k + gk);
                }
            }
            let dst = kq * BN + nn;
            b_tile[dst >> 2u][dst & 3u] = v.x;
            b_tile[(dst + BN) >> 2u][dst & 3u] = v.y;
            b_tile[(dst + 2u * BN) >> 2u][dst & 3u] = v.z;
            b_tile[(dst + 3u * BN) >> 2u][dst & 3u] = v.w;
        }
    } else {
        for (var i = lid; i < BN * BK; i = i + WG) {
            let nn = i / BK;
            let kk = i % BK;
            let gn = col0 + nn;
            let gk = k0 + kk;
            var v = 0.0;
            if (gn < p.b_cols && gk < p.k) {
                v = b1(base + gn * p.k + gk);
            }
            let dst = kk * BN + nn;
            b_tile[dst >> 2u][dst & 3u] = v;
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let threads_n = BN / TN;
    let threads_m = BM / TM;
    let tx = lid % threads_n;
    let ty = lid / threads_n;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let groups_m = TM / 4u;
    let groups_n = TN / 4u;
    let a_base = wid.z * p.a_bs;
    let b_base = wid.z * p.b_bs;
    let c_base = wid.z * p.c_bs;

    // acc[(i·4 + ii)·groups_n + j]: row ii of row group i, column group j.
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }
    var ra: array<vec4<f32>, 2>;
    var rb: array<vec4<f32>, 2>;

    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        stage_a(lid, a_base, row0, k0);
        if (B_TRANS) {
            stage_b_trans(lid, b_base, col0, k0);
        } else {
            stage_b_plain(lid, b_base, col0, k0);
        }
        workgroupBarrier();

        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            for (var i = 0u; i < groups_m; i = i + 1u) {
                ra[i] = a_tile[kk * (BM / 4u) + i * threads_m + ty];
            }
            for (var j = 0u; j < groups_n; j = j + 1u) {
                rb[j] = b_tile[kk * (BN / 4u) + j * threads_n + tx];
            }
            for (var i = 0u; i < groups_m; i = i + 1u) {
                for (var ii = 0u; ii < 4u; ii = ii + 1u) {
                    let av = vec4<f32>(ra[i][ii]);
                    for (var j = 0u; j < groups_n; j = j + 1u) {
                        let idx = (i * 4u + ii) * groups_n + j;
                        acc[idx] = fma(av, rb[j], acc[idx]);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < groups_m; i = i + 1u) {
        for (var ii = 0u; ii < 4u; ii = ii + 1u) {
            let row = row0 + (i * threads_m + ty) * 4u + ii;
            if (row >= p.m) {
                continue;
            }
            for (var j = 0u; j < groups_n; j = j + 1u) {
                let lcol = col0 + (j * threads_n + tx) * 4u;
                let col = p.b_col0 + lcol;
                var v = acc[(i * 4u + ii) * groups_n + j];
                if (C_VEC4) {
                    if (lcol < p.b_cols) {
                        if (p.has_bias != 0u) {
                            v = v + vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]);
                        }
                        c[(c_base + row * p.n + col) >> 2u] = v;
                    }
                } else {
                    for (var jj = 0u; jj < 4u; jj = jj + 1u) {
                        if (lcol + jj < p.b_cols) {
                            var e = v[jj];
                            if (p.has_bias != 0u) {
                                e = e + bias[col + jj];
                            }
                            let o = c_base + row * p.n + col + jj;
                            c[o >> 2u][o & 3u] = e;
                        }
                    }
                }
            }
        }
    }
}
