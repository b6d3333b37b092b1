//! Each op `pertoken run` exposes: its inputs' shapes checked before any GPU work, the GPU
//! call, the f64 reference, and the tolerance between them.

mod attention;
mod decoder;
mod embedding;
mod matmul;

use std::path::PathBuf;

use pertoken_gpu::{Capabilities, DType, Gpu, Tensor};
use pertoken_reference::{QuantFormat, Tolerance, dequantize, quantize};

use super::npy::{self, FloatInput};
use super::{Args, OpName};
use crate::cli::CliError;

/// Which values a reference runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    /// The values the kernel read: after rounding to f32, to f16, or quantizing (`--dtype`).
    Held,
    /// The values in the user's files, exactly.
    Given,
}

/// One float operand: the file's values and what the GPU is given.
#[derive(Debug)]
pub(super) struct Operand {
    pub(super) input: FloatInput,
    /// The format the kernel reads it in.
    pub(super) dtype: DType,
    /// The values the kernel reads (f32, or f16 / dequantized values widened to f32).
    pub(super) held: Vec<f32>,
    /// The bytes uploaded for a quantized format.
    quant: Option<Vec<u8>>,
}

impl Operand {
    /// Stores `input` as `dtype`: f32 (rounding float64 files), f16, or a quantized format
    /// (quantized on the CPU as the reference does).
    pub(super) fn new(input: FloatInput, dtype: DType) -> Result<Operand, CliError> {
        let path = input.path.display().to_string();
        let f32s: Vec<f32> = input.values.iter().map(|&v| v as f32).collect();
        if let Some(i) = f32s.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{path}: {} holds {} at {}, beyond float32's range; the kernels compute in f32",
                input.name,
                input.values[i],
                npy::at(i, &input.shape)
            )
            .into());
        }
        let (held, quant) = match (dtype, QuantFormat::from_name(dtype.name())) {
            (DType::F32, _) => (f32s, None),
            (DType::F16, _) => {
                let held: Vec<f32> = f32s
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_f32())
                    .collect();
                (held, None)
            }
            (_, Some(format)) => {
                let last = input.shape.last().copied().unwrap_or(1);
                let block = format.block_elems();
                if !last.is_multiple_of(block) {
                    return Err(format!(
                        "{path}: {} has shape {:?}; --dtype {dtype} quantizes blocks of {block} \
                         along the last dimension, which is {last}: use f32 or f16, or a \
                         multiple of {block}",
                        input.name, input.shape
                    )
                    .into());
                }
                let bytes = quantize(format, &f32s).map_err(|e| format!("{path}: {e}"))?;
                let held = dequantize(format, &bytes).map_err(|e| format!("{path}: {e}"))?;
                (held, Some(bytes))
            }
            (other, None) => return Err(format!("{other} is not a float format").into()),
        };
        if let Some(i) = held.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{path}: {} holds {} at {}, which --dtype {dtype} cannot hold (it becomes {})",
                input.name,
                input.values[i],
                npy::at(i, &input.shape),
                held[i]
            )
            .into());
        }
        Ok(Operand {
            input,
            dtype,
            held,
            quant,
        })
    }

    pub(super) fn shape(&self) -> &[usize] {
        &self.input.shape
    }

    /// The values for a reference, widened to f64.
    pub(super) fn values(&self, which: Which) -> Vec<f64> {
        match which {
            Which::Held => self.held.iter().map(|&v| f64::from(v)).collect(),
            Which::Given => self.input.values.clone(),
        }
    }

    /// Root mean square: the inputs' typical magnitude, which tolerances scale with (the tests'
    /// inputs, uniform in [-1, 1), have 0.58; standard normal ones 1).
    pub(super) fn rms(&self) -> f64 {
        let sum: f64 = self.held.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        (sum / self.held.len().max(1) as f64).sqrt()
    }

    /// How the kernel's values differ from the file's, if they do (`w: q4_0`).
    pub(super) fn rounding(&self) -> Option<String> {
        let changed = self
            .held
            .iter()
            .zip(&self.input.values)
            .any(|(&h, &g)| f64::from(h) != g);
        if !changed {
            return None;
        }
        let how = match self.dtype {
            DType::F32 => format!("{} rounded to float32", self.input.elem.numpy()),
            DType::F16 => "rounded to f16 (--dtype f16)".to_owned(),
            q => format!("quantized to {q} and dequantized (--dtype {q})"),
        };
        Some(format!("{}: {how}", self.input.name))
    }

    /// Bytes of its tensor on the GPU (buffers are padded to 16 bytes).
    pub(super) fn bytes(&self) -> u64 {
        tensor_bytes(self.shape(), self.dtype)
    }

    pub(super) fn bound(&self, split: bool) -> Bound {
        Bound {
            what: format!("{} ({})", self.input.path.display(), self.input.name),
            shape: self.shape().to_vec(),
            dtype: self.dtype,
            bytes: self.bytes(),
            split,
        }
    }

    /// Uploads it in its format.
    pub(super) fn upload(&self, gpu: &Gpu) -> pertoken_gpu::Result<Tensor> {
        let shape = self.shape();
        match (&self.quant, self.dtype) {
            (Some(bytes), dtype) => Tensor::from_quantized(gpu, bytes, shape, dtype),
            (None, DType::F16) => {
                let h: Vec<half::f16> = self.held.iter().map(|&v| half::f16::from_f32(v)).collect();
                Tensor::from_slice(gpu, &h, shape)
            }
            (None, _) => Tensor::from_slice(gpu, &self.held, shape),
        }
    }
}

