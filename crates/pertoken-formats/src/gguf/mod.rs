//! GGUF: llama.cpp's single-file model format (versions 2 and 3, little-endian).
//!
//! [`Gguf::open`] memory-maps a file; [`Gguf::parse`] reads bytes already in memory. Both check
//! the whole header, metadata and tensor table up front, so that every later access is in
//! bounds. [`write::GgufBuilder`] writes files (for tests and synthetic models).
//!
//! Layout (spec: ggml's `docs/gguf.md`): magic `GGUF`, u32 version, u64 tensor count, u64
//! metadata count, the metadata key/value pairs, the tensor infos, padding to
//! `general.alignment` (default 32), then the tensor data.

mod cursor;
mod getters;
mod ggml_type;
mod parse;
mod tensor;
mod value;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::bytes::Bytes;
use crate::error::{FormatError, Result};

pub use ggml_type::GgmlType;
pub use tensor::TensorInfo;
pub use value::{Value, ValueType};

/// A parsed GGUF file: metadata, tensor infos, and the bytes (mapped or owned).
pub struct Gguf {
    file: String,
    bytes: Bytes,
    version: u32,
    alignment: u64,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    data_start: u64,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("file", &self.file)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Gguf {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Bytes::map(path)?;
        Self::from_bytes(bytes, path.display().to_string())
    }

    /// Parses a GGUF file held in memory; `name` stands for the file in error messages.
    pub fn parse(bytes: impl Into<Vec<u8>>, name: impl Into<String>) -> Result<Self> {
        Self::from_bytes(Bytes::Owned(bytes.into()), name.into())
    }

    fn from_bytes(bytes: Bytes, file: String) -> Result<Self> {
        let p = parse::parse(&bytes, &file)?;
        Ok(Self {
            file,
            bytes,
            version: p.version,
            alignment: p.alignment,
            metadata: p.metadata,
            tensors: p.tensors,
            by_name: p.by_name,
            data_start: p.data_start,
        })
    }

    /// The file's name, as used in error messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, or [`FormatError::MissingTensor`].
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        match self.by_name.get(name) {
            Some(&i) => Ok(&self.tensors[i]),
            None => Err(FormatError::MissingTensor {
                file: self.file.clone(),
                tensor: name.to_owned(),
                hint: self.hint_for(name),
            }),
        }
    }

    fn hint_for(&self, name: &str) -> String {
        let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
        let close: Vec<&str> = self
            .tensors
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| n.starts_with(stem))
            .take(4)
            .collect();
        if close.is_empty() {
            format!(" (the file has {} tensors)", self.tensors.len())
        } else {
            format!(" (similar: {})", close.join(", "))
        }
    }

    /// The data of a tensor of this file. The range was checked when the file was parsed; an
    /// info from another file whose range does not fit gives an empty slice.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let range = || -> Option<std::ops::Range<usize>> {
            let start = usize::try_from(self.data_start.checked_add(info.offset)?).ok()?;
            let end = start.checked_add(usize::try_from(info.size_bytes).ok()?)?;
            Some(start..end)
        };
        range().and_then(|r| self.bytes.get(r)).unwrap_or(&[])
    }

    /// The info and data of the tensor named `name`.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let info = self.tensor(name)?;
        Ok((info, self.tensor_bytes(info)))
    }

    /// The tensor named `name`, checked to have the row-major (PyTorch order) shape `expected`
    /// and one of the `types` (pass [`GgmlType::SUPPORTED`] for what the kernels read).
    pub fn tensor_checked(
        &self,
        name: &str,
        expected: &[u64],
        types: &[GgmlType],
    ) -> Result<&TensorInfo> {
        let info = self.tensor(name)?;
        let found = info.shape_row_major();
        if found != expected {
            return Err(FormatError::ShapeMismatch {
                file: self.file.clone(),
                tensor: name.to_owned(),
                expected: expected.to_vec(),
                found,
            });
        }
        if !types.contains(&info.ggml_type) {
            let supported: Vec<String> = types.iter().map(ToString::to_string).collect();
            return Err(FormatError::UnsupportedType {
                file: self.file.clone(),
                tensor: name.to_owned(),
                found: info.ggml_type.to_string(),
                supported: supported.join(", "),
            });
        }
        Ok(info)
    }
}
