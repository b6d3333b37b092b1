//! Attention kernels against the f64 reference, on seeded inputs with NaN-poisoned outputs.

use pertoken_attention::{AttentionOptions, Kernel, TeamKnobs, attention_into, team_candidates};
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Error, Gpu, GpuOptions, Tensor};
use pertoken_reference::{AttentionShape, Tolerance, random::uniform_f32};

mod common;
use common::{against_reference, per_key_tolerance};

#[derive(Debug, Clone, Copy)]
struct Case {
    heads: (usize, usize),
    d: usize,
    q_len: usize,
    kv_len: usize,
    causal: bool,
    f16: bool,
}

fn upload(gpu: &Gpu, v: &[f32], shape: &[usize], f16: bool) -> (Tensor, Vec<f32>) {
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    Tensor::from_f32_as(gpu, v, shape, dtype).unwrap()
}

fn run(gpu: &Gpu, c: Case, kernel: Kernel) -> Result<(), String> {
    let (nh, nkv) = c.heads;
    let seed = (nh * 1000 + c.d * 10 + c.q_len * 7 + c.kv_len) as u64;
    // Scaled so that scores span a few units: softmax neither flat nor one-hot.
    let scale_in = 2.0;
    let qv: Vec<f32> = uniform_f32(seed, nh * c.q_len * c.d)
        .iter()
        .map(|x| x * scale_in)
        .collect();
    let kv: Vec<f32> = uniform_f32(seed + 1, nkv * c.kv_len * c.d)
        .iter()
        .map(|x| x * scale_in)
        .collect();
    let vv = uniform_f32(seed + 2, nkv * c.kv_len * c.d);
    let (q, qv) = upload(gpu, &qv, &[nh, c.q_len, c.d], c.f16);
    let (k, kv) = upload(gpu, &kv, &[nkv, c.kv_len, c.d], c.f16);
    let (v, vv) = upload(gpu, &vv, &[nkv, c.kv_len, c.d], c.f16);
    let out = Tensor::zeros(gpu, &[nh, c.q_len, c.d], DType::F32).unwrap();
    out.fill(f32::NAN).unwrap();
    let options = AttentionOptions {
        causal: c.causal,
        scale: None,
        window: None,
    };
    attention_into(gpu, &q, &k, &v, &out, options, kernel).map_err(|e| format!("{c:?}: {e}"))?;
    let got = out.to_vec::<f32>().unwrap();
    let shape = AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: c.d,
        q_len: c.q_len,
        kv_len: c.kv_len,
        causal: c.causal,
    };
    let cmp = against_reference(&got, (&qv, &kv, &vv), shape, per_key_tolerance(c.kv_len));
    if cmp.passed() {
        Ok(())
    } else {
        Err(format!("{c:?} {kernel:?}: {cmp}"))
    }
}

/// Every (q_len, kv_len) pair of the lengths, for every head configuration and head dimension,
/// causal (where q_len ≤ kv_len) and not.
fn cases(f16: bool) -> Vec<Case> {
    let lens = [1usize, 2, 17, 64, 65, 200];
    let heads = [(1usize, 1usize), (4, 4), (8, 2), (8, 1), (32, 8)];
    let dims = [32usize, 64, 80, 128];
    let mut out = Vec::new();
    for &h in &heads {
        for &d in &dims {
            for &q_len in &lens {
                for &kv_len in &lens {
                    for causal in [false, true] {
                        if causal && q_len > kv_len {
                            continue;
                        }
                        out.push(Case {
                            heads: h,
                            d,
                            q_len,
                            kv_len,
                            causal,
                            f16,
                        });
                    }
                }
            }
        }
    }
    out
}

fn assert_all(gpu: &Gpu, cases: &[Case], kernel: Kernel) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&c| run(gpu, c, kernel).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn flash_f32_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    assert_all(&gpu, &cases(false), Kernel::Flash);
}

#[test]
fn flash_f16_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    assert_all(&gpu, &cases(true), Kernel::Flash);
}

/// The packed-u32 f16 path, which adapters without shader-f16 run: a device created without it.
#[test]
fn flash_f16_without_shader_f16_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let packed = Gpu::new(&GpuOptions {
        shader_f16: Some(false),
        ..GpuOptions::from_env().unwrap()
    })
    .unwrap();
    assert!(!packed.capabilities().shader_f16);
    let cs: Vec<Case> = cases(true).into_iter().step_by(3).collect();
    assert_all(&packed, &cs, Kernel::Flash);
    drop(gpu);
}

