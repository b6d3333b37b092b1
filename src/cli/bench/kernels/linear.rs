//! Decode and prefill shapes of a linear layer: y = x·wᵀ in f16, Q8_0 and Q4_0.

use ndarray::ArrayView2;
use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_matmul::{Kernel, Tuner, check_linear, linear_into, linear_with};
use pertoken_reference::{QuantFormat, Tolerance, compare, dequantize, quantize};

use super::{CliError, verdict};

/// One measured linear shape.
pub(crate) struct LinearRow {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) dtype: DType,
    pub(crate) kernel: String,
    pub(crate) seconds: f64,
    /// Median seconds per call cycling through copies of w that together exceed the caches
    /// (each call's weights come from memory, as a model's do).
    pub(crate) cold_seconds: f64,
    /// Bytes the kernel must move: weights, x and y once each.
    pub(crate) bytes: f64,
    pub(crate) verified: Result<(), String>,
}

impl LinearRow {
    pub(crate) fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// Weights for one (K, N, dtype): the tensor and the values it holds, shared by every M, and
/// byte-for-byte copies for timing from memory rather than from a cache.
pub(crate) struct Weights {
    pub(crate) tensor: Tensor,
    pub(crate) values: Vec<f32>,
    cold: Vec<Tensor>,
}

pub(crate) fn weights(
    gpu: &Gpu,
    k: usize,
    n: usize,
    dtype: DType,
    seed: u64,
) -> Result<Weights, CliError> {
    // Scaled like a trained layer's weights (~1/√K), so outputs stay O(1).
    let scale = 1.0 / (k as f32).sqrt();
    let raw: Vec<f32> = pertoken_reference::random::uniform_f32(seed, n * k)
        .into_iter()
        .map(|v| v * scale)
        .collect();
    let (tensor, values) = match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => {
            let f = match dtype {
                DType::Q8_0 => QuantFormat::Q8_0,
                DType::Q4_0 => QuantFormat::Q4_0,
                _ => QuantFormat::Q4_1,
            };
            let bytes = quantize(f, &raw)?;
            let values = dequantize(f, &bytes)?;
            (Tensor::from_quantized(gpu, &bytes, &[n, k], dtype)?, values)
        }
        _ => Tensor::from_f32_as(gpu, &raw, &[n, k], dtype)?,
    };
    // Copies of w past the caches (pertoken_matmul::tune::COLD_BYTES), for timing from memory.
    let cold = pertoken_matmul::tune::cold_copies(gpu, &tensor)?;
    Ok(Weights {
        tensor,
        values,
        cold,
    })
}

pub(crate) fn bench_linear(
    gpu: &Gpu,
    tuner: &mut Tuner,
    w: &Weights,
    m: usize,
    repeats: u32,
    kernel: Option<Kernel>,
) -> Result<LinearRow, CliError> {
    let (n, k) = (w.tensor.shape()[0], w.tensor.shape()[1]);
    let xv = pertoken_reference::random::uniform_f32((m * 131 + k) as u64, m * k);
    let x = Tensor::from_slice(gpu, &xv, &[m, k])?;
    let p = check_linear(&x, &w.tensor, None)?;
    let kernel = match kernel {
        Some(k) => k,
        None => tuner.linear(&x, &w.tensor, None)?.kernel(),
    };
    let y = linear_with(gpu, &x, &w.tensor, None, kernel)?;
    let got = y.to_vec::<f32>()?;
    let want = pertoken_reference::linear(
        ArrayView2::from_shape((m, k), &xv[..])?,
        ArrayView2::from_shape((n, k), &w.values[..])?,
        None,
    )?;
    let want: Vec<f64> = want.iter().copied().collect();
    let cmp = compare(&got, &want, Tolerance::F32.for_reduction(k, 1.0));
    let verified = verdict(&cmp);
    let timed = gpu.measure(repeats, &mut || {
        linear_into(gpu, &x, &w.tensor, None, &y, kernel)
    })?;
    let mut next = 0;
    let cold = gpu.measure(repeats, &mut || {
        next = (next + 1) % w.cold.len();
        linear_into(gpu, &x, &w.cold[next], None, &y, kernel)
    })?;
    // The copies hold the same bytes: the same kernel must give the same result from them.
    let verified = match (verified, y.to_vec::<f32>()?) {
        (Ok(()), again) if again != got => {
            Err("a copy of the weights gave a different result".to_owned())
        }
        (v, _) => v,
    };
    Ok(LinearRow {
        m,
        k,
        n,
        dtype: w.tensor.dtype(),
        kernel: kernel.to_string(),
        seconds: timed.median,
        cold_seconds: cold.median,
        bytes: p.min_bytes(),
        verified,
    })
}