/// Bytes of a tensor of `shape` in `dtype`, padded as the runtime pads every buffer.
pub(super) fn tensor_bytes(shape: &[usize], dtype: DType) -> u64 {
    let len = shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64));
    let (elems, bytes) = dtype.block();
    (len / elems as u64)
        .saturating_mul(bytes as u64)
        .saturating_add(15)
        / 16
        * 16
}

/// A tensor the op binds, for the storage-binding check.
#[derive(Debug)]
pub(super) struct Bound {
    /// The file (and name) it comes from, or what it is.
    pub(super) what: String,
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) bytes: u64,
    /// Whether the op splits it into windows the adapter can bind.
    pub(super) split: bool,
}

impl Bound {
    /// Every op's f32 output of `shape`, bound whole.
    pub(super) fn output(shape: Vec<usize>) -> Bound {
        Bound {
            what: "the output".into(),
            bytes: tensor_bytes(&shape, DType::F32),
            shape,
            dtype: DType::F32,
            split: false,
        }
    }
}

/// What an op compares its output with.
#[derive(Debug)]
pub(super) struct Tol {
    pub(super) tolerance: Tolerance,
    /// Why this tolerance.
    pub(super) why: String,
}

/// One op, its inputs read and checked.
pub(super) trait Op {
    /// The output's shape.
    fn out_shape(&self) -> Vec<usize>;
    /// The float operands.
    fn operands(&self) -> Vec<&Operand>;
    /// Every tensor the op binds, the output and scratch included.
    fn bindings(&self) -> Vec<Bound>;
    /// Runs the kernel and downloads the result.
    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>>;
    /// The CPU reference (f64) on the given values.
    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError>;
    /// The tolerance of the comparison.
    fn tolerance(&self) -> Tol;
}

/// The inputs an op takes: name, required, layout.
pub(super) fn inputs_of(op: OpName) -> &'static [(&'static str, bool, &'static str)] {
    match op {
        OpName::Matmul => &[
            ("a", true, "[M, K] or [B, M, K]"),
            ("b", true, "[K, N] or [B, K, N]"),
        ],
        OpName::Linear => &[
            ("x", true, "[.., K]"),
            ("w", true, "[N, K] (out_features, in_features)"),
            ("bias", false, "[N]"),
        ],
        OpName::Attention => &[
            ("q", true, "[n_heads, q_len, head_dim]"),
            ("k", true, "[n_kv_heads, kv_len, head_dim]"),
            ("v", true, "[n_kv_heads, kv_len, head_dim]"),
        ],
        OpName::Rmsnorm => &[("x", true, "[.., D]"), ("w", true, "[D]")],
        OpName::Rope => &[("x", true, "[L, n_heads, head_dim], tokens first")],
        OpName::SiluMul => &[("g", true, "[.., F]"), ("u", true, "g's shape")],
        OpName::Embedding => &[
            ("table", true, "[V, D]"),
            ("ids", true, "[..] integers in 0..V"),
        ],
    }
}

/// The `--in` files, by name, checked against the op's inputs.
pub(super) struct Inputs {
    op: OpName,
    files: Vec<(String, PathBuf)>,
}

