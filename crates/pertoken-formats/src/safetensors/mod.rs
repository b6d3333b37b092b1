//! Hugging Face checkpoints: `model.safetensors` (or a sharded set listed by
//! `model.safetensors.index.json`), memory-mapped, and `config.json` ([`LlamaConfig`]).
//!
//! Tensors come by name as raw little-endian F32, F16 or BF16 bytes with their row-major shape;
//! [`TensorRef::to_f16_or_f32`] turns BF16 into F16 for kernels without BF16.

mod config;
mod convert;
mod shard;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::bytes::Bytes;
use crate::error::{FormatError, Result};
use shard::Shard;

pub use config::{LlamaConfig, RopeScaling};
pub use convert::{Floats, bf16_to_f16};

/// The file name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The file name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The element types handed out.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    BF16,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// One tensor of a checkpoint: raw little-endian bytes, borrowed from the mapped file.
#[derive(Clone, Debug)]
pub struct TensorRef<'a> {
    /// The file holding it.
    pub file: &'a str,
    /// The tensor's name.
    pub name: &'a str,
    /// The element type.
    pub dtype: Dtype,
    /// The shape, row-major (PyTorch order).
    pub shape: Vec<u64>,
    /// The data: `shape.product() * dtype.size()` bytes.
    pub data: &'a [u8],
}

/// A safetensors checkpoint: one file or several shards.
#[derive(Debug)]
pub struct Safetensors {
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    by_name: BTreeMap<String, usize>,
}

impl Safetensors {
    /// Opens a checkpoint: a `.safetensors` file, a `*.safetensors.index.json` index, or a
    /// directory holding `model.safetensors.index.json` or `model.safetensors`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            return if index.is_file() {
                Self::open_index(&index)
            } else {
                Self::open_file(path.join(SINGLE_FILE))
            };
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::open_file(path)
    }

    /// Opens one `.safetensors` file.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shard = Shard::new(Bytes::map(path)?, path.display().to_string())?;
        Ok(Self::from_shards(vec![shard]))
    }

    /// Parses one safetensors file held in memory; `name` stands for it in messages.
    pub fn parse(bytes: impl Into<Vec<u8>>, name: impl Into<String>) -> Result<Self> {
        let shard = Shard::new(Bytes::Owned(bytes.into()), name.into())?;
        Ok(Self::from_shards(vec![shard]))
    }

    fn from_shards(shards: Vec<Shard>) -> Self {
        let mut by_name = BTreeMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.names() {
                by_name.insert(name, i);
            }
        }
        Self { shards, by_name }
    }

    /// Opens a sharded checkpoint from its index (`{"weight_map": {tensor: shard file}}`);
    /// the shards are found beside the index. Every tensor the index lists must be in its shard.
    pub fn open_index(index: impl AsRef<Path>) -> Result<Self> {
        let index = index.as_ref();
        let file = index.display().to_string();
        let text = std::fs::read_to_string(index).map_err(|e| FormatError::io(index, "read", e))?;
        let bad = |reason: String| FormatError::Config {
            file: file.clone(),
            what: "safetensors index",
            reason,
        };
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let parsed: Index = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let dir = index.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        let mut shard_files: Vec<&String> = parsed.weight_map.values().collect();
        shard_files.sort();
        shard_files.dedup();
        let mut shards = Vec::with_capacity(shard_files.len());
        for name in &shard_files {
            if Path::new(name).components().count() != 1 {
                return Err(bad(format!(
                    "shard {name:?} is not a file name beside the index"
                )));
            }
            let path = dir.join(name);
            shards.push(Shard::new(Bytes::map(&path)?, path.display().to_string())?);
        }
        let mut by_name = BTreeMap::new();
        for (tensor, shard_name) in &parsed.weight_map {
            let i = shard_files
                .iter()
                .position(|s| *s == shard_name)
                .unwrap_or(0);
            if shards[i].get(tensor).is_none() {
                return Err(FormatError::MissingTensor {
                    file: shards[i].file.clone(),
                    tensor: tensor.clone(),
                    hint: format!(" (the index {file} places it there)"),
                });
            }
            by_name.insert(tensor.clone(), i);
        }
        Ok(Self { shards, by_name })
    }

    /// The tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The files of the checkpoint.
    pub fn files(&self) -> Vec<&str> {
        self.shards.iter().map(|s| s.file.as_str()).collect()
    }

    /// Tensor `name`: F32, F16 or BF16 ([`FormatError::UnsupportedType`] otherwise).
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>> {
        let missing = || FormatError::MissingTensor {
            file: self.files().join(", "),
            tensor: name.to_owned(),
            hint: format!(" (the checkpoint has {} tensors)", self.by_name.len()),
        };
        let (key, &i) = self.by_name.get_key_value(name).ok_or_else(missing)?;
        let shard = &self.shards[i];
        let (info, data) = shard.get(name).ok_or_else(missing)?;
        let dtype = match info.dtype {
            ::safetensors::Dtype::F32 => Dtype::F32,
            ::safetensors::Dtype::F16 => Dtype::F16,
            ::safetensors::Dtype::BF16 => Dtype::BF16,
            other => {
                return Err(FormatError::UnsupportedType {
                    file: shard.file.clone(),
                    tensor: name.to_owned(),
                    found: other.to_string(),
                    supported: "F32, F16, BF16".into(),
                });
            }
        };
        let shape = info.shape.iter().map(|&d| d as u64).collect();
        Ok(TensorRef {
            file: &shard.file,
            name: key,
            dtype,
            shape,
            data,
        })
    }

    /// Tensor `name`, checked to have the row-major shape `expected`.
    pub fn tensor_checked(&self, name: &str, expected: &[u64]) -> Result<TensorRef<'_>> {
        let t = self.tensor(name)?;
        if t.shape != expected {
            return Err(FormatError::ShapeMismatch {
                file: t.file.to_owned(),
                tensor: name.to_owned(),
                expected: expected.to_vec(),
                found: t.shape,
            });
        }
        Ok(t)
    }
}
