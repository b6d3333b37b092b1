//! A GGUF tensor info.

use crate::gguf::ggml_type::GgmlType;

/// One tensor's description in a GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// The dimensions in ggml order: `dims[0]` varies fastest (the row length).
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data. For a type whose block layout is unknown ([`GgmlType::Other`]), the gap
    /// to the next tensor's data (or to the end of the file).
    pub size_bytes: u64,
    pub(crate) elements: u64,
}

impl TensorInfo {
    /// The dimensions reversed: row-major, PyTorch order (`[rows, cols]` for a matrix).
    pub fn shape_row_major(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// The number of elements (checked not to overflow when the file was parsed).
    pub fn element_count(&self) -> u64 {
        self.elements
    }
}
