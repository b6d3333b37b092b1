//! Model files: tiny GGUF and safetensors checkpoints written by the test (from synthetic
//! weights), loaded through the real readers and run against the reference; and damaged ones,
//! each an error naming the file, the tensor, what was expected and what was found.

mod common;

use std::path::Path;

use common::gguf::{ggml, gguf_meta, gguf_of};
use common::{BASE, KQUANT, Tiny, check_against_reference, prompt, reference_of};
use pertoken_cost::RopePairing;
use pertoken_formats::gguf::GgmlType;
use pertoken_gpu::DType;
use pertoken_gpu::testing::gpu_or_skip;
use pertoken_model::weights::{hf_tensor_name, tensor_name};
use pertoken_model::{GgufWeights, Role, SafetensorsWeights, Synthetic, WeightSource};
use pertoken_reference::{QuantFormat, quantize};

fn run(source: &dyn WeightSource, seed: u64) {
    let Some(gpu) = gpu_or_skip() else { return };
    let reference = reference_of(source);
    let p = prompt(seed, 7, source.spec().shape.vocab);
    if let Err(e) = check_against_reference(&gpu, source, &reference, &p, 3, 2e-5) {
        panic!("{}: {e}", source.describe());
    }
}

#[test]
fn a_llama_gguf_file_loads_and_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    // llama.cpp's llama files pair RoPE elements as neighbours; a tied Q4_1 head, as SmolLM2's.
    let tiny = Tiny {
        tied: true,
        pairing: RopePairing::Interleaved,
        ..BASE
    };
    let synthetic = Synthetic::new(tiny.spec(), DType::Q4_1, 41).unwrap();
    let path = dir.path().join("tiny.gguf");
    gguf_of(&synthetic, "llama", None, tiny.ffn)
        .write(&path)
        .unwrap();
    let file = GgufWeights::open(&path).unwrap();
    let mut want = synthetic.spec().clone();
    want.shape.name = "tiny test model".into();
    want.shape.source = file.spec().shape.source.clone();
    assert_eq!(file.spec(), &want, "metadata gives the shape");
    run(&file, 41);
}

#[test]
fn a_qwen2_gguf_file_with_biases_loads_and_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny {
        bias: true,
        kv_heads: 1,
        ..BASE
    };
    let synthetic = Synthetic::new(tiny.spec(), DType::F16, 42).unwrap();
    let path = dir.path().join("qwen.gguf");
    gguf_of(&synthetic, "qwen2", None, tiny.ffn)
        .write(&path)
        .unwrap();
    let file = GgufWeights::open(&path).unwrap();
    assert_eq!(file.spec().pairing, RopePairing::Halves);
    assert!(file.spec().shape.qkv_bias && !file.spec().shape.tied_embeddings);
    run(&file, 42);
}

/// The type llama.cpp's Q4_K_M recipe gives a matrix (llama-quant.cpp): Q6_K for the head, and
/// for attn_v and ffn_down on the layers `use_more_bits` picks; Q4_K elsewhere; a row that is
/// not whole super-blocks of 256 falls back (Q4_K → Q5_0, Q6_K → Q8_0).
fn q4_k_m(role: Role, layers: usize, k: usize) -> DType {
    let more_bits = |i: usize| i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2;
    let want = match role {
        Role::Output => DType::Q6_K,
        Role::V(l) | Role::Down(l) if more_bits(l) => DType::Q6_K,
        _ => DType::Q4_K,
    };
    match (want, k % 256) {
        (DType::Q6_K, 1..) => DType::Q8_0,
        (_, 1..) => DType::Q5_0,
        _ => want,
    }
}

#[test]
fn a_q4_k_m_mix_of_five_types_in_one_file_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    // Rows of 256 (hidden, 4 heads of 64) are super-blocks; the FFN's 288 is not, so ffn_down
    // falls back, to Q5_0 or (on layer 2 of 3, which use_more_bits picks) Q8_0: the five types
    // of the Gemma 3 270M Q4_K_M file, F32 norms included.
    let tiny = Tiny {
        layers: 3,
        ..KQUANT
    };
    let values = Synthetic::new(tiny.spec(), DType::F32, 47).unwrap();
    let mut b = gguf_meta(&values, "llama", tiny.ffn);
    let mut types = std::collections::BTreeSet::new();
    for role in Role::all(values.spec()) {
        let Some(t) = values.tensor(role).unwrap() else {
            continue;
        };
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        let dtype = if role.is_vector() {
            DType::F32
        } else {
            q4_k_m(role, tiny.layers as usize, t.shape[1])
        };
        types.insert(dtype.name());
        let bytes = match QuantFormat::from_name(dtype.name()) {
            Some(f) => quantize(f, &t.to_f32().unwrap()).unwrap(),
            None => t.bytes.to_vec(),
        };
        b.add_tensor(tensor_name(role), ggml(dtype), &dims, bytes);
    }
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["f32", "q4_k", "q5_0", "q6_k", "q8_0"]
    );
    let path = dir.path().join("q4_k_m.gguf");
    b.write(&path).unwrap();
    let file = GgufWeights::open(&path).unwrap();
    // Each tensor in its own type, read from the file.
    let stored = |r: Role| file.stored(r).unwrap().unwrap().0;
    assert_eq!(stored(Role::Q(0)), DType::Q4_K);
    assert_eq!(stored(Role::V(2)), DType::Q6_K);
    assert_eq!(stored(Role::V(1)), DType::Q4_K);
    assert_eq!(stored(Role::Down(0)), DType::Q5_0);
    assert_eq!(stored(Role::Down(2)), DType::Q8_0);
    assert_eq!(stored(Role::Output), DType::Q6_K);
    run(&file, 47);
}