/// The shader-f16 path wherever the adapter has the feature (by default CPU adapters use the
/// packed path, so this is the test that runs it there).
#[test]
fn flash_f16_with_shader_f16_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    drop(gpu);
    let native = Gpu::new(&GpuOptions {
        shader_f16: Some(true),
        ..GpuOptions::from_env().unwrap()
    })
    .unwrap();
    if !native.capabilities().shader_f16 {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    let cs: Vec<Case> = cases(true).into_iter().step_by(3).collect();
    assert_all(&native, &cs, Kernel::Flash);
}

#[test]
fn naive_baseline_matches_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cs: Vec<Case> = cases(false).into_iter().step_by(5).collect();
    assert_all(&gpu, &cs, Kernel::Naive);
}

#[test]
fn prefill_causal_square_and_decode_shapes() {
    let Some(gpu) = gpu_or_skip() else { return };
    for (q_len, kv_len) in [(200, 200), (1, 200), (8, 200), (129, 129)] {
        for f16 in [false, true] {
            let c = Case {
                heads: (8, 2),
                d: 64,
                q_len,
                kv_len,
                causal: true,
                f16,
            };
            run(&gpu, c, Kernel::Flash).unwrap();
        }
    }
}

#[test]
fn decode_with_head_dims_the_decode_kernel_does_not_take() {
    // Not a multiple of 8: one query runs the flash kernel instead. Also group sizes 3 and 6,
    // whose workgroups take 3 heads each.
    let Some(gpu) = gpu_or_skip() else { return };
    for (heads, d) in [
        ((4, 2), 36),
        ((8, 8), 20),
        ((6, 2), 64),
        ((12, 2), 120),
        ((6, 1), 8),
    ] {
        for kv_len in [1, 9, 300] {
            for f16 in [false, true] {
                let c = Case {
                    heads,
                    d,
                    q_len: 1,
                    kv_len,
                    causal: true,
                    f16,
                };
                run(&gpu, c, Kernel::Flash).unwrap();
            }
        }
    }
}

/// Head dimensions over 128 (the kernels' wide variants), up to 256: through the team kernel
/// (multiples of 8) and the flash kernel (the others), f32 and f16, causal and not.
#[test]
fn wide_head_dims_up_to_256() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut cases = Vec::new();
    for (heads, d) in [((8, 2), 256), ((4, 4), 136), ((2, 1), 132), ((4, 2), 250)] {
        for (q_len, kv_len) in [(1, 1), (1, 200), (8, 65), (17, 17), (65, 17), (64, 200)] {
            for causal in [false, true] {
                for f16 in [false, true] {
                    if !(causal && q_len > kv_len) {
                        cases.push(Case {
                            heads,
                            d,
                            q_len,
                            kv_len,
                            causal,
                            f16,
                        });
                    }
                }
            }
        }
    }
    assert_all(&gpu, &cases, Kernel::Flash);
    let naive: Vec<Case> = cases
        .iter()
        .copied()
        .filter(|c| !c.f16)
        .step_by(4)
        .collect();
    assert_all(&gpu, &naive, Kernel::Naive);
    // The f16 cases again through the other f16 path (f16 loads with shader-f16, or packed
    // words), where the adapter has both: by default GPUs take the first, CPU adapters the second.
    let other = Gpu::new(&GpuOptions {
        shader_f16: Some(!gpu.capabilities().shader_f16),
        ..GpuOptions::from_env().unwrap()
    })
    .unwrap();
    if other.capabilities().shader_f16 != gpu.capabilities().shader_f16 {
        let f16: Vec<Case> = cases.into_iter().filter(|c| c.f16).collect();
        assert_all(&other, &f16, Kernel::Flash);
    }
}

