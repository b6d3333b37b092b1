//! Each decoder kernel against its f64 reference op, on seeded inputs with poisoned outputs.

use pertoken_attention::KvCache;
use pertoken_cost::{Rope, RopePairing, RopeScaling};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Gpu, GpuOptions, Tensor};
use pertoken_model::ops::{self, Columns};
use pertoken_reference::decoder as r;
use pertoken_reference::random::{uniform_f32, uniform_f32_in};
use pertoken_reference::{QuantFormat, Tolerance, compare, dequantize, quantize};

fn poisoned(gpu: &Gpu, shape: &[usize]) -> Tensor {
    let t = Tensor::zeros(gpu, shape, DType::F32).unwrap();
    t.fill(f32::NAN).unwrap();
    t
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn rms_norm_with_and_without_the_residual_add() {
    let Some(gpu) = gpu_or_skip() else { return };
    // 70 and 1000 are no multiple of the workgroup; 1000 strides several times.
    for (rows, h) in [(5, 70), (3, 1000), (1, 1)] {
        let xv = uniform_f32(1 + h as u64, rows * h);
        let dv = uniform_f32(2 + h as u64, rows * h);
        let wv = uniform_f32_in(3, h, 0.5, 1.5);
        let w = Tensor::from_slice(&gpu, &wv, &[h]).unwrap();
        // Gemma's post-norm weights (stored as 1 + w) reach tens.
        let pv = uniform_f32_in(4, h, 2.0, 40.0);
        let post_w = Tensor::from_slice(&gpu, &pv, &[h]).unwrap();
        // No add, the residual add, and the add of the normed delta (Gemma's sandwich).
        for (add, post) in [(false, false), (true, false), (true, true)] {
            let x = Tensor::from_slice(&gpu, &xv, &[rows, h]).unwrap();
            let d = Tensor::from_slice(&gpu, &dv, &[rows, h]).unwrap();
            let out = poisoned(&gpu, &[rows, h]);
            if post {
                ops::rms_norm_post(&gpu, &x, (&d, &post_w), &w, &out, 0, 1e-5).unwrap();
            } else {
                ops::rms_norm(&gpu, &x, add.then_some(&d), &w, &out, 0, 1e-5).unwrap();
            }
            let got = out.to_vec::<f32>().unwrap();
            let mut want = Vec::new();
            let mut resid = Vec::new();
            for i in 0..rows {
                let mut delta = f64s(&dv[i * h..(i + 1) * h]);
                if post {
                    delta = r::rms_norm(&delta, &pv, 1e-5);
                }
                let row: Vec<f64> = (0..h)
                    .map(|c| f64::from(xv[i * h + c]) + if add { delta[c] } else { 0.0 })
                    .collect();
                want.extend(r::rms_norm(&row, &wv, 1e-5));
                resid.extend(row);
            }
            let cmp = compare(&got, &want, Tolerance::F32.for_reduction(h, 1.0));
            assert!(
                cmp.passed(),
                "rows {rows} h {h} add {add} post {post}: {cmp}"
            );
            // The add is written back into the residual stream.
            let tol = Tolerance::F32.for_reduction(h, if post { 40f64.sqrt() } else { 1.0 });
            let cmp = compare(&x.to_vec::<f32>().unwrap(), &resid, tol);
            assert!(cmp.passed(), "residual, post {post}: {cmp}");
        }
        // The last row alone, into a one-row output.
        let x = Tensor::from_slice(&gpu, &xv, &[rows, h]).unwrap();
        let out = poisoned(&gpu, &[1, h]);
        ops::rms_norm(&gpu, &x, None, &w, &out, rows - 1, 1e-5).unwrap();
        let want = r::rms_norm(&f64s(&xv[(rows - 1) * h..]), &wv, 1e-5);
        let cmp = compare(
            &out.to_vec::<f32>().unwrap(),
            &want,
            Tolerance::F32.for_reduction(h, 1.0),
        );
        assert!(cmp.passed(), "last row: {cmp}");
    }
}

#[test]
fn rope_append_turns_q_and_k_into_place_in_both_pairings() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (heads, kv, d, t, capacity) = (6, 2, 64, 5, 12);
    let stride = (heads + 2 * kv) * d + 3; // a fused qkv row, padded off any alignment
    let scaled = Rope {
        theta: 500_000.0,
        scaling: Some(RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 32,
        }),
    };
    let eps = 1e-6;
    // Norm weights far from 1 (Gemma's are stored as 1 + w, up to 60).
    let norms: Vec<Vec<f32>> = [9, 10]
        .map(|seed| uniform_f32(seed, d).iter().map(|w| 4.0 * w + 1.0).collect())
        .into();
    let norm_t = norms
        .iter()
        .map(|w| Tensor::from_slice(&gpu, w, &[d]).unwrap());
    let norm_t: Vec<Tensor> = norm_t.collect();
    for pairing in [RopePairing::Halves, RopePairing::Interleaved] {
        // The whole head turned or (Phi-3's partial rotary) its first half, with and without
        // the per-head q/k norm (Gemma 3, Qwen3).
        for (rope, rot, qk_norm) in [
            (Rope::default(), d, false),
            (scaled, d, false),
            (Rope::default(), d, true),
            (scaled, d / 2, false),
            (Rope::default(), d / 2, true),
        ] {
            // Phi-3's LongRoPE attention factor, with its partial rotary.
            let factor = if rot < d && !qk_norm { 1.19 } else { 1.0 };
            let freqs = r::rope_frequencies(&rope, rot);
            let freq32: Vec<f32> = freqs.iter().map(|&f| f as f32).collect();
            let freq = Tensor::from_slice(&gpu, &freq32, &[rot / 2]).unwrap();
            let src = uniform_f32(7, t * stride);
            let qkv = Tensor::from_slice(&gpu, &src, &[t, stride]).unwrap();
            let mut cache = KvCache::new(&gpu, kv, capacity, d, DType::F32).unwrap();
            // Three positions already filled, so the new ones start at 3.
            let first = Tensor::from_slice(&gpu, &uniform_f32(8, kv * 3 * d), &[kv, 3, d]).unwrap();
            cache.append(&gpu, &first, &first).unwrap();
            let q_out = poisoned(&gpu, &[heads, t, d]);
            let cols = [0, heads * d, (heads + kv) * d].map(|col| Columns { tensor: &qkv, col });
            let head_rope = ops::HeadRope {
                freq: &freq,
                pairing,
                qk_norm: qk_norm.then(|| (&norm_t[0], &norm_t[1], eps as f32)),
                factor,
            };
            ops::rope_append(&gpu, cols, (0, t), &head_rope, &q_out, &mut cache).unwrap();
            assert_eq!(cache.len(), 3 + t);
            let (got_q, got_k, got_v) = (
                q_out.to_vec::<f32>().unwrap(),
                cache.keys().to_vec::<f32>().unwrap(),
                cache.values().to_vec::<f32>().unwrap(),
            );
            let (mut wq, mut gq, mut wk, mut gk, mut wv, mut gv) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for i in 0..t {
                let row = &src[i * stride..];
                for h in 0..heads + 2 * kv {
                    let mut head = f64s(&row[h * d..(h + 1) * d]);
                    if h < heads + kv {
                        if qk_norm {
                            head = r::rms_norm(&head, &norms[usize::from(h >= heads)], eps);
                        }
                        r::rope(&mut head[..rot], 3 + i, &freqs, pairing);
                        head[..rot].iter_mut().for_each(|x| *x *= f64::from(factor));
                    }
                    if h < heads {
                        wq.extend(head);
                        gq.extend_from_slice(&got_q[(h * t + i) * d..][..d]);
                    } else {
                        let c = if h < heads + kv {
                            h - heads
                        } else {
                            h - heads - kv
                        };
                        let at = (c * capacity + 3 + i) * d;
                        if h < heads + kv {
                            wk.extend(head);
                            gk.extend_from_slice(&got_k[at..at + d]);
                        } else {
                            wv.extend(head);
                            gv.extend_from_slice(&got_v[at..at + d]);
                        }
                    }
                }
            }
            // Angles reach 8 rad: f32 sin/cos of a rounded angle, a few ulps of 8; the norm's
            // weights reach 5.
            let tol = Tolerance {
                abs: 1e-4,
                rel: 2e-5,
            };
            for (what, got, want) in [("q", &gq, &wq), ("k", &gk, &wk), ("v", &gv, &wv)] {
                let cmp = compare(got, want, tol);
                assert!(
                    cmp.passed(),
                    "{pairing:?} {rope:?} rotary {rot} norm {qk_norm} {what}: {cmp}"
                );
            }
            // The rows before and after the new ones are untouched.
            let old: Vec<f64> = f64s(&uniform_f32(8, kv * 3 * d)[..3 * d]);
            assert!(compare(&got_k[..3 * d], &old, Tolerance::F32).passed());
        }
    }
}

