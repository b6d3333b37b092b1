//! The SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`) on a tiny hand-made
//! vocabulary: merges by score, the space prefix, byte fallback, whole tokens, damaged keys.
//! The real vocabulary (Gemma 3's 262,144 tokens) is checked against known ids in gemma3.rs.

use pertoken_formats::gguf::write::GgufBuilder;
use pertoken_formats::gguf::{Gguf, Value};
use pertoken_formats::tokenizer::Tokenizer;

/// (token, score, type): 1 normal, 3 control, 4 user-defined, 6 byte.
const VOCAB: &[(&str, f32, i32)] = &[
    ("<unk>", 0.0, 2),
    ("<s>", 0.0, 3),
    ("</s>", 0.0, 3),
    ("▁", -1.0, 1),
    ("a", -2.0, 1),
    ("b", -2.0, 1),
    ("c", -2.0, 1),
    // "ab" outranks "▁a", so "▁ab" is "▁" + "ab" merged last.
    ("ab", -0.5, 1),
    ("▁a", -0.7, 1),
    ("▁ab", -0.1, 1),
    ("bc", -0.6, 1),
    ("<tool>", 0.0, 4),
    ("<0x0A>", 0.0, 6),
    ("<0xC3>", 0.0, 6),
    ("<0xA9>", 0.0, 6),
];

fn id(token: &str) -> u32 {
    VOCAB.iter().position(|v| v.0 == token).unwrap() as u32
}

fn builder(prefix: Option<bool>) -> GgufBuilder {
    let mut b = GgufBuilder::new();
    b.set("tokenizer.ggml.model", "llama")
        .set(
            "tokenizer.ggml.tokens",
            Value::strings(VOCAB.iter().map(|v| v.0)),
        )
        .set(
            "tokenizer.ggml.scores",
            Value::f32s(VOCAB.iter().map(|v| v.1)),
        )
        .set(
            "tokenizer.ggml.token_type",
            Value::i32s(VOCAB.iter().map(|v| v.2)),
        )
        .set("tokenizer.ggml.bos_token_id", 1u32)
        .set("tokenizer.ggml.eos_token_id", 2u32);
    if let Some(p) = prefix {
        b.set("tokenizer.ggml.add_space_prefix", p);
    }
    b
}

fn tokenizer(b: &GgufBuilder) -> Result<Tokenizer, pertoken_formats::FormatError> {
    Tokenizer::from_gguf(&Gguf::parse(b.to_bytes().unwrap(), "spm.gguf").unwrap())
}

#[test]
fn merges_follow_scores_and_the_space_prefix_follows_the_file() {
    // No key: a space in front, as SentencePiece's dummy prefix (Llama 2).
    let t = tokenizer(&builder(None)).unwrap();
    // "▁abc": "ab" (−0.5) merges before "bc" (−0.6) and "▁a" (−0.7); then "▁"+"ab" (−0.1).
    assert_eq!(t.encode("abc").unwrap(), [id("▁ab"), id("c")]);
    // "▁bc": "bc" first; "▁bc" is not a token.
    assert_eq!(t.encode("bc").unwrap(), [id("▁"), id("bc")]);
    let t = tokenizer(&builder(Some(false))).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [id("ab"), id("c")]);
    assert_eq!(t.encode("a b").unwrap(), [id("a"), id("▁"), id("b")]);
    assert_eq!(t.decode(&t.encode("a b").unwrap()).unwrap(), "a b");
}

#[test]
fn unknown_characters_fall_back_to_bytes_and_whole_tokens_split_out() {
    let t = tokenizer(&builder(Some(false))).unwrap();
    // "é" is not a token: its UTF-8 bytes C3 A9. "\n" likewise.
    let ids = t.encode("a\u{e9}<tool>b\n<s>").unwrap();
    assert_eq!(
        ids,
        [
            id("a"),
            id("<0xC3>"),
            id("<0xA9>"),
            id("<tool>"),
            id("b"),
            id("<0x0A>"),
            id("<s>")
        ]
    );
    assert_eq!(t.decode(&ids).unwrap(), "a\u{e9}<tool>b\n<s>");
    // A byte with no <0xXX> token is an error that names it, not a wrong id.
    let err = t.encode("x").unwrap_err().to_string();
    assert!(err.contains("0x78") && err.contains("spm.gguf"), "{err}");
}

#[test]
fn damaged_scores_are_errors() {
    let mut b = builder(None);
    b.set("tokenizer.ggml.scores", Value::f32s([0.0; 3]));
    let err = tokenizer(&b).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.scores"), "{err}");
    let mut b = builder(None);
    b.set("tokenizer.ggml.scores", Value::strings(["x"; 15]));
    let err = tokenizer(&b).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.scores"), "{err}");
}
