//! The bytes of a model file: memory-mapped from disk, or owned in memory.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::error::{FormatError, Result};

/// A file's bytes, mapped or owned. Derefs to `[u8]`.
#[derive(Debug)]
pub(crate) enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    /// Maps `path` read-only (an empty file is read, since some platforms refuse to map it).
    pub(crate) fn map(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| FormatError::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| FormatError::io(path, "stat", e))?
            .len();
        if len == 0 {
            return Ok(Self::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and lives as long as `Bytes`. It is undefined behaviour
        // if another process truncates or rewrites the file while it is mapped; like every
        // mmap-based model loader we accept that: model files are not modified in place, and
        // every read through the map is bounds-checked against the length seen at parse time.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) };
        map.map(Self::Mapped)
            .map_err(|e| FormatError::io(path, "memory-map", e))
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(vec) => vec,
        }
    }
}
