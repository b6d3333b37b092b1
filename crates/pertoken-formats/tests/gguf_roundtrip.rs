//! GGUF: what the writer writes, the reader reads back.

mod common;

use pertoken_formats::FormatError;
use pertoken_formats::gguf::write::GgufBuilder;
use pertoken_formats::gguf::{GgmlType, Gguf, Value, ValueType};

#[test]
fn every_value_type_round_trips() {
    let values: Vec<(&str, Value)> = vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1.5e-5)),
        ("bool", Value::Bool(false)),
        ("string", Value::String("héllo ✓".into())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(1e300)),
        ("empty", Value::Array(ValueType::U64, vec![])),
        ("strings", Value::strings(["a", "", "Ġworld"])),
        (
            "nested",
            Value::Array(
                ValueType::Array,
                vec![Value::f32s([1.0, 2.0]), Value::i32s([])],
            ),
        ),
    ];
    let mut b = GgufBuilder::new();
    for (k, v) in &values {
        b.set(*k, v.clone());
    }
    let g = Gguf::parse(b.to_bytes().unwrap(), "values.gguf").unwrap();
    assert_eq!(g.metadata().len(), values.len());
    for (k, v) in &values {
        assert_eq!(g.get(k), Some(v), "{k}");
    }
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert!(g.tensors().is_empty());
}

#[test]
fn tensors_round_trip_aligned() {
    let q4_0: Vec<u8> = (0..18 * 4).map(|i| (i * 7) as u8).collect();
    let q4_1: Vec<u8> = (0..20 * 2).map(|i| (i * 3) as u8).collect();
    let bf16: Vec<u8> = (0..10).collect();
    let other: Vec<u8> = vec![9; 5];
    let mut b = GgufBuilder::new();
    b.alignment(64).version(2);
    b.add_tensor("a.q4_0", GgmlType::Q4_0, &[64, 2], q4_0.clone());
    b.add_tensor("b.q4_1", GgmlType::Q4_1, &[32, 1, 2], q4_1.clone());
    b.add_tensor("c.bf16", GgmlType::BF16, &[5], bf16.clone());
    b.add_tensor("d.other", GgmlType::Other(99), &[7], other.clone());
    let bytes = b.to_bytes().unwrap();
    let g = Gguf::parse(bytes.as_slice(), "tensors.gguf").unwrap();
    assert_eq!((g.version(), g.alignment()), (2, 64));
    assert_eq!(g.data_start() % 64, 0);
    let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.q4_0", "b.q4_1", "c.bf16", "d.other"]);
    for (name, data) in [("a.q4_0", &q4_0), ("b.q4_1", &q4_1), ("c.bf16", &bf16)] {
        let (info, got) = g.tensor_data(name).unwrap();
        assert_eq!(info.offset % 64, 0);
        assert_eq!(got, data.as_slice(), "{name}");
        assert_eq!(info.size_bytes, data.len() as u64);
    }
    // Unknown layout: the size runs to the end of the file (no padding after the last tensor).
    let (info, got) = g.tensor_data("d.other").unwrap();
    assert_eq!(
        (info.ggml_type, got),
        (GgmlType::Other(99), other.as_slice())
    );
    assert_eq!(bytes.len() as u64, g.data_start() + info.offset + 5);

    let b_info = g.tensor("b.q4_1").unwrap();
    assert_eq!(b_info.dims, [32, 1, 2]);
    assert_eq!(b_info.shape_row_major(), [2, 1, 32]);
    assert_eq!(b_info.element_count(), 64);
}

