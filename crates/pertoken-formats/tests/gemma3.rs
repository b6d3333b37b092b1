//! The real K-quant test model: Gemma 3 270M, Q4_K_M GGUF (253 MB, from PyPI: see
//! scripts/fetch-test-model.sh). Skips with instructions when absent (fails under
//! PERTOKEN_REQUIRE_GPU=1). Its facts are in ../shared/formats.md, §C.

use std::collections::BTreeMap;

use pertoken_formats::gguf::{GgmlType, Gguf};
use pertoken_formats::testdata;

#[test]
fn metadata_and_the_tensor_census_of_a_q4_k_m_file() {
    let Some(path) = testdata::gemma3_or_skip() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.str_of("general.architecture").unwrap(), "gemma3");
    assert_eq!(g.u64_of("general.file_type").unwrap(), 15, "MOSTLY_Q4_K_M");
    assert_eq!(g.u64_of("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(g.u64_of("gemma3.block_count").unwrap(), 18);
    assert_eq!(g.u64_of("gemma3.attention.key_length").unwrap(), 256);
    assert_eq!(g.u64_of("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(g.str_of("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(g.tensors().len(), 236);
    // Five types in one file, each tensor its own (llama.cpp's Q4_K_M recipe, with the
    // fallbacks of rows that are not whole super-blocks: n_embd 640).
    let mut census: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in g.tensors() {
        let e = census.entry(t.ggml_type.to_string()).or_default();
        e.0 += 1;
        e.1 += t.size_bytes;
        assert!(t.ggml_type.is_supported(), "{}: {}", t.name, t.ggml_type);
    }
    let want: BTreeMap<String, (usize, u64)> = [
        ("F32", (109, 223_744)),
        ("Q8_0", (10, 179_824_640)),
        ("Q5_0", (81, 43_591_680)),
        ("Q4_K", (27, 13_271_040)),
        ("Q6_K", (9, 9_676_800)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(census, want);
    let ty = |name: &str| g.tensor(name).unwrap().ggml_type;
    assert_eq!(ty("blk.0.attn_output.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.5.ffn_down.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q8_0);
    assert_eq!(ty("blk.5.attn_v.weight"), GgmlType::Q5_0);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q8_0);
    assert!(g.tensor("output.weight").is_err(), "the head is tied");
}
