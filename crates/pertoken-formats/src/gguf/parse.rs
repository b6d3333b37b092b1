//! Parsing a GGUF file's header, metadata and tensor infos from bytes.
//!
//! Every count is checked against the bytes that remain before anything is allocated, every
//! read is bounds-checked, every size computation is checked for overflow.

use std::collections::{BTreeMap, HashMap};

use crate::error::{FormatError, Result};
use crate::gguf::cursor::Cursor;
use crate::gguf::ggml_type::GgmlType;
use crate::gguf::tensor::TensorInfo;
use crate::gguf::value::Value;

/// The file magic.
pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key for the alignment.
pub(crate) const ALIGNMENT_KEY: &str = "general.alignment";
/// Most dimensions a tensor may have (ggml has 4; a little room for the future).
pub(crate) const MAX_DIMS: u32 = 8;

/// The fewest bytes one KV pair takes: key length (8), value type (4), a 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// The fewest bytes one tensor info takes: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 8 + 4 + 8;

/// What a parse yields.
pub(crate) struct Parsed {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) metadata: BTreeMap<String, Value>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) by_name: HashMap<String, usize>,
    pub(crate) data_start: u64,
}

pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<Parsed> {
    let mut c = Cursor::new(bytes, file);
    let magic = c.take(4, &|| "the magic bytes".into())?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic {
            file: file.to_owned(),
            format: "GGUF",
            expected: "GGUF".into(),
            found: magic.escape_ascii().to_string(),
        });
    }
    let version = c.u32(&|| "the version".into())?;
    if version != 2 && version != 3 {
        return Err(FormatError::UnsupportedVersion {
            file: file.to_owned(),
            format: "GGUF",
            found: version,
            supported: "2 and 3, little-endian",
        });
    }
    let tensor_count = c.u64(&|| "the tensor count".into())?;
    let kv_count = c.u64(&|| "the metadata count".into())?;

    let metadata = read_metadata(&mut c, kv_count)?;
    let alignment = alignment_of(&metadata, file)?;

    let n = c.check_count(tensor_count, MIN_TENSOR_INFO_SIZE, &|| "the header".into())?;
    let mut tensors = Vec::with_capacity(n);
    let mut by_name = HashMap::with_capacity(n);
    for i in 0..n {
        let info = read_tensor_info(&mut c, i)?;
        if by_name.insert(info.name.clone(), i).is_some() {
            return Err(FormatError::corrupt(
                file,
                format!("tensor name {:?} appears twice", info.name),
            ));
        }
        tensors.push(info);
    }

    let data_start = align_up(c.pos() as u64, alignment).ok_or_else(|| {
        FormatError::corrupt(
            file,
            format!("the alignment {alignment} overflows the data start"),
        )
    })?;
    let len = bytes.len() as u64;
    if data_start > len {
        return Err(FormatError::Truncated {
            file: file.to_owned(),
            what: format!("the padding to the {alignment}-byte aligned tensor data"),
            at: c.pos() as u64,
            needed: data_start - c.pos() as u64,
            len,
        });
    }
    size_tensors(&mut tensors, alignment, data_start, len, file)?;
    Ok(Parsed {
        version,
        alignment,
        metadata,
        tensors,
        by_name,
        data_start,
    })
}

fn read_metadata(c: &mut Cursor<'_>, kv_count: u64) -> Result<BTreeMap<String, Value>> {
    let file = c.file();
    let n = c.check_count(kv_count, MIN_KV_SIZE, &|| "the metadata count".into())?;
    let mut metadata = BTreeMap::new();
    for i in 0..n {
        let key = c.string(&|| format!("the key of metadata entry {i}"))?;
        let what = || format!("metadata key {key:?}");
        let ty = c.value_type(&what)?;
        let value = c.value(ty, &what)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(FormatError::corrupt(
                file,
                format!("metadata key {key:?} appears twice"),
            ));
        }
    }
    Ok(metadata)
}

fn alignment_of(metadata: &BTreeMap<String, Value>, file: &str) -> Result<u64> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_i128() {
        Some(a) if a > 0 && a <= i128::from(u32::MAX) && (a as u64).is_power_of_two() => {
            Ok(a as u64)
        }
        _ => Err(FormatError::WrongKeyType {
            file: file.to_owned(),
            key: ALIGNMENT_KEY.into(),
            expected: "a nonzero power of two that fits in u32".into(),
            found: value.describe(),
        }),
    }
}

fn read_tensor_info(c: &mut Cursor<'_>, i: usize) -> Result<TensorInfo> {
    let file = c.file();
    let name = c.string(&|| format!("the name of tensor {i}"))?;
    let what = || format!("tensor {name:?}");
    let n_dims = c.u32(&|| format!("the dimension count of {}", what()))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(FormatError::corrupt(
            file,
            format!(
                "{} has {n_dims} dimensions; expected 1 to {MAX_DIMS}",
                what()
            ),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(&|| format!("dimension {d} of {}", what()))?);
    }
    let ggml_type = GgmlType::from_id(c.u32(&|| format!("the type of {}", what()))?);
    let offset = c.u64(&|| format!("the data offset of {}", what()))?;
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            FormatError::corrupt(
                file,
                format!("{} has dims {dims:?}, whose product overflows", what()),
            )
        })?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        size_bytes: 0,
        elements,
    })
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? & !(alignment - 1))
}

/// Computes each tensor's size and checks that its data lies inside the file.
fn size_tensors(
    tensors: &mut [TensorInfo],
    alignment: u64,
    data_start: u64,
    len: u64,
    file: &str,
) -> Result<()> {
    let data_len = len - data_start;
    // For types whose layout is unknown, the size is the gap to the next tensor (or the end).
    let mut offsets: Vec<u64> = tensors.iter().map(|t| t.offset).collect();
    offsets.sort_unstable();
    for t in tensors.iter_mut() {
        if !t.offset.is_multiple_of(alignment) {
            return Err(FormatError::corrupt(
                file,
                format!(
                    "tensor {:?} has data offset {}, not a multiple of the alignment {alignment}",
                    t.name, t.offset
                ),
            ));
        }
        t.size_bytes = if t.ggml_type.block().is_some() {
            t.ggml_type
                .size_of(t.dims[0], t.elements)
                .map_err(|reason| {
                    FormatError::corrupt(
                        file,
                        format!("tensor {:?} of type {}: {reason}", t.name, t.ggml_type),
                    )
                })?
        } else {
            let later = &offsets[offsets.partition_point(|&o| o <= t.offset)..];
            let next = later.first().copied().unwrap_or(data_len);
            next.saturating_sub(t.offset)
        };
        let end = t.offset.checked_add(t.size_bytes);
        if end.is_none_or(|end| end > data_len) {
            return Err(FormatError::Truncated {
                file: file.to_owned(),
                what: format!(
                    "the data of tensor {:?} ({} {:?}, offset {} in the data section)",
                    t.name, t.ggml_type, t.dims, t.offset
                ),
                at: data_start.saturating_add(t.offset),
                needed: t.size_bytes,
                len,
            });
        }
    }
    Ok(())
}
