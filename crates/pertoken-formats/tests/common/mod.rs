//! Shared helpers for the GGUF tests: a small sample file and byte patching.
#![allow(dead_code, unreachable_pub, missing_docs)]

use pertoken_formats::gguf::write::GgufBuilder;
use pertoken_formats::gguf::{GgmlType, Value, ValueType};

/// A small file with a few metadata types and three tensors.
pub fn sample_builder() -> GgufBuilder {
    let mut b = GgufBuilder::new();
    b.set("general.architecture", "llama")
        .set("general.alignment", 32u32)
        .set("llama.block_count", 2u32)
        .set("llama.rope.freq_base", 10000.0f32)
        .set("flag", true)
        .set("tokens", Value::strings(["a", "b", "ab"]))
        .set("types", Value::i32s([1, 1, 3]));
    b.add_f32("norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0]);
    b.add_tensor(
        "q8",
        GgmlType::Q8_0,
        &[32, 2],
        (0..68).map(|i| i as u8).collect::<Vec<_>>(),
    );
    b.add_tensor("f16", GgmlType::F16, &[3], vec![1, 2, 3, 4, 5, 6]);
    b
}

pub fn sample() -> Vec<u8> {
    sample_builder().to_bytes().unwrap()
}

/// The position of the first occurrence of `needle`.
pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern in file")
}

/// Position just after GGUF string `s` (its u64 length and bytes) in the file.
pub fn after_string(bytes: &[u8], s: &str) -> usize {
    let mut pat = (s.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(s.as_bytes());
    find(bytes, &pat) + pat.len()
}

pub fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Where the data offset of tensor `name` (with `n_dims` dims) is stored.
pub fn tensor_offset_pos(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    after_string(bytes, name) + 4 + 8 * n_dims + 4
}

/// A file of one metadata entry of raw, hand-made value bytes (type id, then payload).
pub fn one_kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(payload);
    let padded = out.len().next_multiple_of(32);
    out.resize(padded, 0);
    out
}

pub const STRING: u32 = ValueType::String as u32;
pub const ARRAY: u32 = ValueType::Array as u32;
