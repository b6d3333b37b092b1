//! A small GGUF writer, for tests and synthetic model files.
//!
//! ```
//! use pertoken_formats::gguf::{Gguf, GgmlType, write::GgufBuilder};
//! let mut b = GgufBuilder::new();
//! b.set("general.architecture", "llama").set("llama.block_count", 1u32);
//! b.add_f32("output_norm.weight", &[4], &[1.0, 1.0, 1.0, 1.0]);
//! let gguf = Gguf::parse(b.to_bytes()?, "tiny.gguf")?;
//! assert_eq!(gguf.tensor("output_norm.weight")?.ggml_type, GgmlType::F32);
//! # Ok::<(), pertoken_formats::FormatError>(())
//! ```

use std::collections::HashSet;
use std::path::Path;

use crate::error::{FormatError, Result};
use crate::gguf::ggml_type::GgmlType;
use crate::gguf::parse::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::gguf::value::Value;

/// Collects metadata and tensors, then writes a GGUF file.
#[derive(Clone, Debug)]
pub struct GgufBuilder {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<Pending>,
}

#[derive(Clone, Debug)]
struct Pending {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufBuilder {
    /// An empty version-3 file with the default alignment (32).
    pub fn new() -> Self {
        Self {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version written in the header (the layout of 2 and 3 is the same).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets `general.alignment` (a nonzero power of two, checked when writing).
    pub fn alignment(&mut self, alignment: u32) -> &mut Self {
        self.set(ALIGNMENT_KEY, Value::U32(alignment))
    }

    /// Sets metadata `key`, replacing an earlier value (keys are written in first-set order).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds a tensor: `dims` in ggml order (`dims[0]` the row length), `data` its raw bytes in
    /// `ggml_type`'s layout (checked when writing).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.tensors.push(Pending {
            name: name.into(),
            ggml_type,
            dims: dims.to_vec(),
            data: data.into(),
        });
        self
    }

    /// Adds an F32 tensor (`dims` in ggml order).
    pub fn add_f32(&mut self, name: impl Into<String>, dims: &[u64], values: &[f32]) -> &mut Self {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, GgmlType::F32, dims, data)
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.encode(&path.display().to_string())?;
        std::fs::write(path, bytes).map_err(|e| FormatError::io(path, "write", e))
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.encode("<in memory>")
    }

    fn encode(&self, file: &str) -> Result<Vec<u8>> {
        let err = |reason: String| FormatError::Build {
            file: file.to_owned(),
            reason,
        };
        let alignment = match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, v)) => {
                return Err(err(format!(
                    "{ALIGNMENT_KEY} must be a u32 nonzero power of two, not {}",
                    v.describe()
                )));
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut out, value).map_err(|r| err(format!("metadata key {key:?}: {r}")))?;
        }

        let mut names = HashSet::new();
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            check_tensor(t).map_err(|r| err(format!("tensor {:?}: {r}", t.name)))?;
            if !names.insert(&t.name) {
                return Err(err(format!("tensor {:?} is added twice", t.name)));
            }
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(alignment);
        }

        // The data section starts aligned; each tensor starts aligned; no padding after the last.
        pad_to(&mut out, alignment);
        let data_start = out.len() as u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        Ok(out)
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment);
    out.resize(len as usize, 0);
}

fn check_tensor(t: &Pending) -> Result<(), String> {
    if t.dims.is_empty() || t.dims.len() > MAX_DIMS as usize {
        return Err(format!(
            "{} dimensions; expected 1 to {MAX_DIMS}",
            t.dims.len()
        ));
    }
    if t.ggml_type.block().is_none() {
        return Ok(());
    }
    let elements = t
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dims {:?} overflow", t.dims))?;
    let size = t.ggml_type.size_of(t.dims[0], elements)?;
    if size != t.data.len() as u64 {
        return Err(format!(
            "{} {:?} takes {size} bytes, but {} were given",
            t.ggml_type,
            t.dims,
            t.data.len()
        ));
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    match value {
        Value::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Array(elem, items) => {
            out.extend_from_slice(&elem.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for (i, item) in items.iter().enumerate() {
                if item.value_type() != *elem {
                    return Err(format!(
                        "element {i} is {}, in an array of {elem}",
                        item.value_type()
                    ));
                }
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}
