//! SentencePiece tokenization as llama.cpp runs it for `tokenizer.ggml.model = "llama"` (Gemma,
//! Llama 2, Phi-3): the vocabulary's scores rank merges, and text is encoded by merging adjacent
//! symbols (UTF-8 characters at first) into the highest-scoring vocabulary entry, again and
//! again (`llm_tokenizer_spm` in llama-vocab.cpp; SentencePiece's BPE model does the same).
//!
//! - Control and user-defined tokens written in the text are split out of it first, longest
//!   first, and are one id each (Gemma's runs of spaces and newlines are user-defined tokens).
//! - Between them, spaces become `▁` (U+2581), with one put in front where the file asks
//!   (`tokenizer.ggml.add_space_prefix`, true when absent; Gemma says false).
//! - A symbol no merge reached and the vocabulary lacks (a rare character) falls back to its
//!   UTF-8 bytes, each the token `<0xXX>`.
//!
//! Decoding maps `▁` back to a space and byte tokens to their byte.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// A SentencePiece vocabulary, ready to encode.
pub(crate) struct Spm {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
    /// Control and user-defined tokens, longest first.
    whole: Vec<(String, u32)>,
    add_space_prefix: bool,
}

/// A candidate merge of symbols `left` and `right` into a token of `score`, `size` bytes long.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher scores first; between equal scores, the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

/// A run of the text: bytes `start .. start + len` (len 0 once merged into its left neighbour).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// The byte a byte-fallback token (`<0x41>`) stands for.
pub(crate) fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

impl Spm {
    /// From the vocabulary's tokens, scores and types (`tokenizer.ggml.token_type`: 3 control,
    /// 4 user-defined, 6 byte).
    pub(crate) fn new(
        tokens: &[String],
        scores: Vec<f32>,
        types: &[i64],
        add_space_prefix: bool,
    ) -> Spm {
        let mut ids = HashMap::with_capacity(tokens.len());
        let mut byte_ids = [None; 256];
        let mut whole = Vec::new();
        for (id, (t, &ty)) in tokens.iter().zip(types).enumerate() {
            let id = id as u32;
            ids.entry(t.clone()).or_insert(id);
            if ty == super::TOKEN_TYPE_BYTE
                && let Some(b) = byte_token(t)
            {
                byte_ids[usize::from(b)].get_or_insert(id);
            }
            if (ty == super::TOKEN_TYPE_CONTROL || ty == super::TOKEN_TYPE_USER_DEFINED)
                && !t.is_empty()
            {
                whole.push((t.clone(), id));
            }
        }
        whole.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        Spm {
            ids,
            scores,
            byte_ids,
            whole,
            add_space_prefix,
        }
    }

    /// The id of vocabulary entry `token` (the first, where an entry repeats).
    pub(crate) fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The ids of `text`; `Err` names a byte that needs a fallback token the vocabulary lacks.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        // Split out the whole tokens, longest first, leaving the text between them.
        let mut parts: Vec<Result<u32, &str>> = vec![Err(text)];
        for (t, id) in &self.whole {
            if !parts
                .iter()
                .any(|p| matches!(p, Err(s) if s.contains(t.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(parts.len() + 2);
            for p in parts {
                let Err(mut s) = p else {
                    next.push(p);
                    continue;
                };
                while let Some(i) = s.find(t.as_str()) {
                    if i > 0 {
                        next.push(Err(&s[..i]));
                    }
                    next.push(Ok(*id));
                    s = &s[i + t.len()..];
                }
                if !s.is_empty() {
                    next.push(Err(s));
                }
            }
            parts = next;
        }
        let mut out = Vec::new();
        for p in parts {
            match p {
                Ok(id) => out.push(id),
                Err(s) => self.encode_run(s, &mut out)?,
            }
        }
        Ok(out)
    }

    fn try_add(&self, s: &str, sym: &[Symbol], heap: &mut BinaryHeap<Bigram>, l: usize, r: usize) {
        let text = &s[sym[l].start..sym[r].start + sym[r].len];
        if let Some(&id) = self.ids.get(text) {
            heap.push(Bigram {
                score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                left: l,
                right: r,
                size: text.len(),
            });
        }
    }

    /// Text with no whole tokens in it, by merges, then byte fallback.
    fn encode_run(&self, text: &str, out: &mut Vec<u32>) -> Result<(), String> {
        let prefix = if self.add_space_prefix { " " } else { "" };
        let s: String = format!("{prefix}{text}").replace(' ', "\u{2581}");
        let mut sym: Vec<Symbol> = Vec::new();
        for (i, (start, c)) in s.char_indices().enumerate() {
            sym.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                sym[i - 1].next = Some(i);
            }
        }
        let mut heap = BinaryHeap::new();
        for i in 1..sym.len() {
            self.try_add(&s, &sym, &mut heap, i - 1, i);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (b.left, b.right);
            if sym[l].len == 0 || sym[r].len == 0 || sym[l].len + sym[r].len != b.size {
                continue; // stale: one side has merged since
            }
            sym[l].len += sym[r].len;
            sym[r].len = 0;
            sym[l].next = sym[r].next;
            if let Some(n) = sym[r].next {
                sym[n].prev = Some(l);
            }
            if let Some(p) = sym[l].prev {
                self.try_add(&s, &sym, &mut heap, p, l);
            }
            if let Some(n) = sym[l].next {
                self.try_add(&s, &sym, &mut heap, l, n);
            }
        }
        let mut at = (!sym.is_empty()).then_some(0);
        while let Some(i) = at {
            let piece = &s[sym[i].start..sym[i].start + sym[i].len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        let id = self.byte_ids[usize::from(b)].ok_or_else(|| {
                            format!("{piece:?} is not in the vocabulary and byte {b:#04x} has no <0x{b:02X}> token")
                        })?;
                        out.push(id);
                    }
                }
            }
            at = sym[i].next;
        }
        Ok(())
    }
}

/// The bytes a SentencePiece token stands for: `▁` as a space, `<0xXX>` as its byte (for byte
/// tokens), control and user-defined tokens as written.
pub(crate) fn piece_bytes(token: &str, ty: i64, out: &mut Vec<u8>) {
    if ty == super::TOKEN_TYPE_BYTE
        && let Some(b) = byte_token(token)
    {
        out.push(b);
        return;
    }
    if ty == super::TOKEN_TYPE_CONTROL || ty == super::TOKEN_TYPE_USER_DEFINED {
        out.extend_from_slice(token.as_bytes());
        return;
    }
    out.extend_from_slice(token.replace('\u{2581}', " ").as_bytes());
}
