//! The crate's one error type.
//!
//! Every message names the file; where it matters also the tensor or metadata key, what was
//! expected, what was found, and what to do about it.

use std::path::PathBuf;

/// The tensor types pertoken's kernels read, as a list for messages.
pub const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

/// Everything that can go wrong reading (or writing) a model file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file could not be opened, read, mapped or written.
    #[error("{}: {op} failed: {source}; check that the path exists and is readable", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done ("open", "memory-map", "write", ...).
        op: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// The file ends before a structure it announces.
    #[error(
        "{file}: truncated: reading {what} at byte {at} needs {needed} bytes, but the file has \
         {len} bytes; the file is incomplete, re-download it"
    )]
    Truncated {
        /// The file.
        file: String,
        /// What was being read.
        what: String,
        /// Byte offset of the read.
        at: u64,
        /// Bytes the read needs (from `at`).
        needed: u64,
        /// Length of the file.
        len: u64,
    },

    /// The file's contents are inconsistent.
    #[error("{file}: corrupt: {reason}; re-download or re-convert the file")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong, with the values found.
        reason: String,
    },

    /// The file does not start with the expected magic bytes.
    #[error(
        "{file}: not a {format} file: expected magic {expected:?}, found {found:?}; check the path"
    )]
    BadMagic {
        /// The file.
        file: String,
        /// The format expected ("GGUF").
        format: &'static str,
        /// The expected magic bytes, as text.
        expected: String,
        /// The bytes found, escaped.
        found: String,
    },

    /// A format version this reader does not handle.
    #[error(
        "{file}: unsupported {format} version {found} (supported: {supported}); re-convert the \
         model with a current llama.cpp convert_hf_to_gguf.py"
    )]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// The format ("GGUF").
        format: &'static str,
        /// The version in the file.
        found: u32,
        /// The versions this reader handles.
        supported: &'static str,
    },

    /// A tensor of a type pertoken does not compute with.
    #[error(
        "{file}: tensor {tensor:?} has type {found}, which is not supported (supported: \
         {supported}); convert the model with a supported type"
    )]
    UnsupportedType {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The type found (ggml or safetensors name).
        found: String,
        /// The supported types.
        supported: String,
    },

    /// A tensor the caller needs is not in the file.
    #[error(
        "{file}: no tensor named {tensor:?}{hint}; the file is for another architecture or \
         incomplete"
    )]
    MissingTensor {
        /// The file.
        file: String,
        /// The tensor looked for.
        tensor: String,
        /// A note on close names, or empty.
        hint: String,
    },

    /// A tensor's shape is not the one the model's configuration implies.
    #[error(
        "{file}: tensor {tensor:?} has shape {found:?}, expected {expected:?} (row-major, \
         PyTorch order); the weights do not match the model's configuration"
    )]
    ShapeMismatch {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The expected shape, row-major.
        expected: Vec<u64>,
        /// The shape in the file, row-major.
        found: Vec<u64>,
    },

    /// A value that does not fit the type it is converted to.
    #[error(
        "{file}: tensor {tensor:?}: element {index} is {value}, outside {target}'s range; load \
         the tensor in a wider type (F32)"
    )]
    OutOfRange {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The element's index.
        index: usize,
        /// Its value.
        value: f32,
        /// The target type ("F16").
        target: &'static str,
    },

    /// A metadata key (or configuration field) the caller needs is absent.
    #[error(
        "{file}: metadata key {key:?} is missing; the file is for another architecture or was converted by an old tool"
    )]
    MissingKey {
        /// The file.
        file: String,
        /// The key.
        key: String,
    },

    /// A metadata key holds a value of another type (or out of range).
    #[error(
        "{file}: metadata key {key:?}: expected {expected}, found {found}; re-convert the file"
    )]
    WrongKeyType {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found (type and, for scalars, value).
        found: String,
    },

    /// The file's tokenizer is of a kind this crate does not implement.
    #[error("{file}: unsupported tokenizer: {found} (supported: {supported})")]
    UnsupportedTokenizer {
        /// The file.
        file: String,
        /// What the file asks for.
        found: String,
        /// What is implemented.
        supported: String,
    },

    /// A token id outside the vocabulary.
    #[error("{file}: token id {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownToken {
        /// The file the tokenizer came from.
        file: String,
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },

    /// The tokenizer library failed.
    #[error("{file}: tokenizer: {reason}")]
    Tokenizer {
        /// The file the tokenizer came from.
        file: String,
        /// The library's message.
        reason: String,
    },

    /// A configuration file (config.json, an index) is invalid.
    #[error("{file}: invalid {what}: {reason}; re-download it")]
    Config {
        /// The file.
        file: String,
        /// What it is ("config.json", "safetensors index").
        what: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The GGUF writer was given something it cannot write.
    #[error("{file}: cannot write GGUF: {reason}")]
    Build {
        /// The file being written, or "<in memory>".
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

impl FormatError {
    pub(crate) fn corrupt(file: &str, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
