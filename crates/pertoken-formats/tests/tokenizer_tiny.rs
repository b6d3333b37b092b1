//! The GGUF tokenizer on a tiny hand-made vocabulary written with the GGUF writer.

use pertoken_formats::FormatError;
use pertoken_formats::gguf::write::GgufBuilder;
use pertoken_formats::gguf::{Gguf, Value};
use pertoken_formats::tokenizer::byte_level::bytes_to_token;
use pertoken_formats::tokenizer::{SUPPORTED_PRE, Tokenizer};

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [&str; 10] = [
    "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2",
];

/// Ids: 0..3 the control tokens, 3..259 the bytes in order, then one per merge, then the
/// user-defined "<tool>".
fn vocab() -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3; 3];
    for b in 0..=255u8 {
        tokens.push(bytes_to_token(&[b]));
        types.push(1);
    }
    for m in MERGES {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    tokens.push("<tool>".into());
    types.push(4);
    (tokens, types)
}

fn builder(pre: &str) -> GgufBuilder {
    let (tokens, types) = vocab();
    let mut b = GgufBuilder::new();
    b.set("tokenizer.ggml.model", "gpt2")
        .set("tokenizer.ggml.pre", pre)
        .set("tokenizer.ggml.tokens", Value::strings(tokens))
        .set("tokenizer.ggml.token_type", Value::i32s(types))
        .set("tokenizer.ggml.merges", Value::strings(MERGES))
        .set("tokenizer.ggml.bos_token_id", 1u32)
        .set("tokenizer.ggml.eos_token_id", 2u32);
    b
}

fn tokenizer_from(b: &GgufBuilder) -> Result<Tokenizer, FormatError> {
    Tokenizer::from_gguf(&Gguf::parse(b.to_bytes().unwrap(), "tiny.gguf").unwrap())
}

fn tiny(pre: &str) -> Tokenizer {
    tokenizer_from(&builder(pre)).unwrap()
}

fn byte_id(b: u8) -> u32 {
    3 + u32::from(b)
}

#[test]
fn merges_apply_and_specials_are_one_token() {
    let t = tiny("smollm");
    let hello = t.token_to_id("hello").unwrap();
    let world = t.token_to_id("Ġworld").unwrap();
    assert_eq!((hello, world), (262, 267));
    assert_eq!(t.encode("hello world").unwrap(), [hello, world]);
    assert_eq!(
        t.encode("<|im_start|>hello<|im_end|>").unwrap(),
        [1, hello, 2]
    );
    assert_eq!(
        t.encode("a<tool>b").unwrap(),
        [byte_id(b'a'), 269, byte_id(b'b')]
    );
    assert_eq!(t.encode("").unwrap(), Vec::<u32>::new());
    assert_eq!(
        (t.bos(), t.eos(), t.vocab_size(), t.pre()),
        (Some(1), Some(2), 270, "smollm")
    );
    assert!(t.is_special(1) && !t.is_special(hello) && !t.is_special(269));
    assert_eq!(t.token(world), Some("Ġworld"));
}

#[test]
fn smollm_splits_digits_gpt2_does_not() {
    let digits = [byte_id(b'1'), byte_id(b'2'), byte_id(b'3')];
    assert_eq!(tiny("smollm").encode("123").unwrap(), digits);
    let twelve = tiny("gpt2").token_to_id("12").unwrap();
    assert_eq!(tiny("gpt2").encode("123").unwrap(), [twelve, byte_id(b'3')]);
    assert_eq!(tiny("qwen2").encode("123").unwrap(), digits);
}

#[test]
fn every_pre_tokenizer_builds_and_round_trips() {
    let text = "hello world, it's 2024!\n\n  Ünïcödé 🌍🚀 tabs\tand\r\nCRLF  ";
    for pre in SUPPORTED_PRE {
        let t = tiny(pre);
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), text, "{pre}");
        assert_eq!(t.encode("hello world").unwrap()[0], 262, "{pre}");
    }
}

