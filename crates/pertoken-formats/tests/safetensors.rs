//! Safetensors checkpoints and config.json: small files written here, whole and damaged.

use half::{bf16, f16};
use pertoken_formats::FormatError;
use pertoken_formats::safetensors::{
    Dtype, Floats, LlamaConfig, RopeScaling, Safetensors, bf16_to_f16,
};
use safetensors::tensor::TensorView;

fn le<T: Copy>(values: &[T], to: fn(T) -> Vec<u8>) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

/// A file with an F32 [2, 3], a BF16 [4] and an I64 [1] tensor.
fn sample_bytes() -> Vec<u8> {
    let f32s = le(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], |v| {
        v.to_le_bytes().to_vec()
    });
    let bf16s = le(&[1.0f32, -0.5, 3.140625, 1e-3], |v| {
        bf16::from_f32(v).to_le_bytes().to_vec()
    });
    let i64s = 7i64.to_le_bytes().to_vec();
    let views = [
        (
            "w.f32",
            TensorView::new(safetensors::Dtype::F32, vec![2, 3], &f32s).unwrap(),
        ),
        (
            "w.bf16",
            TensorView::new(safetensors::Dtype::BF16, vec![4], &bf16s).unwrap(),
        ),
        (
            "steps",
            TensorView::new(safetensors::Dtype::I64, vec![1], &i64s).unwrap(),
        ),
    ];
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn tensors_by_name_with_shape_and_dtype() {
    let st = Safetensors::parse(sample_bytes(), "model.safetensors").unwrap();
    assert_eq!(st.names(), ["steps", "w.bf16", "w.f32"]);
    let t = st.tensor("w.f32").unwrap();
    assert_eq!(
        (t.dtype, t.shape.as_slice(), t.data.len()),
        (Dtype::F32, &[2, 3][..], 24)
    );
    assert_eq!(t.to_f32(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(matches!(t.to_f16_or_f32().unwrap(), Floats::F32(b) if b.as_ref() == t.data));

    let b = st.tensor("w.bf16").unwrap();
    let want: Vec<f32> = [1.0f32, -0.5, 3.140625, 1e-3]
        .map(|v| bf16::from_f32(v).to_f32())
        .to_vec();
    assert_eq!(b.to_f32(), want);
    assert_eq!(&want[..3], [1.0, -0.5, 3.140625]);
    let Floats::F16(h) = b.to_f16_or_f32().unwrap() else {
        panic!("F16")
    };
    let h: Vec<f32> = h
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    let want16: Vec<f32> = want.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    assert_eq!(h, want16);

    let err = st.tensor("steps").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FormatError::UnsupportedType { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("\"steps\"") && msg.contains("I64"),
        "{msg}"
    );
    let msg = st.tensor("lm_head.weight").unwrap_err().to_string();
    assert!(msg.contains("no tensor named \"lm_head.weight\""), "{msg}");
    let err = st.tensor_checked("w.f32", &[3, 2]).unwrap_err();
    assert!(
        matches!(err, FormatError::ShapeMismatch { ref expected, ref found, .. } if expected == &[3, 2] && found == &[2, 3])
    );
}

#[test]
fn bf16_to_f16_rounds_to_nearest_and_refuses_overflow() {
    // Exact in both: 1 + 2^-8, 65280 (the largest bf16 below f16's max); a subnormal f16.
    let vals = [1.0 + 1.0 / 256.0, 65280.0, f32::INFINITY, 5.9604645e-8];
    let bytes = le(&vals, |v| bf16::from_f32(v).to_le_bytes().to_vec());
    let out = bf16_to_f16(&bytes).unwrap();
    let got: Vec<f16> = out
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]))
        .collect();
    let want: Vec<f16> = vals
        .iter()
        .map(|&v| f16::from_f32(bf16::from_f32(v).to_f32()))
        .collect();
    assert_eq!(got, want);
    assert!(got[2].is_infinite());
    // Below f16's normal range, to the nearest subnormal: 0.75 and 0.25 of the smallest one.
    let tiny = le(&[3.0 * 2f32.powi(-26), 2f32.powi(-26)], |v| {
        bf16::from_f32(v).to_le_bytes().to_vec()
    });
    assert_eq!(bf16_to_f16(&tiny).unwrap(), [1, 0, 0, 0]);
    let big = le(&[1.0f32, 1e5], |v| bf16::from_f32(v).to_le_bytes().to_vec());
    let (index, value) = bf16_to_f16(&big).unwrap_err();
    assert_eq!(index, 1);
    assert!((value - 1e5).abs() < 500.0);
}

