//! The real test model: SmolLM2-135M-Instruct, Q4_1 GGUF. Skips with instructions when absent
//! (fails under PERTOKEN_REQUIRE_GPU=1).

use std::sync::OnceLock;

use pertoken_formats::gguf::{GgmlType, Gguf};
use pertoken_formats::testdata;
use pertoken_formats::tokenizer::Tokenizer;

fn model() -> Option<&'static (Gguf, Tokenizer)> {
    static MODEL: OnceLock<Option<(Gguf, Tokenizer)>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = testdata::smollm2_or_skip()?;
            let gguf = Gguf::open(&path).unwrap();
            let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
            Some((gguf, tokenizer))
        })
        .as_ref()
}

fn id_of(g: &Gguf, token: &str) -> u32 {
    let tokens = g.strings_of("tokenizer.ggml.tokens").unwrap();
    tokens
        .iter()
        .position(|t| *t == token)
        .unwrap_or_else(|| panic!("{token} in vocab")) as u32
}

#[test]
fn metadata_and_tensors() {
    let Some((g, _)) = model() else { return };
    assert_eq!(g.version(), 3);
    assert_eq!(g.str_of("general.architecture").unwrap(), "llama");
    assert_eq!(g.u64_of("llama.block_count").unwrap(), 30);
    assert_eq!(g.u64_of("llama.embedding_length").unwrap(), 576);
    assert_eq!(g.u64_of("llama.attention.head_count").unwrap(), 9);
    assert_eq!(g.u64_of("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(g.f32_of("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(g.tensors().len(), 2 + 30 * 9);
    let embd = g
        .tensor_checked("token_embd.weight", &[49152, 576], &GgmlType::SUPPORTED)
        .unwrap();
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    let q = g
        .tensor_checked("blk.0.attn_q.weight", &[576, 576], &GgmlType::SUPPORTED)
        .unwrap();
    assert_eq!(
        (q.ggml_type, q.size_bytes),
        (GgmlType::Q4_1, 576 * 576 / 32 * 20)
    );
    for t in g.tensors() {
        assert_eq!(g.tensor_bytes(t).len() as u64, t.size_bytes, "{}", t.name);
    }
    assert!(g.tensor("output.weight").is_err()); // tied to token_embd
}

#[test]
fn special_tokens_are_single_ids() {
    let Some((g, t)) = model() else { return };
    for (token, id) in [("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)] {
        assert_eq!(id_of(g, token), id);
        assert_eq!(t.encode(token).unwrap(), [id], "{token}");
        assert!(t.is_special(id));
    }
    assert_eq!((t.bos(), t.eos()), (Some(1), Some(2)));
    let ids = t.encode("<|im_start|>user\nHi<|im_end|>\n").unwrap();
    assert_eq!((ids[0], ids[ids.len() - 2]), (1, 2));
}

#[test]
fn hello_world_and_digits() {
    let Some((g, t)) = model() else { return };
    assert_eq!(
        t.encode("Hello world").unwrap(),
        [id_of(g, "Hello"), id_of(g, "Ġworld")]
    );
    let digits: Vec<u32> = "9876501234"
        .chars()
        .map(|c| id_of(g, &c.to_string()))
        .collect();
    assert_eq!(t.encode("9876501234").unwrap(), digits);
    let ids = t.encode("In 2024, 37 cats").unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| t.token(i).unwrap()).collect();
    assert_eq!(
        pieces,
        ["In", "Ġ", "2", "0", "2", "4", ",", "Ġ", "3", "7", "Ġcats"]
    );
}

#[test]
fn varied_text_round_trips_and_streams() {
    let Some((_, t)) = model() else { return };
    let text = "Hello, world!  Ça va? Grüße — naïve café.\n\n\tTabs\r\nand CRLF.\n日本語のテキスト、中文、한국어.\n\
                Emoji: 🌍🚀👩‍👩‍👧 ✓ ∑ x² ≠ y³\n   trailing spaces   \n<|im_start|>assistant\nfn main() { println!(\"{}\", 1_000); }";
    let ids = t.encode(text).unwrap();
    assert_eq!(t.decode(&ids).unwrap(), text);
    let mut s = t.stream();
    let mut streamed = String::new();
    for &id in &ids {
        streamed.push_str(&s.push(id).unwrap());
    }
    assert!(s.pending().is_empty());
    assert_eq!(streamed, text);
}
