//! The tokenizers a GGUF file carries: byte-level (GPT-2 style) BPE (`tokenizer.ggml.model =
//! "gpt2"`: Llama 3, Qwen, SmolLM2) and SentencePiece (`"llama"`: Gemma, Llama 2, Phi-3; see
//! [`spm`]).
//!
//! BPE encoding is Hugging Face's `tokenizers` crate (pure Rust build: fancy-regex, no C), set up
//! from the GGUF keys: a BPE model from `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`,
//! the pre-tokenizer named by `tokenizer.ggml.pre` (see [`SUPPORTED_PRE`]), and the control
//! tokens (`tokenizer.ggml.token_type` 3) as special tokens, so `<|im_start|>` in the text is
//! one token; user-defined tokens (type 4) are matched whole too. Decoding maps each token back
//! to its bytes here, so that [`StreamDecoder`] and [`Tokenizer::decode`] agree byte for byte.

pub mod byte_level;
mod pre;
mod spm;
mod stream;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::error::{FormatError, Result};
use crate::gguf::Gguf;

pub use pre::SUPPORTED_PRE;
pub use stream::StreamDecoder;

/// `tokenizer.ggml.token_type` of a control (special) token.
pub const TOKEN_TYPE_CONTROL: i64 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token.
pub const TOKEN_TYPE_USER_DEFINED: i64 = 4;
/// `tokenizer.ggml.token_type` of a byte-fallback token (`<0x41>`).
pub const TOKEN_TYPE_BYTE: i64 = 6;

/// How text becomes ids.
enum Engine {
    /// Byte-level BPE, through the `tokenizers` crate.
    Bpe(Box<HfTokenizer>),
    /// SentencePiece merges by score.
    Spm(Box<spm::Spm>),
}

/// A tokenizer read from a GGUF file.
pub struct Tokenizer {
    file: String,
    pre: String,
    engine: Engine,
    tokens: Vec<String>,
    /// `piece_ends[id]` is where token `id`'s bytes end in `piece_bytes`.
    piece_bytes: Vec<u8>,
    piece_ends: Vec<usize>,
    special: Vec<bool>,
    bos: Option<u32>,
    add_bos: bool,
    eos: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("file", &self.file)
            .field("pre", &self.pre)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl Tokenizer {
    /// The tokenizer of `gguf`, with the pre-tokenizer its `tokenizer.ggml.pre` names.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        if gguf.str_of("tokenizer.ggml.model")? == "llama" {
            return Self::sentencepiece(gguf);
        }
        let pre = gguf.str_of("tokenizer.ggml.pre")?;
        Self::from_gguf_with_pre(gguf, pre)
    }

    /// The tokenizer of `gguf`, with the pre-tokenizer `pre` (one of [`SUPPORTED_PRE`]) in
    /// place of the file's: for files whose `tokenizer.ggml.pre` is missing or unknown.
    pub fn from_gguf_with_pre(gguf: &Gguf, pre: &str) -> Result<Self> {
        let file = gguf.file().to_owned();
        let model = gguf.str_of("tokenizer.ggml.model")?;
        if model == "llama" {
            return Self::sentencepiece(gguf);
        }
        if model != "gpt2" {
            return Err(FormatError::UnsupportedTokenizer {
                file,
                found: format!("tokenizer.ggml.model {model:?}"),
                supported: "\"gpt2\" (byte-level BPE), \"llama\" (SentencePiece)".into(),
            });
        }
        let config = match pre::pre_config(pre) {
            Some(Ok(config)) => config,
            Some(Err(reason)) => return Err(FormatError::Tokenizer { file, reason }),
            None => {
                return Err(FormatError::UnsupportedTokenizer {
                    file,
                    found: format!("tokenizer.ggml.pre {pre:?}"),
                    supported: format!(
                        "{}; Tokenizer::from_gguf_with_pre can force one",
                        SUPPORTED_PRE.join(", ")
                    ),
                });
            }
        };
        let Vocabulary {
            tokens,
            types,
            bos,
            eos,
            add_bos,
        } = Vocabulary::read(gguf)?;
        let n = tokens.len();

        let merges = gguf
            .strings_of("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
                _ => Err(FormatError::corrupt(
                    &file,
                    format!("tokenizer.ggml.merges[{i}] is {m:?}, not two tokens split by a space"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut vocab = Vocab::default();
        for (id, t) in tokens.iter().enumerate() {
            vocab.entry(t.clone()).or_insert(id as u32);
        }
        let tk_err = |e: tokenizers::Error| FormatError::Tokenizer {
            file: file.clone(),
            reason: e.to_string(),
        };
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(config.ignore_merges)
            .build()
            .map_err(tk_err)?;
        let mut inner = Box::new(HfTokenizer::new(bpe));
        inner.with_normalizer(config.normalizer);
        inner.with_pre_tokenizer(Some(config.pre_tokenizer));

        let special: Vec<bool> = types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect();
        let added = |want: i64, special: bool| -> Vec<AddedToken> {
            let pairs = tokens.iter().zip(&types);
            pairs
                .filter(|&(t, &ty)| ty == want && !t.is_empty())
                .map(|(t, _)| AddedToken::from(t.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));

        let mut piece_bytes = Vec::new();
        let mut piece_ends = Vec::with_capacity(n);
        for (t, &ty) in tokens.iter().zip(&types) {
            if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                piece_bytes.extend_from_slice(t.as_bytes());
            } else {
                for c in t.chars() {
                    match byte_level::char_to_byte(c) {
                        Some(b) => piece_bytes.push(b),
                        // Not in the byte alphabet: the character stands for itself.
                        None => {
                            piece_bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes())
                        }
                    }
                }
            }
            piece_ends.push(piece_bytes.len());
        }
        Ok(Self {
            file,
            pre: pre.to_owned(),
            engine: Engine::Bpe(inner),
            tokens,
            piece_bytes,
            piece_ends,
            special,
            bos,
            add_bos: add_bos.unwrap_or(false),
            eos,
        })
    }

    /// The token ids of `text`; control tokens written in the text (`<|im_start|>`) are one id
    /// each. No BOS is added: see [`bos`](Self::bos).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let err = |e: String| FormatError::Tokenizer {
            file: self.file.clone(),
            reason: format!("encoding {} bytes of text: {e}", text.len()),
        };
        match &self.engine {
            Engine::Bpe(inner) => Ok(inner
                .encode_fast(text, false)
                .map_err(|e| err(e.to_string()))?
                .get_ids()
                .to_vec()),
            Engine::Spm(spm) => spm.encode(text).map_err(err),
        }
    }

    /// The text of `ids`, special tokens included as their text. Bytes that do not form valid
    /// UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A decoder that turns ids into text as they arrive.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The bytes token `id` stands for.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        let i = id as usize;
        if i >= self.piece_ends.len() {
            return Err(FormatError::UnknownToken {
                file: self.file.clone(),
                id,
                vocab_size: self.piece_ends.len(),
            });
        }
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        Ok(&self.piece_bytes[start..self.piece_ends[i]])
    }

    /// Token `id` as written in the vocabulary (byte-level form: `Ġworld` for " world";
    /// SentencePiece's: `▁world`).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary entry (byte-level form), or of an added token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.engine {
            Engine::Bpe(inner) => inner.token_to_id(token),
            Engine::Spm(spm) => spm.id(token),
        }
    }

    /// Whether `id` is a control token (`tokenizer.ggml.token_type` 3).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// `tokenizer.ggml.bos_token_id`, if the file has it.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Whether a prompt starts with BOS: `tokenizer.ggml.add_bos_token`, else (as llama.cpp)
    /// yes for SentencePiece and no for BPE.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// A prompt's ids: BOS first where [`add_bos`](Self::add_bos) says, then
    /// [`encode`](Self::encode)'s.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.filter(|_| self.add_bos).into_iter().collect();
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// `tokenizer.ggml.eos_token_id`, if the file has it.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The pre-tokenizer in use (a `tokenizer.ggml.pre` value; `default` for SentencePiece).
    pub fn pre(&self) -> &str {
        &self.pre
    }

    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// A SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`), with its scores.
    fn sentencepiece(gguf: &Gguf) -> Result<Self> {
        let file = gguf.file().to_owned();
        let Vocabulary {
            tokens,
            types,
            bos,
            eos,
            add_bos,
        } = Vocabulary::read(gguf)?;
        let scores = gguf.floats_of("tokenizer.ggml.scores")?;
        if scores.len() != tokens.len() {
            return Err(FormatError::corrupt(
                &file,
                format!(
                    "tokenizer.ggml.scores has {} entries for {} tokens",
                    scores.len(),
                    tokens.len()
                ),
            ));
        }
        let add_space_prefix = match gguf.get("tokenizer.ggml.add_space_prefix") {
            Some(_) => gguf.bool_of("tokenizer.ggml.add_space_prefix")?,
            None => true,
        };
        let mut piece_bytes = Vec::new();
        let mut piece_ends = Vec::with_capacity(tokens.len());
        for (t, &ty) in tokens.iter().zip(&types) {
            spm::piece_bytes(t, ty, &mut piece_bytes);
            piece_ends.push(piece_bytes.len());
        }
        let special = types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect();
        let pre = gguf
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default")
            .to_owned();
        Ok(Self {
            engine: Engine::Spm(Box::new(spm::Spm::new(
                &tokens,
                scores,
                &types,
                add_space_prefix,
            ))),
            file,
            pre,
            tokens,
            piece_bytes,
            piece_ends,
            special,
            bos,
            add_bos: add_bos.unwrap_or(true),
            eos,
        })
    }
}