#[test]
fn rope_append_refuses_an_overflow() {
    let Some(gpu) = gpu_or_skip() else { return };
    let qkv = Tensor::from_slice(&gpu, &uniform_f32(1, 3 * 3 * 8), &[3, 24]).unwrap();
    let freq = Tensor::from_slice(&gpu, &uniform_f32(2, 4), &[4]).unwrap();
    let q_out = poisoned(&gpu, &[1, 3, 8]);
    let mut cache = KvCache::new(&gpu, 1, 2, 8, DType::F32).unwrap();
    let cols = [0, 8, 16].map(|col| Columns { tensor: &qkv, col });
    let e = ops::rope_append(
        &gpu,
        cols,
        (0, 3),
        &ops::HeadRope {
            freq: &freq,
            pairing: RopePairing::Halves,
            qk_norm: None,
            factor: 1.0,
        },
        &q_out,
        &mut cache,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("overflow"), "{e}");
    assert_eq!(cache.len(), 0);
}

#[test]
fn silu_mul_of_fused_and_separate_projections() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (t, f) = (3, 300);
    let gu = uniform_f32_in(4, t * 2 * f, -6.0, 6.0);
    let fused = Tensor::from_slice(&gpu, &gu, &[t, 2 * f]).unwrap();
    let out = poisoned(&gpu, &[t, f]);
    ops::silu_mul(
        &gpu,
        Columns {
            tensor: &fused,
            col: 0,
        },
        Columns {
            tensor: &fused,
            col: f,
        },
        &out,
    )
    .unwrap();
    let mut want = Vec::new();
    for i in 0..t {
        let row = f64s(&gu[i * 2 * f..(i + 1) * 2 * f]);
        want.extend(r::silu_mul(&row[..f], &row[f..]));
    }
    let cmp = compare(&out.to_vec::<f32>().unwrap(), &want, Tolerance::F32);
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn gelu_tanh_gate_matches_the_reference_even_for_large_inputs() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (t, f) = (2, 300);
    // Gates out to ±30, where tanh's argument is far past its saturation (a tanh built from
    // exponentials would give NaN there).
    let g = uniform_f32_in(7, t * f, -30.0, 30.0);
    let up = uniform_f32_in(8, t * f, -2.0, 2.0);
    let tg = Tensor::from_slice(&gpu, &g, &[t, f]).unwrap();
    let tu = Tensor::from_slice(&gpu, &up, &[t, f]).unwrap();
    let out = poisoned(&gpu, &[t, f]);
    let col = |tensor| Columns { tensor, col: 0 };
    ops::act_mul(&gpu, ops::Activation::GeluTanh, col(&tg), col(&tu), &out).unwrap();
    let want = r::gelu_tanh_mul(&f64s(&g), &f64s(&up));
    let cmp = compare(&out.to_vec::<f32>().unwrap(), &want, Tolerance::F32);
    assert!(cmp.passed(), "{cmp}");
    // By hand: gelu(1) = 0.841192 (tanh approximation), gelu(−3) = −0.003637.
    let h = r::gelu_tanh_mul(&[1.0, -3.0], &[1.0, 1.0]);
    assert!(
        (h[0] - 0.841192).abs() < 1e-6 && (h[1] + 0.003637).abs() < 1e-6,
        "{h:?}"
    );
}

