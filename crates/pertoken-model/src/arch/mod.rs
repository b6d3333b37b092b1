//! The architectures the decoder runs, one file each: what a family adds to a Llama block (as
//! [`pertoken_cost::Arch`] data, read from its GGUF keys), how its checkpoints pair RoPE's
//! elements, and where its GGUF files put each weight (Phi-3 fuses q/k/v and gate/up into one
//! tensor each). The decoder's step and the reference read the data; neither names a family.

mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;

use pertoken_cost::RopePairing;
use pertoken_formats::gguf::{GgmlType, Gguf};

use crate::weights::{Role, tensor_name};
use crate::{ModelSpec, Result};

/// One architecture, as `general.architecture` names it.
pub(crate) struct Family {
    /// `general.architecture`.
    pub(crate) name: &'static str,
    /// Models of the family, for messages.
    pub(crate) models: &'static str,
    /// Which elements of q and k RoPE turns together, as its converter stores them.
    pub(crate) pairing: RopePairing,
    /// Reads what the family adds into `spec` (after the keys every family shares).
    pub(crate) read: fn(&Keys<'_>, &mut ModelSpec) -> Result<()>,
    /// Where a weight lies in the family's files.
    pub(crate) place: fn(&Keys<'_>, &ModelSpec, Role) -> Place,
}

/// Every family, in the order messages list them.
pub(crate) const FAMILIES: [Family; 5] = [
    llama::FAMILY,
    qwen2::FAMILY,
    qwen3::FAMILY,
    gemma3::FAMILY,
    phi3::FAMILY,
];

/// The family of `general.architecture = name`.
pub(crate) fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The families, for an error that says what is supported.
pub(crate) fn supported() -> String {
    FAMILIES
        .iter()
        .map(|f| format!("{} ({})", f.name, f.models))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a weight lies in a file: a tensor of its own, or rows of a fused one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// The whole tensor.
    Tensor(String),
    /// Rows `start .. start + rows` of the `[total, k]` tensor `name`.
    Rows {
        name: String,
        start: usize,
        rows: usize,
        total: usize,
    },
}

/// A weight in its own tensor, under llama.cpp's usual name.
pub(crate) fn own_tensor(_: &Keys<'_>, _: &ModelSpec, role: Role) -> Place {
    Place::Tensor(tensor_name(role))
}

/// The metadata of one GGUF file under its architecture's prefix (`gemma3.…`).
pub(crate) struct Keys<'a> {
    pub(crate) file: &'a Gguf,
    pub(crate) arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    /// `{arch}.k` as an integer, if present.
    pub(crate) fn u64_opt(&self, k: &str) -> Result<Option<u64>> {
        Ok(self.file.u64_opt(&self.key(k))?)
    }

    /// `{arch}.k` as an integer.
    pub(crate) fn u64_of(&self, k: &str) -> Result<u64> {
        Ok(self.file.u64_of(&self.key(k))?)
    }

    /// `{arch}.k` as the f64 its f32 means (GGUF stores 1e-6 as an f32, and the model means
    /// 1e-6), if present.
    pub(crate) fn f64_opt(&self, k: &str) -> Result<Option<f64>> {
        Ok(self.file.f32_opt(&self.key(k))?.map(decimal))
    }

    /// `{arch}.k` as a string, if present.
    pub(crate) fn str_opt(&self, k: &str) -> Option<&str> {
        self.file.get(&self.key(k)).and_then(|v| v.as_str())
    }

    /// Whether the file holds a tensor of this name.
    pub(crate) fn has_tensor(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }

    /// The F32 vector `name` of `len` values (RoPE's stored factors), if the file has it; one
    /// of another shape or type is an error naming it.
    pub(crate) fn f32_vector(&self, name: &str, len: u64) -> Result<Option<Vec<f32>>> {
        if !self.has_tensor(name) {
            return Ok(None);
        }
        let info = self.file.tensor_checked(name, &[len], &[GgmlType::F32])?;
        Ok(Some(
            self.file
                .tensor_bytes(info)
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

/// An f32 as the f64 of its shortest decimal form.
pub(crate) fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}