/// What every GGUF tokenizer has: its tokens, their types, BOS and EOS.
struct Vocabulary {
    tokens: Vec<String>,
    types: Vec<i64>,
    bos: Option<u32>,
    eos: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`, if the file says.
    add_bos: Option<bool>,
}

impl Vocabulary {
    fn read(gguf: &Gguf) -> Result<Vocabulary> {
        let file = gguf.file().to_owned();
        let tokens: Vec<String> = gguf
            .strings_of("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let n = tokens.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(FormatError::corrupt(
                &file,
                format!("tokenizer.ggml.tokens has {n} tokens"),
            ));
        }
        let types = match gguf.get("tokenizer.ggml.token_type") {
            Some(_) => gguf.ints_of("tokenizer.ggml.token_type")?,
            None => vec![1; n],
        };
        if types.len() != n {
            return Err(FormatError::corrupt(
                &file,
                format!(
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    types.len()
                ),
            ));
        }
        let id_key = |key: &str| -> Result<Option<u32>> {
            match gguf.u64_opt(key)? {
                Some(id) if id < n as u64 => Ok(Some(id as u32)),
                Some(id) => Err(FormatError::corrupt(
                    &file,
                    format!("{key} is {id}, outside the vocabulary of {n} tokens"),
                )),
                None => Ok(None),
            }
        };
        let bos = id_key("tokenizer.ggml.bos_token_id")?;
        let eos = id_key("tokenizer.ggml.eos_token_id")?;
        let add_bos = match gguf.get("tokenizer.ggml.add_bos_token") {
            Some(_) => Some(gguf.bool_of("tokenizer.ggml.add_bos_token")?),
            None => None,
        };
        Ok(Vocabulary {
            tokens,
            types,
            bos,
            eos,
            add_bos,
        })
    }
}
