//! Typed metadata getters: each error names the key and the type (and value) found.

use crate::error::{FormatError, Result};
use crate::gguf::Gguf;
use crate::gguf::value::{Value, ValueType};

impl Gguf {
    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| FormatError::MissingKey {
            file: self.file().to_owned(),
            key: key.into(),
        })
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> FormatError {
        FormatError::WrongKeyType {
            file: self.file().to_owned(),
            key: key.to_owned(),
            expected: expected.to_owned(),
            found: found.describe(),
        }
    }

    /// `key` as a non-negative integer; any integer type is accepted if the value fits.
    pub fn u64_of(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_i128()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    /// `key` as [`u64_of`](Self::u64_of), or `None` when the key is absent.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        self.get(key).map(|_| self.u64_of(key)).transpose()
    }

    /// `key` as an f32; f32 and f64 values are accepted.
    pub fn f32_of(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| self.wrong(key, "a float (f32 or f64)", v))
    }

    /// `key` as [`f32_of`](Self::f32_of), or `None` when the key is absent.
    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.f32_of(key)).transpose()
    }

    /// `key` as a bool.
    pub fn bool_of(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(self.wrong(key, "a bool", v)),
        }
    }

    /// `key` as a string.
    pub fn str_of(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    /// `key` as an array of strings.
    pub fn strings_of(&self, key: &str) -> Result<Vec<&str>> {
        match self.require(key)? {
            Value::Array(ValueType::String, items) => {
                Ok(items.iter().filter_map(Value::as_str).collect())
            }
            v => Err(self.wrong(key, "an array of strings", v)),
        }
    }

    /// `key` as an array of integers (any integer element type).
    pub fn ints_of(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        let Value::Array(_, items) = v else {
            return Err(self.wrong(key, "an array of integers", v));
        };
        items
            .iter()
            .map(|item| item.as_i128().and_then(|i| i64::try_from(i).ok()))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| self.wrong(key, "an array of integers that fit in i64", v))
    }

    /// `key` as an array of numbers (any numeric element type), as f32.
    pub fn floats_of(&self, key: &str) -> Result<Vec<f32>> {
        let v = self.require(key)?;
        let Value::Array(_, items) = v else {
            return Err(self.wrong(key, "an array of numbers", v));
        };
        items
            .iter()
            .map(|item| item.as_f64().map(|x| x as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| self.wrong(key, "an array of numbers", v))
    }
}