fn open_err(path: &Path) -> String {
    GgufWeights::open(path).unwrap_err().to_string()
}

#[test]
fn damaged_gguf_model_files_are_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let synthetic = Synthetic::new(BASE.spec(), DType::Q4_0, 43).unwrap();
    let file = |name: &str| dir.path().join(name);

    // A missing tensor.
    let p = file("missing.gguf");
    gguf_of(&synthetic, "llama", Some("blk.1.ffn_up.weight"), BASE.ffn)
        .write(&p)
        .unwrap();
    let e = open_err(&p);
    assert!(
        e.contains("missing.gguf") && e.contains("blk.1.ffn_up.weight"),
        "{e}"
    );

    // Metadata that disagrees with a tensor's shape.
    let p = file("shape.gguf");
    gguf_of(&synthetic, "llama", None, BASE.ffn + 32)
        .write(&p)
        .unwrap();
    let e = open_err(&p);
    assert!(
        e.contains("shape.gguf") && e.contains("blk.0.ffn_gate.weight"),
        "{e}"
    );
    assert!(
        e.contains("192") && e.contains("160"),
        "expected and found: {e}"
    );

    // A tensor type the kernels do not read (IQ4_NL: 18 bytes per 32 values).
    let p = file("type.gguf");
    let mut b = gguf_of(&synthetic, "llama", Some("blk.0.attn_k.weight"), BASE.ffn);
    let kv = (BASE.kv_heads * BASE.head_dim) as usize;
    b.add_tensor(
        "blk.0.attn_k.weight",
        GgmlType::IQ4_NL,
        &[BASE.hidden, kv as u64],
        vec![7u8; kv * BASE.hidden as usize / 32 * 18],
    );
    b.write(&p).unwrap();
    let e = open_err(&p);
    assert!(
        e.contains("blk.0.attn_k.weight") && e.contains("IQ4_NL") && e.contains("Q4_K"),
        "{e}"
    );

    // An architecture this decoder does not run.
    let p = file("arch.gguf");
    gguf_of(&synthetic, "mamba", None, BASE.ffn)
        .write(&p)
        .unwrap();
    let e = open_err(&p);
    assert!(e.contains("mamba") && e.contains("llama"), "{e}");

    // Truncated, and bytes flipped through the header: errors, never a panic.
    let whole = gguf_of(&synthetic, "llama", None, BASE.ffn)
        .to_bytes()
        .unwrap();
    let p = file("cut.gguf");
    for cut in [10, 100, 1000, whole.len() / 2, whole.len() - 1] {
        std::fs::write(&p, &whole[..cut]).unwrap();
        let e = open_err(&p);
        assert!(e.contains("cut.gguf"), "cut at {cut}: {e}");
    }
    for at in (0..2000).step_by(7) {
        let mut bad = whole.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&p, &bad).unwrap();
        let _ = GgufWeights::open(&p);
    }
}

