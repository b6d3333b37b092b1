//! Round trips through real files for every op, and the storage-binding limit.

use ndarray::{ArrayD, IxDyn};
use pertoken::gpu::testing::gpu_or_skip;
use pertoken::reference::decoder as r;
use pertoken::reference::random::uniform_f32;
use pertoken::reference::{AttentionShape, QuantFormat, Tolerance, compare, dequantize, quantize};

use super::{f64s, matmul_ref, run, run_ok, save_f16, save_f32, save_f64, save_raw};

#[test]
fn matmul_round_trips_through_f32_f16_and_f64_files() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (m, k, n) = (13, 40, 9);
    let (av, bv) = (uniform_f32(1, m * k), uniform_f32(2, k * n));
    // float32 files.
    save_f32(d, "a.npy", &[m, k], &av);
    save_f32(d, "b.npy", &[k, n], &bv);
    let tol = Tolerance::F32.for_reduction(k, 1.0);
    let (shape, got, stdout) = run_ok(d, "matmul", &[("a", "a.npy"), ("b", "b.npy")], &[]);
    assert_eq!(shape, [m, n]);
    assert!(
        stdout.contains("the kernel read them unchanged"),
        "{stdout}"
    );
    let want = matmul_ref(&f64s(&av), &f64s(&bv), m, k, n);
    assert!(compare(&got, &want, tol).passed());
    // float16 files, read exactly.
    let (ah, bh) = (
        save_f16(d, "ah.npy", &[m, k], &av),
        save_f16(d, "bh.npy", &[k, n], &bv),
    );
    let (_, got, stdout) = run_ok(d, "matmul", &[("a", "ah.npy"), ("b", "bh.npy")], &[]);
    assert!(
        stdout.contains("the kernel read them unchanged"),
        "{stdout}"
    );
    let want = matmul_ref(&f64s(&ah), &f64s(&bh), m, k, n);
    assert!(compare(&got, &want, tol).passed());
    // float64 files with values f32 cannot hold: rounded, and the check says so.
    let a64: Vec<f64> = av.iter().map(|&x| f64::from(x) + 1e-10).collect();
    let b64: Vec<f64> = bv.iter().map(|&x| f64::from(x) - 1e-10).collect();
    save_f64(d, "a64.npy", &[m, k], &a64);
    save_f64(d, "b64.npy", &[k, n], &b64);
    let (_, got, stdout) = run_ok(d, "matmul", &[("a", "a64.npy"), ("b", "b64.npy")], &[]);
    assert!(stdout.contains("a: float64 rounded to float32"), "{stdout}");
    assert!(
        stdout.contains("against the reference on the files' own values"),
        "{stdout}"
    );
    assert!(compare(&got, &matmul_ref(&a64, &b64, m, k, n), tol).passed());
    // A batch of a over a shared b, b stored as f16.
    save_f32(d, "ab.npy", &[2, 5, k], &uniform_f32(3, 2 * 5 * k));
    let (shape, _, stdout) = run_ok(
        d,
        "matmul",
        &[("a", "ab.npy"), ("b", "b.npy")],
        &["--dtype", "f16"],
    );
    assert_eq!(shape, [2, 5, n]);
    assert!(stdout.contains("b: rounded to f16"), "{stdout}");
}

#[test]
fn fortran_order_files_are_converted() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (m, k, n) = (6, 7, 5);
    let a = ArrayD::from_shape_vec(IxDyn(&[m, k]), uniform_f32(4, m * k)).unwrap();
    save_f32(d, "b.npy", &[k, n], &uniform_f32(5, k * n));
    ndarray_npy::write_npy(d.join("a.npy"), &a).unwrap();
    // The transpose of a C-order [k, m] array is written with fortran_order: True.
    let at = ArrayD::from_shape_vec(IxDyn(&[k, m]), a.t().iter().copied().collect()).unwrap();
    ndarray_npy::write_npy(d.join("af.npy"), &at.t()).unwrap();
    let head = std::fs::read(d.join("af.npy")).unwrap();
    assert!(String::from_utf8_lossy(&head[..128]).contains("'fortran_order': True"));
    let (_, c, _) = run_ok(d, "matmul", &[("a", "a.npy"), ("b", "b.npy")], &[]);
    let (ok, stdout, stderr) = run(
        d,
        "matmul",
        &[("a", "af.npy"), ("b", "b.npy")],
        &["--out", d.join("f.npy").to_str().unwrap()],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stderr.contains("Fortran order, converted to C order"),
        "{stderr}"
    );
    let f: ArrayD<f32> = ndarray_npy::read_npy(d.join("f.npy")).unwrap();
    assert_eq!(f.iter().copied().collect::<Vec<_>>(), c);
}

