// Register-blocked tiled f32 matmul: C[M,N] = A[M,K] · B[K,N], all row-major.
//
// A workgroup computes a BM×BN tile of C. It walks K in steps of BK, staging a BM×BK tile of A
// (transposed, so a thread's rows are contiguous) and a BK×BN tile of B in workgroup memory. Each
// of its (BM/TM)·(BN/TN) invocations keeps a TM×TN block of C in registers and updates it with
// outer products read as vec4s from workgroup memory.
//
// A thread's rows and columns are interleaved in groups of four (row group i of thread ty is
// i·(BM/TM) + ty), so neighbouring threads touch neighbouring vec4s: workgroup reads are free of
// bank conflicts and the stores to C are coalesced.
//
// Buffers are bound as arrays of vec4 (the runtime pads every tensor to 16 bytes). When K is a
// multiple of 4 (A_VEC4) rows of A start on a vec4 boundary and the tile is loaded a vec4 at a time;
// likewise N and B_VEC4 for B and C. Otherwise elements are read one by one. Every load and store
// is bounds-checked, so any M, N, K ≥ 1 is valid; out-of-range elements load as zero.
//
// Constraints the launcher guarantees: TM and TN are 4 or 8; BM % TM == 0, BN % TN == 0;
// WG == (BM/TM)·(BN/TN); BK % 4 == 0; BM·BK ≤ 2048 and BK·BN ≤ 2048.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override WG: u32 = 256u;
override A_VEC4: bool = false;
override B_VEC4: bool = false;


// Staging tiles: 512 vec4 = 8 KiB each (16 KiB in all, WebGPU's guaranteed minimum), so BM·BK and
// BK·BN are at most 2048.
// A tile, transposed: element (r, kk) lives at kk·BM + r.
var<workgroup> a_tile: array<vec4<f32>, 512>;
// B tile: element (kk, n) lives at kk·BN + n.
var<workgroup> b_tile: array<vec4<f32>, 512>;

fn load_a(row: u32, col: u32) -> f32 {
    if (row < p.m && col < p.k) {
        let i = row * p.k + col;
        return a[i >> 2u][i & 3u];
    }
    return 0.0;
}

fn load_b(row: u32, col: u32) -> f32 {
    if (row < p.k && col < p.n) {
        let i = row * p.n + col;
        return b[i >> 2u][i & 3u];
    }
    return 0.0;
}

fn stage_a(lid: u32, row0: u32, k0: u32) {
    if (A_VEC4) {
        let per_row = BK / 4u;
        for (var i = lid; i < BM * per_row; i = i + WG) {
            let r = i / per_row;
            let kq = (i % per_row) * 4u;
            let grow = row0 + r;
            let gk = k0 + kq;
            var v = vec4<f32>(0.0);
            if (grow < p.m && gk < p.k) {
                v = a[(grow * p.k + gk) >> 2u];
            }
            let base = kq * BM + r;
            a_tile[base >> 2u][base & 3u] = v.x;
            a_tile[(base + BM) >> 2u][base & 3u] = v.y;
            a_tile[(base + 2u * BM) >> 2u][base & 3u] = v.z;
            a_tile[(base + 3u * BM) >> 2u][base & 3u] = v.w;
        }
    } else {
        for (var i = lid; i < BM * BK; i = i + WG) {
            let r = i / BK;
            let kk = i % BK;
            let dst = kk * BM + r;
            a_tile[dst >> 2u][dst & 3u] = load_a(row0 + r, k0 + kk);
        }
    }
}

fn stage_b(lid: u32, col0: u32, k0: u32) {
    if (B_VEC4) {
        let per_row = BN / 4u;
        for (var i = lid; i < BK * per_row; i = i + WG) {
            let kk = i / per_row;
            let nq = (i % per_row) * 4u;
            let gk = k0 + kk;
            let gn = col0 + nq;
            var v = vec4<f32>(0.0);
            if (gk < p.k && gn < p.n) {
                v = b[(gk * p.n + gn) >> 2u];
            }
            b_tile[i] = v;
        }
    } else {
        for (var i = lid; i < BK * BN; i = i + WG) {
            let kk = i / BN;
            let n = i % BN;
            b_tile[i >> 2u][i & 3u] = load_b(k0 + kk, col0 + n);
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

    // acc[(i·4 + ii)·groups_n + j]: row ii of row group i, column group j.
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }
    var ra: array<vec4<f32>, 2>;
    var rb: array<vec4<f32>, 2>;

    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        stage_a(lid, row0, k0);
        stage_b(lid, col0, k0);
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
                let col = col0 + (j * threads_n + tx) * 4u;
                let v = acc[(i * 4u + ii) * groups_n + j];
                if (B_VEC4) {
                    if (col < p.n) {
                        c[(row * p.n + col) >> 2u] = v;
                    }
                } else {
                    for (var jj = 0u; jj < 4u; jj = jj + 1u) {
                        if (col + jj < p.n) {
                            let o = row * p.n + col + jj;
                            c[o >> 2u][o & 3u] = v[jj];
                        }
                    }
                }
            }
        }
    }
}