#[test]
fn every_truncation_and_a_long_header_are_errors() {
    let bytes = sample_bytes();
    for len in 0..bytes.len() {
        let err = Safetensors::parse(&bytes[..len], "cut.safetensors").unwrap_err();
        assert!(err.to_string().contains("cut.safetensors"), "{len}: {err}");
    }
    let err = Safetensors::parse(&bytes[..bytes.len() - 1], "cut.safetensors").unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
    let err = Safetensors::parse(&bytes[..4], "cut.safetensors").unwrap_err();
    assert!(
        matches!(err, FormatError::Truncated { needed: 8, .. }),
        "{err}"
    );

    let mut long = bytes.clone();
    long[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    let err = Safetensors::parse(long, "long.safetensors").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FormatError::Truncated { .. }) && msg.contains("JSON header"),
        "{msg}"
    );
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Safetensors::parse(huge, "huge.safetensors").is_err());

    let mut trailing = bytes.clone();
    trailing.push(0);
    let msg = Safetensors::parse(trailing, "t.safetensors")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("corrupt"), "{msg}");
}

#[test]
fn damaged_headers_name_the_tensor() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[8,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 16]);
    let msg = Safetensors::parse(bytes, "bad.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"b\"") && msg.contains("data_offsets"),
        "{msg}"
    );

    let mut bytes = 5u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{nope");
    let msg = Safetensors::parse(bytes, "bad.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bad.safetensors: corrupt") && msg.contains("JSON"),
        "{msg}"
    );

    let mut flipped_ok = 0;
    let good = sample_bytes();
    for pos in 0..good.len() {
        let mut b = good.clone();
        b[pos] ^= 0x5A;
        flipped_ok += usize::from(Safetensors::parse(b, "flip.safetensors").is_ok());
    }
    assert!(flipped_ok < good.len());
}

