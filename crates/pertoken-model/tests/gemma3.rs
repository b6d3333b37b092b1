//! The real K-quant model, whole: Gemma 3 270M's logits on fixed prompts and a greedy
//! continuation of 32 tokens against the f64 reference (its sandwich norms, q/k norms, GeGLU,
//! window pattern and √hidden embedding scale on real weights).
//!
//! Its tensors through the kernels: Gemma 3 270M's Q4_K_M GGUF (see
//! scripts/fetch-test-model.sh) holds Q4_K, Q6_K (one with a negative scale in its first block),
//! Q5_0 and Q8_0 matrices as llama.cpp wrote them. Each goes through the linear kernels (the
//! GEMV at a decode row, the prefill kernel at 17 rows) and the embedding gather as stored,
//! against the f64 reference on the same bytes dequantized. Skips with instructions when the
//! file is absent (fails under PERTOKEN_REQUIRE_GPU=1).

mod common;

use ndarray::ArrayView2;
use pertoken_formats::gguf::Gguf;
use pertoken_formats::testdata;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_gpu::{DType, Tensor};
use pertoken_reference::random::uniform_f32;
use pertoken_reference::{QuantFormat, Tolerance, compare, dequantize};

/// The tensor `name` as stored (a PyTorch-layout `[N, K]` weight), its bytes and its format.
fn stored<'g>(
    gpu: &pertoken_gpu::Gpu,
    g: &'g Gguf,
    name: &str,
) -> (Tensor, &'g [u8], QuantFormat, [usize; 2]) {
    let (info, bytes) = g.tensor_data(name).unwrap();
    let shape: Vec<usize> = info.shape_row_major().iter().map(|&d| d as usize).collect();
    let dtype = DType::weight_named(&info.ggml_type.to_string().to_lowercase()).unwrap();
    let format = QuantFormat::from_name(dtype.name()).unwrap();
    let t = Tensor::from_quantized(gpu, bytes, &shape, dtype).unwrap();
    (t, bytes, format, [shape[0], shape[1]])
}

#[test]
fn real_k_quant_tensors_through_linear_and_the_embedding_gather() {
    let Some(gpu) = gpu_or_skip() else { return };
    let Some(path) = testdata::gemma3_or_skip() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    for (name, dtype) in [
        ("blk.0.attn_output.weight", DType::Q4_K),
        ("blk.0.ffn_down.weight", DType::Q6_K),
        ("blk.0.attn_q.weight", DType::Q5_0),
        ("blk.0.attn_v.weight", DType::Q8_0),
    ] {
        let (w, bytes, format, [n, k]) = stored(&gpu, &g, name);
        assert_eq!(w.dtype(), dtype, "{name}");
        let wv = dequantize(format, bytes).unwrap();
        for m in [1, 17] {
            let xv = uniform_f32(m as u64 * 7 + k as u64, m * k);
            let x = Tensor::from_slice(&gpu, &xv, &[m, k]).unwrap();
            let y = pertoken_matmul::linear(&gpu, &x, &w, None).unwrap();
            let got = y.to_vec::<f32>().unwrap();
            let xa = ArrayView2::from_shape((m, k), &xv[..]).unwrap();
            let wa = ArrayView2::from_shape((n, k), &wv[..]).unwrap();
            let want: Vec<f64> = pertoken_reference::linear(xa, wa, None)
                .unwrap()
                .iter()
                .copied()
                .collect();
            let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
            assert!(cmp.passed(), "{name} ({dtype}) at {m} rows: {cmp}");
        }
    }
    // The tied embedding (Q8_0, 262144 × 640: 178 MB, over lavapipe's 128 MiB binding limit, so
    // gathered in windows): a few rows across the table.
    let (table, bytes, format, [_, h]) = stored(&gpu, &g, "token_embd.weight");
    let row = bytes.len() / table.shape()[0];
    let ids: Vec<u32> = vec![2, 105, 106, 131_071, 200_000, 262_143];
    let tokens = Tensor::from_slice(&gpu, &ids, &[ids.len()]).unwrap();
    let out = Tensor::zeros(&gpu, &[ids.len(), h], DType::F32).unwrap();
    out.fill(f32::NAN).unwrap();
    pertoken_model::ops::embed(&gpu, &table, &tokens, (0, ids.len()), &out, 0).unwrap();
    let got = out.to_vec::<f32>().unwrap();
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&id| {
            let at = id as usize * row;
            dequantize(format, &bytes[at..at + row]).unwrap()
        })
        .map(f64::from)
        .collect();
    let cmp = compare(&got, &want, Tolerance { abs: 0.0, rel: 0.0 });
    assert!(cmp.passed(), "token_embd rows: {cmp}");
}

/// Logits within this fraction of the largest: 18 layers of f32 arithmetic against f64.
const REL: f64 = 1e-4;

#[test]
fn gemma3_matches_the_reference_on_prompts_and_a_greedy_continuation() {
    let Some(path) = testdata::gemma3_or_skip() else {
        return;
    };
    let Some(gpu) = gpu_or_skip() else { return };
    let source = pertoken_model::GgufWeights::open(&path).unwrap();
    let m = &pertoken_model::WeightSource::spec(&source).shape;
    assert_eq!(
        (m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim),
        (18, 640, 4, 1, 256)
    );
    assert_eq!(m.layer_window(0), Some(512));
    assert_eq!(m.layer_window(5), None, "every sixth layer is global");
    // Text, then code: runs of spaces and newlines are user-defined tokens of their own.
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):\n    if n <= 1:\n        return n\n",
    ];
    common::real_model_matches_the_reference(&gpu, &source, &prompts, REL, 32);
}
