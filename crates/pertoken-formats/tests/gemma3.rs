//! The real K-quant test model: Gemma 3 270M, Q4_K_M GGUF (253 MB, from PyPI: see
//! scripts/fetch-test-model.sh). Skips with instructions when absent (fails under
//! PERTOKEN_REQUIRE_GPU=1). Its facts are in ../shared/formats.md, §C.

use std::collections::BTreeMap;

use pertoken_formats::gguf::{GgmlType, Gguf};
use pertoken_formats::testdata;
use pertoken_formats::tokenizer::Tokenizer;

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

/// Ids as llama.cpp gives them: control and user-defined tokens split out of the text, the
/// rest encoded by SentencePiece's own library (the `sentencepiece` PyPI package, 0.2.3) over a
/// BPE model built from the file's tokens, scores and types with byte fallback and no dummy
/// prefix, as Gemma's.
const KNOWN: &[(&str, &[u32])] = &[
    ("Hello world", &[9259, 1902]),
    (
        "The sky is blue because of Rayleigh scattering.",
        &[818, 7217, 563, 3730, 1547, 529, 121707, 19389, 236761],
    ),
    // Runs of spaces and newlines, and a tab, are user-defined tokens (138, 108, 107, 255968).
    (
        "  two leading spaces, tabs\tand\n\nnewlines\n",
        &[
            138, 13498, 5830, 9952, 236764, 42364, 255968, 624, 108, 208697, 107,
        ],
    ),
    (
        "naïve café 東京 🤖",
        &[1789, 238527, 560, 33443, 86459, 236743, 246143],
    ),
    // Control tokens written in the text: one id each.
    (
        "<start_of_turn>user\nHi<end_of_turn>",
        &[105, 2364, 107, 10979, 106],
    ),
    ("<h1>Title</h1>", &[184, 7396, 191]),
    ("\u{1} control byte", &[249732, 2256, 16812]),
    (
        "1234567890 + 3.14159",
        &[
            236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828, 236819, 236771, 900,
            236743, 236800, 236761, 236770, 236812, 236770, 236810, 236819,
        ],
    ),
    // U+E0041 and ᚠ are not in the vocabulary: their UTF-8 bytes, as <0xXX> tokens.
    (
        "\u{1F9EC}\u{E0041} \u{16A0}\u{2C80}",
        &[253633, 481, 398, 367, 367, 236743, 463, 392, 398, 244945],
    ),
];

#[test]
fn the_sentencepiece_tokenizer_gives_known_ids_and_decodes_back() {
    let Some(path) = testdata::gemma3_or_skip() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!((tok.bos(), tok.eos()), (Some(2), Some(1)));
    assert!(tok.is_special(105) && !tok.is_special(138));
    for &(text, ids) in KNOWN {
        assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
        assert_eq!(tok.decode(ids).unwrap(), text, "{text:?}");
    }
    // The file says add_bos_token = true: a prompt starts with BOS.
    assert!(tok.add_bos());
    let (text, ids) = KNOWN[0];
    let prompt = tok.encode_prompt(text).unwrap();
    assert_eq!((prompt[0], &prompt[1..]), (2, ids));
}
