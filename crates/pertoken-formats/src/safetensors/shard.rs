//! One `.safetensors` file: its header parsed by the `safetensors` crate, with that crate's
//! errors turned into ones that name the file, the tensor, and the sizes involved.

use std::collections::BTreeMap;

use ::safetensors::SafeTensorError;
use ::safetensors::SafeTensors;
use ::safetensors::tensor::{Metadata, TensorInfo};

use crate::bytes::Bytes;
use crate::error::{FormatError, Result};

/// Bytes of the header-length prefix.
const N_LEN: usize = 8;

/// One safetensors file, mapped or in memory, its header checked.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) file: String,
    bytes: Bytes,
    data_start: usize,
    pub(crate) meta: Metadata,
}

impl Shard {
    pub(crate) fn new(bytes: Bytes, file: String) -> Result<Self> {
        match SafeTensors::read_metadata(&bytes) {
            Ok((n, meta)) => Ok(Self {
                file,
                data_start: N_LEN + n,
                bytes,
                meta,
            }),
            Err(e) => Err(explain(&bytes, &file, e)),
        }
    }

    /// The info and data of tensor `name`, if the file has it.
    pub(crate) fn get(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        let info = self.meta.info(name)?;
        let (s, e) = info.data_offsets;
        // Checked by read_metadata: offsets contiguous from 0 to the end of the file.
        let data = self
            .bytes
            .get(self.data_start + s..self.data_start + e)
            .unwrap_or(&[]);
        Some((info, data))
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.meta.offset_keys()
    }
}

/// A message for a `read_metadata` failure, with what the header says where it is readable.
fn explain(bytes: &[u8], file: &str, e: SafeTensorError) -> FormatError {
    let len = bytes.len() as u64;
    let n = bytes
        .get(..N_LEN)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let header = n.and_then(|n| {
        let end = usize::try_from(n).ok()?.checked_add(N_LEN)?;
        bytes.get(N_LEN..end)
    });
    let tensors = header.and_then(header_tensors);
    let corrupt = |reason: String| FormatError::corrupt(file, reason);
    match e {
        SafeTensorError::HeaderTooSmall => FormatError::Truncated {
            file: file.into(),
            what: "the 8-byte header length".into(),
            at: 0,
            needed: N_LEN as u64,
            len,
        },
        SafeTensorError::InvalidHeaderLength => FormatError::Truncated {
            file: file.into(),
            what: "the JSON header".into(),
            at: N_LEN as u64,
            needed: n.unwrap_or(0),
            len,
        },
        SafeTensorError::HeaderTooLarge => corrupt(format!(
            "the header length is {}, over the 100 MB the safetensors format allows",
            n.unwrap_or(0)
        )),
        SafeTensorError::MetadataIncompleteBuffer => {
            let data_len = tensors
                .as_ref()
                .map(|t| {
                    t.values()
                        .map(|i| i.data_offsets.1 as u64)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            let expected = (N_LEN as u64) + n.unwrap_or(0) + data_len;
            if len < expected {
                FormatError::Truncated {
                    file: file.into(),
                    what: format!("{data_len} bytes of tensor data"),
                    at: N_LEN as u64 + n.unwrap_or(0),
                    needed: data_len,
                    len,
                }
            } else {
                corrupt(format!(
                    "the header's tensors end at byte {expected}, but the file has {len} bytes"
                ))
            }
        }
        SafeTensorError::TensorInvalidInfo => {
            let bad = tensors.as_ref().and_then(|t| {
                t.iter().find(|(_, i)| {
                    let elems: Option<usize> =
                        i.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                    let bits = elems.and_then(|e| e.checked_mul(i.dtype.bitsize()));
                    bits.is_none_or(|b| i.data_offsets.1.wrapping_sub(i.data_offsets.0) * 8 != b)
                })
            });
            match bad {
                Some((name, i)) => corrupt(format!(
                    "tensor {name:?} ({} {:?}) has data_offsets {:?}, which do not match its \
                     dtype and shape",
                    i.dtype, i.shape, i.data_offsets
                )),
                None => corrupt(format!("header: {e}")),
            }
        }
        SafeTensorError::InvalidOffset(name) => corrupt(format!(
            "tensor {name:?}: its data_offsets do not follow the previous tensor's"
        )),
        other => corrupt(format!("header: {other}")),
    }
}

/// The tensors the header describes, if it is readable JSON.
fn header_tensors(header: &[u8]) -> Option<BTreeMap<String, TensorInfo>> {
    let all: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    Some(
        all.into_iter()
            .filter(|(k, _)| k != "__metadata__")
            .filter_map(|(k, v)| Some((k, serde_json::from_value(v).ok()?)))
            .collect(),
    )
}
