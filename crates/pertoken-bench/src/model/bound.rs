//! The adapter's ceilings a model's tokens/s are held to: the copy kernel's bandwidth for
//! generation (weights and KV bytes a token reads), and for prompts the decoder's own linear
//! kernels at the model's own shapes, each timed alone (what a prompt would take if it were
//! nothing but its matmuls, run at the best rate this adapter reaches on them).

use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_model::{Role, WeightSource};
use pertoken_reference::random::uniform_f32;
use pertoken_reference::{Tolerance, compare};

use pertoken_reference::quant::{QuantFormat, dequantize, quantize};

use crate::{BenchError, Result};

/// The adapter's measured ceilings for one model.
#[derive(Debug, Clone)]
pub struct Rates {
    /// Best copy bandwidth, bytes/s.
    pub copy: f64,
    /// Per prompt length: seconds its linear layers take, each kernel timed alone (verified).
    pub prompt: Vec<(usize, f64)>,
}

impl Rates {
    /// The prompt bound in tokens/s for a `p`-token prompt, where it was measured.
    pub fn prompt_bound(&self, p: usize) -> Option<f64> {
        self.prompt
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, s)| p as f64 / s)
    }
}

/// Seconds the linear layers of a `p`-token prompt take with the decoder's kernels (the
/// tuner's choices), in chunks of at most `max_tokens` rows: every layer's fused q/k/v, output,
/// fused gate/up and down projections, and the head for the last row, each timed alone.
pub fn prompt_linears_seconds(
    gpu: &Gpu,
    tuner: &mut pertoken_matmul::Tuner,
    source: &dyn WeightSource,
    (p, max_tokens): (usize, usize),
) -> Result<f64> {
    let m = &source.spec().shape;
    let (h, f) = (m.hidden as usize, m.ffn as usize);
    let q = (m.heads * m.head_dim) as usize;
    let kv = (m.kv_heads * m.head_dim) as usize;
    let format = |r: Role| -> Result<Option<DType>> { Ok(source.stored(r)?.map(|(d, _)| d)) };
    let or_f32 = |d: Option<DType>| d.unwrap_or(DType::F32);
    let rows = p.min(max_tokens).max(1);
    let mut layer = 0.0;
    for (k, n, role) in [
        (h, q + 2 * kv, Role::Q(0)),
        (q, h, Role::O(0)),
        (h, 2 * f, Role::Gate(0)),
        (f, h, Role::Down(0)),
    ] {
        layer += linear_seconds(gpu, tuner, (rows, k, n), or_f32(format(role)?))?;
    }
    let head_format = match format(Role::Output)? {
        Some(d) => d,
        None => or_f32(format(Role::Embed)?),
    };
    let head = linear_seconds(gpu, tuner, (1, h, m.vocab as usize), head_format)?;
    Ok(m.layers as f64 * layer * p as f64 / rows as f64 + head)
}

/// Rows of the output checked against the reference (all columns): enough to catch a wrong
/// kernel, few enough that an 8B model's widest linear checks in a moment.
const CHECKED_ROWS: usize = 4;

/// Seconds of `x[m, k]·w[n, k]ᵀ` with `w` in `format` by the tuner's kernel (fastest of 3
/// timed batches), its first rows checked against the reference on the dequantized weights.
fn linear_seconds(
    gpu: &Gpu,
    tuner: &mut pertoken_matmul::Tuner,
    (m, k, n): (usize, usize, usize),
    format: DType,
) -> Result<f64> {
    let xv = uniform_f32(3, m * k);
    let raw = uniform_f32(4, n * k);
    let (w, held) = upload_weights(gpu, &raw, (n, k), format)?;
    let x = Tensor::from_slice(gpu, &xv, &[m, k])?;
    let kernel = tuner.linear(&x, &w, None)?.kernel();
    let out = pertoken_matmul::linear_with(gpu, &x, &w, None, kernel)?;
    let r = m.min(CHECKED_ROWS);
    let xa = ndarray::ArrayView2::from_shape((r, k), &xv[..r * k]).map_err(shape)?;
    let wa = ndarray::ArrayView2::from_shape((n, k), &held[..]).map_err(shape)?;
    let want: Vec<f64> = pertoken_reference::linear(xa, wa, None)
        .map_err(|e| BenchError::Invalid(e.to_string()))?
        .iter()
        .copied()
        .collect();
    let got = out.to_vec::<f32>()?;
    let cmp = compare(&got[..r * n], &want, Tolerance::F32.for_reduction(k, 1.0));
    if !cmp.passed() {
        return Err(BenchError::Invalid(format!(
            "the {m}x{k}x{n} {format} linear that bounds prompts is wrong ({kernel:?}): {cmp}"
        )));
    }
    let t = gpu.measure(3, &mut || {
        pertoken_matmul::linear_into(gpu, &x, &w, None, &out, kernel)
    })?;
    Ok(t.best)
}

/// `raw` as a `[n, k]` weight in `dtype` (quantized on the CPU as the reference does), and the
/// values the tensor holds, for the reference to use.
pub fn upload_weights(
    gpu: &Gpu,
    raw: &[f32],
    (n, k): (usize, usize),
    dtype: DType,
) -> Result<(Tensor, Vec<f32>)> {
    Ok(match QuantFormat::from_name(dtype.name()) {
        Some(f) => {
            let bytes = quantize(f, raw).map_err(|e| BenchError::Invalid(e.to_string()))?;
            let values = dequantize(f, &bytes).map_err(|e| BenchError::Invalid(e.to_string()))?;
            (Tensor::from_quantized(gpu, &bytes, &[n, k], dtype)?, values)
        }
        None => Tensor::from_f32_as(gpu, raw, &[n, k], dtype)?,
    })
}

fn shape(e: ndarray::ShapeError) -> BenchError {
    BenchError::Invalid(e.to_string())
}
