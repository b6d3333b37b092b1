//! ggml tensor types: ids, names, block layouts.

use std::fmt;

/// A ggml tensor type, as stored in a GGUF tensor info.
///
/// The named variants are the types whose block layout this reader knows (so it can check a
/// tensor's size); `Other` keeps any other id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, missing_docs)]
#[non_exhaustive]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    /// An id this reader does not know.
    Other(u32),
}

/// (type, id, name, elements per block, bytes per block)
const TABLE: &[(GgmlType, u32, &str, u64, u64)] = {
    use GgmlType::*;
    &[
        (F32, 0, "F32", 1, 4),
        (F16, 1, "F16", 1, 2),
        (Q4_0, 2, "Q4_0", 32, 18),
        (Q4_1, 3, "Q4_1", 32, 20),
        (Q5_0, 6, "Q5_0", 32, 22),
        (Q5_1, 7, "Q5_1", 32, 24),
        (Q8_0, 8, "Q8_0", 32, 34),
        (Q8_1, 9, "Q8_1", 32, 36),
        (Q2_K, 10, "Q2_K", 256, 84),
        (Q3_K, 11, "Q3_K", 256, 110),
        (Q4_K, 12, "Q4_K", 256, 144),
        (Q5_K, 13, "Q5_K", 256, 176),
        (Q6_K, 14, "Q6_K", 256, 210),
        (Q8_K, 15, "Q8_K", 256, 292),
        (IQ2_XXS, 16, "IQ2_XXS", 256, 66),
        (IQ2_XS, 17, "IQ2_XS", 256, 74),
        (IQ3_XXS, 18, "IQ3_XXS", 256, 98),
        (IQ1_S, 19, "IQ1_S", 256, 50),
        (IQ4_NL, 20, "IQ4_NL", 32, 18),
        (IQ3_S, 21, "IQ3_S", 256, 110),
        (IQ2_S, 22, "IQ2_S", 256, 82),
        (IQ4_XS, 23, "IQ4_XS", 256, 136),
        (I8, 24, "I8", 1, 1),
        (I16, 25, "I16", 1, 2),
        (I32, 26, "I32", 1, 4),
        (I64, 27, "I64", 1, 8),
        (F64, 28, "F64", 1, 8),
        (IQ1_M, 29, "IQ1_M", 256, 56),
        (BF16, 30, "BF16", 1, 2),
        (TQ1_0, 34, "TQ1_0", 256, 54),
        (TQ2_0, 35, "TQ2_0", 256, 66),
        (MXFP4, 39, "MXFP4", 32, 17),
    ]
};

impl GgmlType {
    /// The types pertoken's kernels compute with.
    pub const SUPPORTED: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// The type named `name` as ggml spells it, in any case (`Q4_K`, `q4_k`).
    pub fn named(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|row| row.2.eq_ignore_ascii_case(name))
            .map(|row| row.0)
    }

    /// The type with ggml id `id`.
    pub fn from_id(id: u32) -> Self {
        TABLE
            .iter()
            .find(|row| row.1 == id)
            .map_or(Self::Other(id), |row| row.0)
    }

    fn row(self) -> Option<&'static (GgmlType, u32, &'static str, u64, u64)> {
        TABLE.iter().find(|row| row.0 == self)
    }

    /// The ggml id.
    pub fn id(self) -> u32 {
        match self {
            Self::Other(id) => id,
            known => known.row().map_or(u32::MAX, |row| row.1),
        }
    }

    /// `(elements per block, bytes per block)`, where the layout is known.
    pub fn block(self) -> Option<(u64, u64)> {
        self.row().map(|row| (row.3, row.4))
    }

    /// Whether pertoken's kernels compute with this type.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Bytes of a tensor of `elements` elements whose rows are `row_len` long, or a reason why
    /// not (unknown layout, row not a multiple of the block, overflow).
    pub fn size_of(self, row_len: u64, elements: u64) -> Result<u64, String> {
        let (block_elems, block_bytes) = self
            .block()
            .ok_or_else(|| format!("the block layout of type {self} is unknown"))?;
        if !row_len.is_multiple_of(block_elems) {
            return Err(format!(
                "its row length {row_len} (dims[0]) is not a multiple of {self}'s block of \
                 {block_elems} elements"
            ));
        }
        (elements / block_elems)
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("its size ({elements} elements of {self}) overflows u64"))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row() {
            Some(row) => f.write_str(row.2),
            None => write!(f, "ggml type {}", self.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_names() {
        for row in TABLE {
            assert_eq!(GgmlType::from_id(row.1), row.0);
            assert_eq!(row.0.id(), row.1);
            assert_eq!(row.0.to_string(), row.2);
        }
        assert_eq!(GgmlType::named("q4_k"), Some(GgmlType::Q4_K));
        assert_eq!(GgmlType::named("Q5_0"), Some(GgmlType::Q5_0));
        assert_eq!(GgmlType::named("q4_2"), None);
        assert_eq!(GgmlType::from_id(4), GgmlType::Other(4));
        assert_eq!(GgmlType::Other(4).to_string(), "ggml type 4");
        assert_eq!(GgmlType::Other(4).block(), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(GgmlType::Q4_1.size_of(64, 128), Ok(80));
        assert_eq!(GgmlType::F16.size_of(3, 6), Ok(12));
        assert!(GgmlType::Q8_0.size_of(33, 66).is_err());
        assert!(GgmlType::F64.size_of(1, u64::MAX).is_err());
    }
}