#[test]
fn attention_grouped_causal_with_an_offset_in_f32_and_f16() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (h, hkv, lq, lkv, hd) = (6, 2, 3, 11, 16);
    let (qv, kv, vv) = (
        uniform_f32(6, h * lq * hd),
        uniform_f32(7, hkv * lkv * hd),
        uniform_f32(8, hkv * lkv * hd),
    );
    save_f32(d, "q.npy", &[h, lq, hd], &qv);
    save_f32(d, "k.npy", &[hkv, lkv, hd], &kv);
    save_f32(d, "v.npy", &[hkv, lkv, hd], &vv);
    let files = [("q", "q.npy"), ("k", "k.npy"), ("v", "v.npy")];
    let tol = Tolerance {
        abs: 2e-5,
        rel: 2e-5,
    }
    .for_reduction(lkv, 1.0);
    for (causal, scale, f16) in [
        (true, None, false),
        (true, None, true),
        (false, Some(0.3), false),
    ] {
        let mut extra = vec![];
        if causal {
            extra.push("--causal".to_owned());
        }
        if let Some(s) = scale {
            extra.extend(["--scale".to_owned(), s.to_string()]);
        }
        if f16 {
            extra.extend(["--dtype".to_owned(), "f16".to_owned()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (shape, got, stdout) = run_ok(d, "attention", &files, &extra);
        assert_eq!(shape, [h, lq, hd]);
        let held = |v: &[f32]| -> Vec<f32> {
            if f16 {
                v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
            } else {
                v.to_vec()
            }
        };
        if f16 {
            assert!(stdout.contains("q: rounded to f16"), "{stdout}");
        }
        let s = AttentionShape {
            n_heads: h,
            n_kv_heads: hkv,
            head_dim: hd,
            q_len: lq,
            kv_len: lkv,
            causal,
        };
        let scale = scale.map_or(1.0 / (hd as f64).sqrt(), f64::from);
        let want =
            pertoken::reference::attention(&held(&qv), &held(&kv), &held(&vv), s, scale).unwrap();
        let cmp = compare(&got, &want, tol);
        assert!(cmp.passed(), "causal {causal} f16 {f16}: {cmp}");
    }
}

#[test]
fn linear_in_every_weight_format_with_a_bias() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (m, k, n) = (3, 64, 10);
    let (xv, wv, bv) = (
        uniform_f32(9, m * k),
        uniform_f32(10, n * k),
        uniform_f32(11, n),
    );
    save_f32(d, "x.npy", &[m, k], &xv);
    save_f32(d, "w.npy", &[n, k], &wv);
    save_f32(d, "bias.npy", &[n], &bv);
    let files = [("x", "x.npy"), ("w", "w.npy"), ("bias", "bias.npy")];
    for (dtype, format) in [
        ("f32", None),
        ("f16", None),
        ("q8_0", Some(QuantFormat::Q8_0)),
        ("q4_0", Some(QuantFormat::Q4_0)),
        ("q4_1", Some(QuantFormat::Q4_1)),
    ] {
        let (shape, got, stdout) = run_ok(d, "linear", &files, &["--dtype", dtype]);
        assert_eq!(shape, [m, n]);
        let held: Vec<f32> = match format {
            Some(f) => dequantize(f, &quantize(f, &wv).unwrap()).unwrap(),
            None if dtype == "f16" => wv
                .iter()
                .map(|&x| half::f16::from_f32(x).to_f32())
                .collect(),
            None => wv.clone(),
        };
        if format.is_some() {
            assert!(
                stdout.contains(&format!("quantized to {dtype} and dequantized")),
                "{stdout}"
            );
        }
        let x = ndarray::ArrayView2::from_shape((m, k), &xv[..]).unwrap();
        let w = ndarray::ArrayView2::from_shape((n, k), &held[..]).unwrap();
        let want: Vec<f64> = pertoken::reference::linear(x, w, Some(&bv))
            .unwrap()
            .into_iter()
            .collect();
        let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
        assert!(cmp.passed(), "{dtype}: {cmp}");
    }
}

#[test]
fn the_decoder_ops_round_trip() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // RMSNorm over rows of a [2, 3, 40] x.
    let (xv, wv) = (uniform_f32(12, 6 * 40), uniform_f32(13, 40));
    save_f32(d, "x.npy", &[2, 3, 40], &xv);
    save_f32(d, "w.npy", &[40], &wv);
    let (shape, got, _) = run_ok(
        d,
        "rmsnorm",
        &[("x", "x.npy"), ("w", "w.npy")],
        &["--eps", "1e-6"],
    );
    assert_eq!(shape, [2, 3, 40]);
    let eps = f64::from(1e-6f32);
    let want: Vec<f64> = xv
        .chunks(40)
        .flat_map(|row| r::rms_norm(&f64s(row), &wv, eps))
        .collect();
    assert!(compare(&got, &want, Tolerance::F32.for_reduction(40, 1.0)).passed());
    // RoPE on [L, H, D] tokens first, out heads first, from position 7.
    let (l, h, hd) = (4, 3, 16);
    let rv = uniform_f32(14, l * h * hd);
    save_f32(d, "r.npy", &[l, h, hd], &rv);
    for (pairing, p) in [
        ("halves", pertoken::cost::RopePairing::Halves),
        ("interleaved", pertoken::cost::RopePairing::Interleaved),
    ] {
        let extra = ["--position", "7", "--theta", "500000", "--pairing", pairing];
        let (shape, got, _) = run_ok(d, "rope", &[("x", "r.npy")], &extra);
        assert_eq!(shape, [h, l, hd]);
        let rope = pertoken::cost::Rope {
            theta: 500_000.0,
            scaling: None,
        };
        let freqs = r::rope_frequencies(&rope, hd);
        let mut want = vec![0.0; l * h * hd];
        for i in 0..l {
            for j in 0..h {
                let mut head = f64s(&rv[(i * h + j) * hd..][..hd]);
                r::rope(&mut head, 7 + i, &freqs, p);
                want[(j * l + i) * hd..][..hd].copy_from_slice(&head);
            }
        }
        let cmp = compare(
            &got,
            &want,
            Tolerance {
                abs: 2e-5,
                rel: 2e-5,
            },
        );
        assert!(cmp.passed(), "{pairing}: {cmp}");
    }
    // SiLU-mul.
    let (gv, uv) = (uniform_f32(15, 5 * 30), uniform_f32(16, 5 * 30));
    save_f32(d, "g.npy", &[5, 30], &gv);
    save_f32(d, "u.npy", &[5, 30], &uv);
    let (_, got, _) = run_ok(d, "silu-mul", &[("g", "g.npy"), ("u", "u.npy")], &[]);
    assert!(compare(&got, &r::silu_mul(&f64s(&gv), &f64s(&uv)), Tolerance::F32).passed());
    // The embedding gather, ids in three integer dtypes, the table in q8_0.
    let (vocab, hid) = (20, 64);
    let tv = uniform_f32(17, vocab * hid);
    save_f32(d, "t.npy", &[vocab, hid], &tv);
    let ids = [3u32, 19, 0, 7, 7, 12];
    let bytes = |f: &dyn Fn(u32) -> Vec<u8>| ids.iter().flat_map(|&i| f(i)).collect::<Vec<u8>>();
    save_raw(
        d,
        "i64.npy",
        "<i8",
        &[2, 3],
        &bytes(&|i| i64::from(i).to_le_bytes().to_vec()),
    );
    save_raw(
        d,
        "i32.npy",
        "<i4",
        &[2, 3],
        &bytes(&|i| (i as i32).to_le_bytes().to_vec()),
    );
    save_raw(
        d,
        "u32.npy",
        "<u4",
        &[6],
        &bytes(&|i| i.to_le_bytes().to_vec()),
    );
    let held = dequantize(
        QuantFormat::Q8_0,
        &quantize(QuantFormat::Q8_0, &tv).unwrap(),
    )
    .unwrap();
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&i| f64s(&held[i as usize * hid..][..hid]))
        .collect();
    for (file, shape) in [
        ("i64.npy", vec![2, 3, hid]),
        ("i32.npy", vec![2, 3, hid]),
        ("u32.npy", vec![6, hid]),
    ] {
        let (s, got, _) = run_ok(
            d,
            "embedding",
            &[("table", "t.npy"), ("ids", file)],
            &["--dtype", "q8_0"],
        );
        assert_eq!(s, shape);
        assert!(
            compare(&got, &want, Tolerance { abs: 0.0, rel: 0.0 }).passed(),
            "{file}"
        );
    }
}

