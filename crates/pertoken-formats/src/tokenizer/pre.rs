//! The pre-tokenizers (how text is split into words before BPE) named by `tokenizer.ggml.pre`,
//! configured as the models' own Hugging Face `tokenizer.json` files do.

use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// The `tokenizer.ggml.pre` values implemented.
pub const SUPPORTED_PRE: &[&str] = &["gpt2", "smollm", "llama-bpe", "qwen2"];

/// Llama 3's split: case-insensitive contractions, letters with one leading non-letter, numbers
/// of up to three digits, punctuation runs, newlines, spaces.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one `tokenizer.ggml.pre` value tokenizes.
pub(crate) struct PreConfig {
    pub(crate) normalizer: Option<NormalizerWrapper>,
    pub(crate) pre_tokenizer: PreTokenizerWrapper,
    /// A word that is itself in the vocabulary is one token, whatever the merges say.
    pub(crate) ignore_merges: bool,
}

/// The configuration for `pre`, or `None` when it is not implemented.
pub(crate) fn pre_config(pre: &str) -> Option<Result<PreConfig, String>> {
    // GPT-2's own regex, inside the ByteLevel pre-tokenizer.
    let byte_level_regex = || ByteLevel::new(false, true, true).into();
    let split_then_bytes = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(pattern.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("pre-tokenizer regex: {e}"))?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])
        .into())
    };
    Some(match pre {
        "gpt2" => Ok(PreConfig {
            normalizer: None,
            pre_tokenizer: byte_level_regex(),
            ignore_merges: false,
        }),
        // SmolLM / SmolLM2: each digit alone, then GPT-2's split.
        "smollm" => Ok(PreConfig {
            normalizer: None,
            pre_tokenizer: Sequence::new(vec![Digits::new(true).into(), byte_level_regex()]).into(),
            ignore_merges: false,
        }),
        "llama-bpe" => split_then_bytes(LLAMA3_SPLIT).map(|pre_tokenizer| PreConfig {
            normalizer: None,
            pre_tokenizer,
            ignore_merges: true,
        }),
        "qwen2" => split_then_bytes(QWEN2_SPLIT).map(|pre_tokenizer| PreConfig {
            normalizer: Some(NFC.into()),
            pre_tokenizer,
            ignore_merges: false,
        }),
        _ => return None,
    })
}