/// Every candidate plan `pertoken bench --decode-plans` may time, a GPU's and a CPU adapter's,
/// runs through Kernel::Team on this adapter and matches the reference.
#[test]
fn every_team_candidate_matches_the_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let probe = pertoken_attention::AttentionShape {
        n_heads: 1,
        n_kv_heads: 1,
        head_dim: 8,
        q_len: 1,
        kv_len: 1,
    };
    if !pertoken_attention::team_kernel_applies(&probe, gpu.capabilities()) {
        eprintln!("skipped: the team kernel does not run on this adapter");
        return;
    }
    let mut failures = Vec::new();
    for (heads, d, q_len, kv_len) in [
        ((32, 8), 128, 1, 300),
        ((8, 2), 64, 8, 2100),
        ((4, 4), 256, 3, 70),
    ] {
        let s = pertoken_attention::AttentionShape {
            n_heads: heads.0,
            n_kv_heads: heads.1,
            head_dim: d,
            q_len,
            kv_len,
        };
        for cpu in [false, true] {
            for knobs in team_candidates(&s, cpu) {
                for f16 in [false, true] {
                    let c = Case {
                        heads,
                        d,
                        q_len,
                        kv_len,
                        causal: true,
                        f16,
                    };
                    if let Err(e) = run(&gpu, c, Kernel::Team(knobs)) {
                        failures.push(format!("{knobs:?}: {e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn team_kernel_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let t = |shape: &[usize]| {
        Tensor::from_slice(&gpu, &uniform_f32(1, shape.iter().product()), shape).unwrap()
    };
    let opts = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    let s = pertoken_attention::AttentionShape {
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 36,
        q_len: 1,
        kv_len: 5,
    };
    let knobs = TeamKnobs::heuristic(&s, gpu.capabilities().cpu);
    // head_dim 36 is not a multiple of 8: the team kernel does not take it.
    let (q, kv) = (t(&[2, 1, 36]), t(&[1, 5, 36]));
    let err = pertoken_attention::attention_with(&gpu, &q, &kv, &kv, opts, Kernel::Team(knobs))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    // Knobs out of range.
    let (q, kv) = (t(&[2, 1, 32]), t(&[1, 5, 32]));
    let bad = TeamKnobs { teams: 3, ..knobs };
    let err = pertoken_attention::attention_with(&gpu, &q, &kv, &kv, opts, Kernel::Team(bad))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
}

#[test]
fn large_logits_do_not_overflow() {
    let Some(gpu) = gpu_or_skip() else { return };
    // Scores around ±200: exp without the running max would overflow f32.
    let (nh, d, l) = (2usize, 32usize, 40usize);
    let q: Vec<f32> = uniform_f32(1, nh * l * d)
        .iter()
        .map(|x| x * 30.0)
        .collect();
    let k: Vec<f32> = uniform_f32(2, nh * l * d)
        .iter()
        .map(|x| x * 30.0)
        .collect();
    let v = uniform_f32(3, nh * l * d);
    let tq = Tensor::from_slice(&gpu, &q, &[nh, l, d]).unwrap();
    let tk = Tensor::from_slice(&gpu, &k, &[nh, l, d]).unwrap();
    let tv = Tensor::from_slice(&gpu, &v, &[nh, l, d]).unwrap();
    let options = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    let got = pertoken_attention::attention(&gpu, &tq, &tk, &tv, options)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let shape = AttentionShape {
        n_heads: nh,
        n_kv_heads: nh,
        head_dim: d,
        q_len: l,
        kv_len: l,
        causal: true,
    };
    let tolerance = Tolerance {
        abs: 1e-4,
        rel: 1e-4,
    };
    let cmp = against_reference(&got, (&q, &k, &v), shape, tolerance);
    assert!(cmp.passed(), "{cmp}");
}

#[test]
fn bad_inputs_are_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let t = |shape: &[usize]| {
        Tensor::from_slice(&gpu, &uniform_f32(1, shape.iter().product()), shape).unwrap()
    };
    let opts = AttentionOptions {
        causal: false,
        scale: None,
        window: None,
    };
    let q = t(&[3, 4, 32]);
    let kv = t(&[2, 5, 32]);
    assert!(matches!(
        pertoken_attention::attention(&gpu, &q, &kv, &kv, opts),
        Err(Error::ShapeMismatch { .. })
    ));
    let q = t(&[4, 4, 32]);
    let k16 = t(&[2, 5, 16]);
    assert!(matches!(
        pertoken_attention::attention(&gpu, &q, &k16, &k16, opts),
        Err(Error::ShapeMismatch { .. })
    ));
    let causal = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    let q6 = t(&[2, 6, 32]);
    let kv5 = t(&[2, 5, 32]);
    assert!(pertoken_attention::attention(&gpu, &q6, &kv5, &kv5, causal).is_err());
    let big = t(&[1, 2, 264]);
    assert!(matches!(
        pertoken_attention::attention(&gpu, &big, &big, &big, opts),
        Err(Error::Unsupported { .. })
    ));
    let q2 = t(&[2, 4, 32]);
    assert!(matches!(
        pertoken_attention::attention(&gpu, &q2, &t(&[2, 4]), &kv5, opts),
        Err(Error::InvalidShape { .. })
    ));
    // A scale that is not finite would silently give zeros.
    for scale in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let o = AttentionOptions {
            causal: false,
            scale: Some(scale),
            window: None,
        };
        let err = pertoken_attention::attention(&gpu, &q, &q, &q, o).unwrap_err();
        assert!(err.to_string().contains("finite"), "{err}");
    }
}

#[test]
fn longer_sequences_at_head_dim_128() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut failures = Vec::new();
    for (q_len, kv_len) in [(256, 256), (255, 255), (1, 300), (64, 256), (300, 300)] {
        for causal in [false, true] {
            for f16 in [false, true] {
                let c = Case {
                    heads: (2, 1),
                    d: 128,
                    q_len,
                    kv_len,
                    causal,
                    f16,
                };
                if let Err(e) = run(&gpu, c, Kernel::Flash) {
                    failures.push(e.chars().take(200).collect::<String>());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