#[test]
fn heads_to_tokens_transposes() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (h, t, d) = (3, 5, 7);
    let v = uniform_f32(5, h * t * d);
    let src = Tensor::from_slice(&gpu, &v, &[h, t, d]).unwrap();
    // Into rows 2 .. 2 + t of a larger output, as a batched step gathers each sequence's row.
    let dst = poisoned(&gpu, &[t + 3, h * d]);
    ops::heads_to_tokens(&gpu, &src, &dst, 2).unwrap();
    let got = dst.to_vec::<f32>().unwrap();
    for i in 0..t {
        for j in 0..h {
            for c in 0..d {
                assert_eq!(got[(2 + i) * h * d + j * d + c], v[(j * t + i) * d + c]);
            }
        }
    }
    let untouched = |r: usize| got[r * h * d..(r + 1) * h * d].iter().all(|x| x.is_nan());
    assert!(untouched(0) && untouched(1) && untouched(t + 2));
    assert!(
        ops::heads_to_tokens(&gpu, &src, &dst, 4).is_err(),
        "rows past the output"
    );
}

fn table(gpu: &Gpu, dtype: DType, vocab: usize, h: usize) -> (Tensor, Vec<f32>) {
    let v = uniform_f32(6, vocab * h);
    let q = |f| {
        let bytes = quantize(f, &v).unwrap();
        let back = dequantize(f, &bytes).unwrap();
        (
            Tensor::from_quantized(gpu, &bytes, &[vocab, h], dtype).unwrap(),
            back,
        )
    };
    match QuantFormat::from_name(dtype.name()) {
        Some(f) => q(f),
        None => Tensor::from_f32_as(gpu, &v, &[vocab, h], dtype).unwrap(),
    }
}