#[test]
fn open_maps_a_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    common::sample_builder().write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.file(), path.display().to_string());
    let (info, data) = g.tensor_data("norm.weight").unwrap();
    assert_eq!(info.ggml_type, GgmlType::F32);
    let floats: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [1.0, 2.0, 3.0, 4.0]);

    let err = Gguf::open(dir.path().join("absent.gguf")).unwrap_err();
    assert!(matches!(err, FormatError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.gguf"), "{err}");
    std::fs::write(dir.path().join("empty.gguf"), b"").unwrap();
    let err = Gguf::open(dir.path().join("empty.gguf")).unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
}

#[test]
fn typed_getters_accept_compatible_types_and_name_key_and_type() {
    let mut b = common::sample_builder();
    b.set("neg", -1i32)
        .set("small", 7u8)
        .set("f64", 0.25f64)
        .set("big", u64::MAX);
    let g = Gguf::parse(b.to_bytes().unwrap(), "getters.gguf").unwrap();
    assert_eq!(g.u64_of("llama.block_count").unwrap(), 2);
    assert_eq!(g.u64_of("small").unwrap(), 7);
    assert_eq!(g.u64_of("big").unwrap(), u64::MAX);
    assert_eq!(g.f32_of("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(g.f32_of("f64").unwrap(), 0.25);
    assert_eq!(g.f32_opt("absent").unwrap(), None);
    assert_eq!(g.u64_opt("small").unwrap(), Some(7));
    assert!(g.bool_of("flag").unwrap());
    assert_eq!(g.str_of("general.architecture").unwrap(), "llama");
    assert_eq!(g.strings_of("tokens").unwrap(), ["a", "b", "ab"]);
    assert_eq!(g.ints_of("types").unwrap(), [1, 1, 3]);

    let err = g.u64_of("neg").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FormatError::WrongKeyType { .. }));
    assert!(
        msg.contains("getters.gguf") && msg.contains("\"neg\"") && msg.contains("i32 -1"),
        "{msg}"
    );
    let msg = g.str_of("llama.block_count").unwrap_err().to_string();
    assert!(msg.contains("expected a string, found u32 2"), "{msg}");
    let msg = g.f32_of("general.architecture").unwrap_err().to_string();
    assert!(msg.contains("string \"llama\""), "{msg}");
    let msg = g.strings_of("types").unwrap_err().to_string();
    assert!(msg.contains("array of 3 i32"), "{msg}");
    let err = g.u64_of("llama.context_length").unwrap_err();
    assert!(
        matches!(err, FormatError::MissingKey { ref key, .. } if key == "llama.context_length")
    );
    assert!(g.u64_opt("neg").is_err());
}

#[test]
fn tensor_lookup_errors_name_file_and_tensor() {
    let g = Gguf::parse(common::sample(), "lookup.gguf").unwrap();
    let msg = g.tensor("norm.bias").unwrap_err().to_string();
    assert!(
        msg.contains("lookup.gguf") && msg.contains("\"norm.bias\""),
        "{msg}"
    );
    assert!(msg.contains("similar: norm.weight"), "{msg}");

    assert!(
        g.tensor_checked("q8", &[2, 32], &GgmlType::SUPPORTED)
            .is_ok()
    );
    let err = g
        .tensor_checked("q8", &[32, 2], &GgmlType::SUPPORTED)
        .unwrap_err();
    let FormatError::ShapeMismatch {
        tensor,
        expected,
        found,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (tensor.as_str(), expected.as_slice(), found.as_slice()),
        ("q8", &[32, 2][..], &[2, 32][..])
    );
    let err = g
        .tensor_checked("q8", &[2, 32], &[GgmlType::F32])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FormatError::UnsupportedType { .. }));
    assert!(
        msg.contains("Q8_0") && msg.contains("supported: F32"),
        "{msg}"
    );
}

#[test]
fn builder_refuses_inconsistent_input() {
    let mut b = GgufBuilder::new();
    b.add_tensor("x", GgmlType::Q8_0, &[32], vec![0; 33]);
    assert!(matches!(b.to_bytes(), Err(FormatError::Build { .. })));
    let mut b = GgufBuilder::new();
    b.add_f32("x", &[1], &[0.0]).add_f32("x", &[1], &[0.0]);
    assert!(b.to_bytes().unwrap_err().to_string().contains("twice"));
    let mut b = GgufBuilder::new();
    b.alignment(3);
    assert!(b.to_bytes().is_err());
    let mut b = GgufBuilder::new();
    b.set(
        "mixed",
        Value::Array(ValueType::U8, vec![Value::U8(1), Value::I8(1)]),
    );
    assert!(b.to_bytes().is_err());
    let mut b = GgufBuilder::new();
    b.add_tensor("x", GgmlType::F32, &[], vec![]);
    assert!(b.to_bytes().is_err());
}