impl Inputs {
    pub(super) fn new(op: OpName, files: &[(String, PathBuf)]) -> Result<Inputs, CliError> {
        let spec = inputs_of(op);
        let names: Vec<&str> = spec.iter().map(|s| s.0).collect();
        let list = spec
            .iter()
            .map(|(n, req, layout)| {
                format!("{n}={layout}{}", if *req { "" } else { " (optional)" })
            })
            .collect::<Vec<_>>()
            .join(", ");
        for (i, (name, _)) in files.iter().enumerate() {
            if !names.contains(&name.as_str()) {
                return Err(
                    format!("`pertoken run {op}` has no input {name:?}; it takes {list}").into(),
                );
            }
            if files[..i].iter().any(|(n, _)| n == name) {
                return Err(format!("--in {name}=... is given twice").into());
            }
        }
        for (name, req, layout) in spec {
            if *req && !files.iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "`pertoken run {op}` needs --in {name}=FILE.npy ({name}: {layout}); it takes {list}"
                )
                .into());
            }
        }
        Ok(Inputs {
            op,
            files: files.to_vec(),
        })
    }

    fn path(&self, name: &str) -> Option<&PathBuf> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// Reads a float input (required ones were checked by [`Inputs::new`]).
    pub(super) fn float(&self, name: &str) -> Result<Option<FloatInput>, CliError> {
        self.path(name)
            .map(|p| npy::read_float(name, p))
            .transpose()
    }

    /// Reads a required float input.
    pub(super) fn need(&self, name: &str) -> Result<FloatInput, CliError> {
        self.float(name)?
            .ok_or_else(|| format!("`pertoken run {}` needs --in {name}=FILE.npy", self.op).into())
    }

    /// Reads an integer input.
    pub(super) fn ints(&self, name: &str) -> Result<(PathBuf, Vec<usize>, Vec<i128>), CliError> {
        let p = self
            .path(name)
            .ok_or_else(|| format!("`pertoken run {}` needs --in {name}=FILE.npy", self.op))?;
        let (shape, v) = npy::read_ints(name, p)?;
        Ok((p.clone(), shape, v))
    }
}

/// "`a.npy` (a) has shape [..]; ..." for a shape error.
pub(super) fn shape_error(o: &Operand, what: impl std::fmt::Display) -> CliError {
    format!(
        "{}: {} has shape {:?}; {what}",
        o.input.path.display(),
        o.input.name,
        o.shape()
    )
    .into()
}

/// Builds the op from the inputs and options, checking every shape.
pub(super) fn build(args: &Args, inputs: &Inputs) -> Result<Box<dyn Op>, CliError> {
    Ok(match args.op {
        OpName::Matmul => Box::new(matmul::Matmul::new(args, inputs)?),
        OpName::Linear => Box::new(matmul::Linear::new(args, inputs)?),
        OpName::Attention => Box::new(attention::Attention::new(args, inputs)?),
        OpName::Rmsnorm => Box::new(decoder::RmsNorm::new(args, inputs)?),
        OpName::Rope => Box::new(decoder::Rope::new(args, inputs)?),
        OpName::SiluMul => Box::new(decoder::SiluMul::new(args, inputs)?),
        OpName::Embedding => Box::new(embedding::Embedding::new(args, inputs)?),
    })
}

/// Refuses a `--dtype` the op cannot take for its operand.
pub(super) fn dtype_in(
    op: OpName,
    dtype: DType,
    allowed: &[DType],
    why: &str,
) -> Result<DType, CliError> {
    if allowed.contains(&dtype) {
        return Ok(dtype);
    }
    let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    Err(format!(
        "`pertoken run {op}` takes --dtype {}; {why}",
        list.join(" or ")
    )
    .into())
}

/// Checks every tensor the op binds whole against the adapter's storage-binding limit, before
/// anything is uploaded.
pub(super) fn check_bindings(
    op: OpName,
    bound: &[Bound],
    caps: &Capabilities,
) -> Result<(), CliError> {
    let limit = caps.max_storage_binding;
    if let Some(b) = bound.iter().find(|b| !b.split && b.bytes > limit) {
        return Err(format!(
            "{}: {:?} {} is {} bytes, over this adapter's storage-binding limit of {limit} bytes \
             (max_storage_buffer_binding_size), and `pertoken run {op}` binds it whole (only \
             linear's w and embedding's table are split into windows): use smaller inputs, or an \
             adapter with a larger limit (`pertoken devices` lists them)",
            b.what, b.shape, b.dtype, b.bytes
        )
        .into());
    }
    Ok(())
}