#[test]
fn sharded_checkpoints_open_from_index_or_dir() {
    let dir = tempfile::tempdir().unwrap();
    let a = 1.5f32.to_le_bytes();
    let b = [0u8, 0x3C]; // f16 1.0
    let view_a = TensorView::new(safetensors::Dtype::F32, vec![1], &a).unwrap();
    let view_b = TensorView::new(safetensors::Dtype::F16, vec![1, 1], &b).unwrap();
    let shard1 = safetensors::serialize([("a", view_a)], None).unwrap();
    let shard2 = safetensors::serialize([("b", view_b)], None).unwrap();
    std::fs::write(dir.path().join("model-00001-of-00002.safetensors"), shard1).unwrap();
    std::fs::write(dir.path().join("model-00002-of-00002.safetensors"), shard2).unwrap();
    let index = r#"{"metadata":{"total_size":6},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();

    let st = Safetensors::open(dir.path()).unwrap();
    assert_eq!(st.names(), ["a", "b"]);
    assert_eq!(st.files().len(), 2);
    assert_eq!(st.tensor("a").unwrap().to_f32(), [1.5]);
    let b = st.tensor("b").unwrap();
    assert_eq!((b.dtype, b.to_f32()), (Dtype::F16, vec![1.0]));
    assert!(b.file.ends_with("model-00002-of-00002.safetensors"));

    let wrong = r#"{"weight_map":{"a":"model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.path().join("wrong.index.json"), wrong).unwrap();
    let msg = Safetensors::open(dir.path().join("wrong.index.json"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("model-00002-of-00002.safetensors") && msg.contains("\"a\""),
        "{msg}"
    );
    std::fs::write(
        dir.path().join("escape.index.json"),
        r#"{"weight_map":{"a":"../x"}}"#,
    )
    .unwrap();
    assert!(Safetensors::open(dir.path().join("escape.index.json")).is_err());
    let msg = Safetensors::open(dir.path().join("nothing"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nothing"), "{msg}");

    std::fs::write(dir.path().join("model.safetensors"), sample_bytes()).unwrap();
    let single = Safetensors::open_file(dir.path().join("model.safetensors")).unwrap();
    assert_eq!(single.names().len(), 3);
}

const SMOLLM2_CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576, "intermediate_size": 1536,
  "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 9,
  "num_hidden_layers": 30, "num_key_value_heads": 3, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "vocab_size": 49152
}"#;

#[test]
fn config_json_defaults_and_variants() {
    let c = LlamaConfig::from_json(SMOLLM2_CONFIG, "config.json").unwrap();
    assert_eq!(
        (c.hidden_size, c.num_key_value_heads, c.head_dim),
        (576, 3, 64)
    );
    assert_eq!(
        (c.rope_theta, c.rms_norm_eps, c.tie_word_embeddings),
        (100000.0, 1e-5, true)
    );
    assert_eq!(
        (c.rope_scaling.clone(), c.qkv_bias, c.eos_token_ids.clone()),
        (None, false, vec![2])
    );

    let minimal = r#"{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":10,"rms_norm_eps":1e-6,"max_position_embeddings":16,
        "model_type":"qwen2"}"#;
    let c = LlamaConfig::from_json(minimal, "config.json").unwrap();
    assert_eq!(
        (c.num_key_value_heads, c.head_dim, c.rope_theta),
        (4, 16, 10000.0)
    );
    assert!(c.qkv_bias && !c.tie_word_embeddings && c.architectures.is_empty());

    let llama31 = SMOLLM2_CONFIG
        .replace(
            r#""rope_scaling": null"#,
            r#""rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
           "head_dim": 128, "eos_token_id": [128001, 128009]"#,
        )
        .replace(r#""eos_token_id": 2,"#, "");
    let c = LlamaConfig::from_json(&llama31, "config.json").unwrap();
    assert_eq!(c.head_dim, 128);
    assert_eq!(c.eos_token_ids, [128001, 128009]);
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        })
    );

    let bad = |json: &str| {
        LlamaConfig::from_json(json, "cfg/config.json")
            .unwrap_err()
            .to_string()
    };
    let msg = bad(&SMOLLM2_CONFIG.replace(r#""hidden_size": 576,"#, ""));
    assert!(
        msg.contains("cfg/config.json") && msg.contains("hidden_size"),
        "{msg}"
    );
    let msg =
        bad(&SMOLLM2_CONFIG.replace(r#""num_key_value_heads": 3"#, r#""num_key_value_heads": 2"#));
    assert!(
        msg.contains("not a multiple of num_key_value_heads 2"),
        "{msg}"
    );
    let msg = bad(&SMOLLM2_CONFIG.replace(
        r#""rope_scaling": null"#,
        r#""rope_scaling": {"rope_type": "llama3", "factor": 8.0}"#,
    ));
    assert!(msg.contains("low_freq_factor"), "{msg}");
    let msg = bad(&SMOLLM2_CONFIG.replace("1e-05", "0"));
    assert!(msg.contains("rms_norm_eps is 0"), "{msg}");
    let yarn = SMOLLM2_CONFIG.replace(
        r#""rope_scaling": null"#,
        r#""rope_scaling": {"type": "yarn", "factor": 4.0}"#,
    );
    let c = LlamaConfig::from_json(&yarn, "config.json").unwrap();
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling::Other {
            rope_type: "yarn".into()
        })
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), SMOLLM2_CONFIG).unwrap();
    assert_eq!(
        LlamaConfig::open(dir.path().join("config.json"))
            .unwrap()
            .vocab_size,
        49152
    );
}