#[test]
fn operands_over_the_binding_limit_are_errors_where_no_split_exists() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save_f32(d, "big.npy", &[64, 64], &uniform_f32(18, 64 * 64)); // 16 KiB
    save_f32(d, "small.npy", &[2, 64], &uniform_f32(19, 2 * 64));
    let limit = ["--max-storage-binding", "4096", "--check"];
    // matmul binds a whole: an error naming the file, before anything runs.
    let (ok, _, stderr) = run(d, "matmul", &[("a", "big.npy"), ("b", "big.npy")], &limit);
    assert!(!ok);
    assert!(
        stderr.contains("big.npy (a)") && stderr.contains("storage-binding limit of 4096"),
        "{stderr}"
    );
    // linear splits w into windows: the same 16 KiB as w works.
    let (_, got, _) = run_ok(
        d,
        "linear",
        &[("x", "small.npy"), ("w", "big.npy")],
        &limit[..2],
    );
    assert_eq!(got.len(), 2 * 64);
    // ...but x is bound whole.
    let (ok, _, stderr) = run(d, "linear", &[("x", "big.npy"), ("w", "small.npy")], &limit);
    assert!(!ok && stderr.contains("big.npy (x)"), "{stderr}");
    // The fused RoPE kernel's cache grows with --position.
    save_f32(d, "r.npy", &[2, 1, 8], &uniform_f32(20, 16));
    let (ok, _, stderr) = run(
        d,
        "rope",
        &[("x", "r.npy")],
        &[
            "--position",
            "1000",
            "--max-storage-binding",
            "4096",
            "--check",
        ],
    );
    assert!(!ok && stderr.contains("--position"), "{stderr}");
}
