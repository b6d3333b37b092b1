//! A bounds-checked little-endian reader over a byte slice.

use crate::error::{FormatError, Result};
use crate::gguf::value::{Value, ValueType};

/// Arrays nest at most this deep; deeper is refused (it would only serve to exhaust the stack).
const MAX_ARRAY_DEPTH: u32 = 4;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], file: &'a str) -> Self {
        Self {
            bytes,
            pos: 0,
            file,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    pub(crate) fn file(&self) -> &'a str {
        self.file
    }

    fn truncated(&self, what: &dyn Fn() -> String, needed: u64) -> FormatError {
        FormatError::Truncated {
            file: self.file.to_owned(),
            what: what(),
            at: self.pos as u64,
            needed,
            len: self.bytes.len() as u64,
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what, n));
        }
        let n = n as usize; // fits: n <= remaining <= usize::MAX
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks, before anything is allocated, that `count` items of at least `min_size` bytes each
    /// can fit in what is left of the file.
    pub(crate) fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &dyn Fn() -> String,
    ) -> Result<usize> {
        let needed = count.checked_mul(min_size);
        match needed {
            Some(needed) if needed <= self.remaining() => Ok(count as usize),
            _ => Err(FormatError::corrupt(
                self.file,
                format!(
                    "{} announces {count} entries of at least {min_size} bytes each at byte {}, \
                     but only {} bytes remain",
                    what(),
                    self.pos,
                    self.remaining()
                ),
            )),
        }
    }

    /// A GGUF string: u64 length, then UTF-8 bytes.
    pub(crate) fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let start = self.pos;
        let len = self.u64(&|| format!("the length of {}", what()))?;
        let bytes = self.take(len, &|| format!("{} ({len} bytes)", what()))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(FormatError::corrupt(
                self.file,
                format!("{} at byte {start} is not valid UTF-8 ({e})", what()),
            )),
        }
    }

    pub(crate) fn value_type(&mut self, what: &dyn Fn() -> String) -> Result<ValueType> {
        let at = self.pos;
        let id = self.u32(&|| format!("the value type of {}", what()))?;
        ValueType::from_id(id).ok_or_else(|| {
            FormatError::corrupt(
                self.file,
                format!(
                    "{} has value type id {id} at byte {at}; valid ids are 0..=12",
                    what()
                ),
            )
        })
    }

    /// One value of type `ty`.
    pub(crate) fn value(&mut self, ty: ValueType, what: &dyn Fn() -> String) -> Result<Value> {
        self.value_at_depth(ty, what, 0)
    }

    fn value_at_depth(
        &mut self,
        ty: ValueType,
        what: &dyn Fn() -> String,
        depth: u32,
    ) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(FormatError::corrupt(
                            self.file,
                            format!("{} at byte {at} is a bool of value {b}, not 0 or 1", what()),
                        ));
                    }
                }
            }
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(FormatError::corrupt(
                        self.file,
                        format!("{} nests arrays more than {MAX_ARRAY_DEPTH} deep", what()),
                    ));
                }
                let elem = self.value_type(&|| format!("the elements of {}", what()))?;
                let count = self.u64(&|| format!("the length of {}", what()))?;
                let count = self.check_count(count, elem.min_size(), what)?;
                let mut items = Vec::with_capacity(count);
                for i in 0..count {
                    let item_what = || format!("element {i} of {}", what());
                    items.push(self.value_at_depth(elem, &item_what, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}