/// `source` as a Hugging Face checkpoint: config.json and model.safetensors with every matrix
/// in bf16 (as most checkpoints ship) and the norms in f32.
fn checkpoint(source: &dyn WeightSource, dir: &Path, skip: Option<&str>) {
    use safetensors::tensor::{Dtype, TensorView};
    let m = &source.spec().shape;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": match (m.arch.qk_norm, m.qkv_bias) {
            (true, _) => "qwen3",
            (false, true) => "qwen2",
            (false, false) => "llama",
        },
        "hidden_size": m.hidden,
        "intermediate_size": m.ffn,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "num_key_value_heads": m.kv_heads,
        "head_dim": m.head_dim,
        "vocab_size": m.vocab,
        "rms_norm_eps": m.rms_eps,
        "rope_theta": m.rope.theta,
        "tie_word_embeddings": m.tied_embeddings,
        "max_position_embeddings": 2048,
        "rope_scaling": m.rope.scaling.map(|s| serde_json::json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_context,
        })),
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut data = Vec::new();
    for role in Role::all(source.spec()) {
        let Some(t) = source.tensor(role).unwrap() else {
            continue;
        };
        let values = t.to_f32().unwrap();
        let (dtype, bytes) = if role.is_vector() {
            (Dtype::F32, bytemuck_f32(&values))
        } else {
            let b: Vec<u8> = values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect();
            (Dtype::BF16, b)
        };
        data.push((hf_tensor_name(role), dtype, t.shape.clone(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .filter(|(n, ..)| Some(n.as_str()) != skip)
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
}

fn bytemuck_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_safetensors_checkpoint_in_bf16_loads_and_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny {
        llama3: true,
        bias: true,
        ..BASE
    };
    let synthetic = Synthetic::new(tiny.spec(), DType::F32, 44).unwrap();
    checkpoint(&synthetic, dir.path(), None);
    let file = SafetensorsWeights::open(dir.path()).unwrap();
    assert_eq!(file.spec().shape.rope, synthetic.spec().shape.rope);
    assert_eq!(file.spec().pairing, RopePairing::Halves);
    // bf16 arrives as f16.
    assert_eq!(file.stored(Role::Q(0)).unwrap().unwrap().0, DType::F16);
    run(&file, 44);
}

#[test]
fn a_qwen3_safetensors_checkpoint_with_q_and_k_norms_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    // Heads of 64 on a hidden width of 96: config.json's head_dim, as Qwen3's.
    let tiny = Tiny {
        head_dim: 64,
        arch: pertoken_cost::Arch {
            qk_norm: true,
            ..Default::default()
        },
        ..BASE
    };
    let synthetic = Synthetic::new(tiny.spec(), DType::F32, 46).unwrap();
    checkpoint(&synthetic, dir.path(), None);
    let file = SafetensorsWeights::open(dir.path()).unwrap();
    assert!(file.spec().shape.arch.qk_norm);
    run(&file, 46);
    // A model_type whose block is not Llama's is refused, not run as Llama's.
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"qwen3\"", "\"gemma3_text\"")).unwrap();
    let e = SafetensorsWeights::open(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("gemma3_text") && e.contains("--gguf"), "{e}");
}

#[test]
fn damaged_safetensors_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let synthetic = Synthetic::new(BASE.spec(), DType::F32, 45).unwrap();
    checkpoint(
        &synthetic,
        dir.path(),
        Some("model.layers.1.mlp.down_proj.weight"),
    );
    let e = SafetensorsWeights::open(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.layers.1.mlp.down_proj.weight"), "{e}");
    checkpoint(&synthetic, dir.path(), None);
    let path = dir.path().join("model.safetensors");
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() - 100]).unwrap();
    let e = SafetensorsWeights::open(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = SafetensorsWeights::open(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn llama3_scaling_stored_as_gguf_rope_factors_matches_the_parametric_scaling() {
    use pertoken_model::{Decoder, DecoderOptions};
    use pertoken_reference::decoder::rope_frequencies;
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny {
        llama3: true,
        pairing: RopePairing::Interleaved,
        ..BASE
    };
    let synthetic = Synthetic::new(tiny.spec(), DType::Q8_0, 46).unwrap();
    let m = &synthetic.spec().shape;
    // llama.cpp's converter: factor = unscaled frequency / scaled frequency, per pair.
    let unscaled = pertoken_cost::Rope {
        scaling: None,
        ..m.rope
    };
    let d = m.head_dim as usize;
    let factors: Vec<f32> = rope_frequencies(&unscaled, d)
        .iter()
        .zip(rope_frequencies(&m.rope, d))
        .map(|(u, s)| (u / s) as f32)
        .collect();
    assert!(
        factors.iter().any(|&f| f > 1.0),
        "the scaling changes some pairs"
    );
    let mut b = gguf_of(&synthetic, "llama", None, tiny.ffn);
    b.add_f32("rope_freqs.weight", &[d as u64 / 2], &factors);
    let path = dir.path().join("llama3.gguf");
    b.write(&path).unwrap();
    let file = GgufWeights::open(&path).unwrap();
    assert_eq!(file.spec().rope_factors.as_deref(), Some(&factors[..]));
    assert_eq!(file.spec().shape.rope.scaling, None);
    run(&file, 46);

    // The same weights with the parametric scaling give the same logits.
    let p = prompt(46, 30, m.vocab);
    let options = DecoderOptions {
        context: 40,
        max_tokens: 30,
        batch: 1,
    };
    let mut logits = Vec::new();
    for source in [&synthetic as &dyn WeightSource, &file] {
        let mut dec = Decoder::load(&gpu, source, options).unwrap();
        dec.prefill(&p).unwrap();
        logits.push(dec.logits().unwrap());
    }
    let want: Vec<f64> = logits[0].iter().map(|&v| f64::from(v)).collect();
    let cmp = pertoken_reference::compare(&logits[1], &want, common::logits_tolerance(&want, 2e-5));
    assert!(cmp.passed(), "{cmp}");
}