#[test]
fn stream_holds_back_incomplete_characters() {
    let t = tiny("smollm");
    let ids = t.encode("a🌍b").unwrap();
    assert_eq!(ids.len(), 6); // the emoji is four byte tokens
    let mut s = t.stream();
    let out: Vec<String> = ids.iter().map(|&id| s.push(id).unwrap()).collect();
    assert_eq!(out, ["a", "", "", "", "🌍", "b"]);
    assert!(s.pending().is_empty());
    // An incomplete character at the end, then an invalid byte.
    let mut s = t.stream();
    assert_eq!(s.push(byte_id(0xF0)).unwrap(), "");
    assert_eq!(s.pending(), [0xF0]);
    assert_eq!(s.finish(), "\u{FFFD}");
    assert_eq!(s.push(byte_id(0xE2)).unwrap(), "");
    assert_eq!(s.push(byte_id(b'x')).unwrap(), "\u{FFFD}x");
    assert_eq!(
        t.decode(&[byte_id(0xE2), byte_id(b'x')]).unwrap(),
        "\u{FFFD}x"
    );
    assert_eq!(s.push(1).unwrap(), "<|im_start|>");
    assert!(matches!(
        s.push(9999),
        Err(FormatError::UnknownToken { id: 9999, .. })
    ));
}

#[test]
fn stream_equals_decode_on_any_split() {
    let t = tiny("smollm");
    let text = "héllo wörld 🌍 ✓\n";
    let ids = t.encode(text).unwrap();
    let mut s = t.stream();
    let streamed: String = ids.iter().map(|&id| s.push(id).unwrap()).collect();
    assert_eq!(streamed + &s.finish(), t.decode(&ids).unwrap());
}

#[test]
fn bos_starts_a_prompt_where_the_file_says() {
    // BPE without the key: no BOS (llama.cpp's default for gpt2 vocabularies).
    let t = tiny("smollm");
    assert!(!t.add_bos());
    let hello = t.token_to_id("hello").unwrap();
    assert_eq!(t.encode_prompt("hello").unwrap(), [hello]);
    let mut b = builder("smollm");
    b.set("tokenizer.ggml.add_bos_token", true);
    let t = tokenizer_from(&b).unwrap();
    assert_eq!(t.encode_prompt("hello").unwrap(), [1, hello]);
    // A key of the wrong type is an error naming it.
    b.set("tokenizer.ggml.add_bos_token", 1u32);
    let e = tokenizer_from(&b).unwrap_err().to_string();
    assert!(e.contains("add_bos_token"), "{e}");
}

#[test]
fn bad_tokenizer_metadata_is_an_error() {
    let err_of = |b: &GgufBuilder| tokenizer_from(b).unwrap_err().to_string();
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.model", "rwkv"));
    assert!(
        msg.contains("tiny.gguf") && msg.contains("\"rwkv\"") && msg.contains("gpt2"),
        "{msg}"
    );
    assert!(msg.contains("SentencePiece"), "{msg}");
    // A SentencePiece vocabulary needs its scores.
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.model", "llama"));
    assert!(msg.contains("tokenizer.ggml.scores"), "{msg}");
    let msg = err_of(&builder("deepseek-llm"));
    assert!(
        msg.contains("\"deepseek-llm\"") && msg.contains("smollm"),
        "{msg}"
    );
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.merges", Value::strings(["he"])));
    assert!(msg.contains("merges[0]"), "{msg}");
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.merges", Value::strings(["q z"])));
    assert!(msg.contains("tokenizer"), "{msg}");
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.token_type", Value::i32s([1])));
    assert!(msg.contains("1 entries for 270 tokens"), "{msg}");
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.eos_token_id", 270u32));
    assert!(msg.contains("tokenizer.ggml.eos_token_id is 270"), "{msg}");
    let msg = err_of(builder("gpt2").set("tokenizer.ggml.tokens", 5u32));
    assert!(
        msg.contains("expected an array of strings, found u32 5"),
        "{msg}"
    );

    let mut b = builder("gpt2");
    b.set("tokenizer.ggml.pre", 1u8);
    let g = Gguf::parse(b.to_bytes().unwrap(), "tiny.gguf").unwrap();
    assert!(Tokenizer::from_gguf(&g).is_err());
    assert!(Tokenizer::from_gguf_with_pre(&g, "gpt2").is_ok());
    assert!(matches!(
        tiny("gpt2").decode(&[270]),
        Err(FormatError::UnknownToken { .. })
    ));
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<Gguf>();
    check::<pertoken_formats::safetensors::Safetensors>();
    let t = tiny("gpt2");
    assert!(format!("{t:?}").contains("vocab_size: 270"));
}