/// Gathers rows of a `[vocab, h]` table of `dtype`: ids include the first and the last.
fn check_embed(gpu: &Gpu, dtype: DType, (vocab, h): (usize, usize)) {
    let (t_, held) = table(gpu, dtype, vocab, h);
    let last = vocab as u32 - 1;
    let ids: Vec<u32> = vec![9, 0, last, 5, 5, last / 2, last];
    let tokens = Tensor::from_slice(gpu, &ids, &[ids.len()]).unwrap();
    // Tokens from slot 2 on, into rows 1.. of the output.
    let out = poisoned(gpu, &[6, h]);
    ops::embed(gpu, &t_, &tokens, (2, 5), &out, 1).unwrap();
    let got = out.to_vec::<f32>().unwrap();
    assert!(got[..h].iter().all(|v| v.is_nan()), "row 0 untouched");
    let got = &got[h..];
    let want: Vec<f64> = ids[2..]
        .iter()
        .flat_map(|&id| f64s(&held[id as usize * h..(id as usize + 1) * h]))
        .collect();
    let cmp = compare(got, &want, Tolerance { abs: 0.0, rel: 0.0 });
    assert!(cmp.passed(), "{dtype}: {cmp}");
}

#[test]
fn embedding_gather_in_every_format() {
    let Some(gpu) = gpu_or_skip() else { return };
    for dtype in DType::WEIGHTS {
        // Rows of three blocks of 32, or two super-blocks of 256 for the K-quants.
        check_embed(
            &gpu,
            dtype,
            (37, if dtype.block().0 > 32 { 512 } else { 96 }),
        );
    }
}

#[test]
fn gemma_scales_the_gathered_rows_by_root_hidden() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (vocab, h) = (37, 512);
    let (t_, held) = table(&gpu, DType::Q4_K, vocab, h);
    let ids: Vec<u32> = vec![3, 36, 0];
    let tokens = Tensor::from_slice(&gpu, &ids, &[3]).unwrap();
    let out = poisoned(&gpu, &[3, h]);
    let scale = (640f64).sqrt();
    ops::embed_scaled(&gpu, &t_, &tokens, (0, 3), (&out, 0), scale as f32).unwrap();
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&id| held[id as usize * h..(id as usize + 1) * h].to_vec())
        .map(|v| f64::from(v) * scale)
        .collect();
    let cmp = compare(&out.to_vec::<f32>().unwrap(), &want, Tolerance::F32);
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn embedding_tables_over_the_binding_limit_gather_in_windows() {
    if gpu_or_skip().is_none() {
        return;
    }
    // 96 f32 = 384 bytes a row: 4096 bytes hold 10 rows (8 once windows start on 256-byte
    // boundaries), so the 37-row table takes 5 windows; Q4_1 rows are 60 bytes, Q5_0's 66 (blocks
    // on 2-byte boundaries).
    let limited = |limit: u64| {
        let options = GpuOptions {
            max_storage_binding: Some(limit),
            ..GpuOptions::from_env().unwrap()
        };
        Gpu::new(&options).unwrap()
    };
    let gpu = limited(4096);
    for dtype in [DType::F32, DType::Q4_1, DType::Q8_0, DType::Q5_0] {
        check_embed(&gpu, dtype, (37, 96));
    }
    // One super-block a row: Q6_K's 210 bytes (on 2-byte boundaries) start on 256 bytes every 128
    // rows, so 32 KiB windows of 128 rows take a 300-row table in 3; Q4_K's 144 bytes in 2.
    let gpu = limited(32768);
    for dtype in [DType::Q6_K, DType::Q4_K] {
        check_embed(&gpu, dtype, (300, 256));
    }
}

#[test]
fn a_token_past_the_vocabulary_gives_nan() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (t_, _) = table(&gpu, DType::F16, 10, 32);
    let tokens = Tensor::from_slice(&gpu, &[3u32, u32::MAX], &[2]).unwrap();
    let out = Tensor::zeros(&gpu, &[2, 32], DType::F32).unwrap();
    ops::embed(&gpu, &t_, &tokens, (0, 2), &out, 0).unwrap();
    let got = out.to_vec::<f32>().unwrap();
    assert!(got[..32].iter().all(|v| v.is_finite()));
    assert!(got[32..].iter().all(|v| v.is_nan()));
}

#[test]
fn argmax_picks_the_first_largest_skips_nan_and_writes_its_slot() {
    let Some(gpu) = gpu_or_skip() else { return };
    let n = 49_157; // strides unevenly over the workgroup
    let mut rows = uniform_f32(9, 3 * n);
    rows[n + 40_000] = 5.0; // row 1: the largest twice; the first wins
    rows[n + 45_000] = 5.0;
    rows[n + 3] = f32::NAN;
    for v in &mut rows[2 * n..] {
        *v = f32::NAN; // row 2: nothing to choose
    }
    let logits = Tensor::from_slice(&gpu, &rows, &[3, n]).unwrap();
    let tokens = Tensor::from_slice(&gpu, &[7u32; 6], &[6]).unwrap();
    for (row, slot) in [(0, 1), (1, 4), (2, 5)] {
        ops::argmax_into(&gpu, &logits, row, &tokens, slot).unwrap();
    }
    let got = tokens.to_vec::<u32>().unwrap();
    let want0 = r::argmax(&f64s(&rows[..n])).unwrap() as u32;
    assert_eq!(got, vec![7, want0, 7, 7, 40_000, u32::MAX]);
}

#[test]
fn softcap_bends_logits_as_the_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    // Values from well inside the cap to far past it (tanh's flat tails), 1000 of them.
    let v: Vec<f32> = uniform_f32(12, 1000).iter().map(|x| 80.0 * x).collect();
    let x = Tensor::from_slice(&gpu, &v, &[4, 250]).unwrap();
    let cap = 30.0;
    ops::softcap(&gpu, &x, cap as f32).unwrap();
    let want: Vec<f64> = v
        .iter()
        .map(|&z| cap * (f64::from(z) / cap).tanh())
        .collect();
    let cmp = compare(&x.to_vec::<f32>().unwrap(), &want, Tolerance::F32);
    assert!(cmp.passed(), "{cmp}");
    assert!(ops::softcap(&gpu, &x, 0.0).is_err());
}
