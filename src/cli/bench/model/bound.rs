//! The adapter's ceilings a model's tokens/s are held to: the copy kernel's bandwidth for
//! generation, the best verified matmul (f32, or a linear in the weights' own format) at the
//! model's prefill shape for prompts.

use pertoken_gpu::{DType, Gpu};
use pertoken_reference::{Tolerance, compare};

use crate::cli::CliError;

/// The adapter's measured ceilings for one model.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rates {
    /// Best copy bandwidth, bytes/s.
    pub copy: f64,
    /// Best matmul rate at the model's prefill shape (f32, or a linear in the weights' format),
    /// FLOP/s (verified).
    pub matmul: Option<f64>,
}

/// The f32 matmul rate at `[m, k]·[k, n]` with the selected kernel, checked against the
/// reference first: the ceiling a prompt's matmuls are held to.
pub(super) fn matmul_rate(gpu: &Gpu, m: usize, k: usize, n: usize) -> Result<f64, CliError> {
    use pertoken_gpu::Tensor;
    use pertoken_reference::random::uniform_array2;
    let (a, b) = (uniform_array2(1, m, k), uniform_array2(2, k, n));
    let (ta, tb) = (
        Tensor::from_array(gpu, a.view())?,
        Tensor::from_array(gpu, b.view())?,
    );
    let c = pertoken_matmul::matmul(gpu, &ta, &tb)?;
    let want = pertoken_reference::matmul(a.view(), b.view())?;
    let want: Vec<f64> = want.iter().copied().collect();
    let cmp = compare(
        &c.to_vec::<f32>()?,
        &want,
        Tolerance::F32.for_reduction(k, 1.0),
    );
    if !cmp.passed() {
        return Err(format!("the {m}x{k}x{n} matmul that bounds prompts is wrong: {cmp}").into());
    }
    let kernel =
        pertoken_matmul::select(gpu.capabilities(), pertoken_matmul::MatmulShape { m, k, n });
    let t = gpu.measure(3, &mut || {
        pertoken_matmul::matmul_into(gpu, &ta, &tb, &c, kernel)
    })?;
    Ok(2.0 * (m * k * n) as f64 / t.best)
}

/// The rate of `x[m, k]·w[n, k]ᵀ` with `w` in `format`, by the kernel the decoder's linears
/// select, checked against the reference on the dequantized weights first.
pub(super) fn linear_rate(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n: usize,
    format: DType,
) -> Result<f64, CliError> {
    use pertoken_gpu::Tensor;
    use pertoken_reference::random::uniform_f32;
    use pertoken_reference::{QuantFormat, dequantize, quantize};
    let xv = uniform_f32(3, m * k);
    let raw = uniform_f32(4, n * k);
    let quant = match format {
        DType::Q8_0 => Some(QuantFormat::Q8_0),
        DType::Q4_0 => Some(QuantFormat::Q4_0),
        DType::Q4_1 => Some(QuantFormat::Q4_1),
        _ => None,
    };
    let (w, held) = match quant {
        Some(q) => {
            let bytes = quantize(q, &raw)?;
            let held = dequantize(q, &bytes)?;
            (Tensor::from_quantized(gpu, &bytes, &[n, k], format)?, held)
        }
        None => Tensor::from_f32_as(gpu, &raw, &[n, k], format)?,
    };
    let x = Tensor::from_slice(gpu, &xv, &[m, k])?;
    let p = pertoken_matmul::check_linear(&x, &w, None)?;
    let kernel = pertoken_matmul::select_linear(gpu.capabilities(), &p);
    let out = pertoken_matmul::linear_with(gpu, &x, &w, None, kernel)?;
    let xa = ndarray::ArrayView2::from_shape((m, k), &xv[..])?;
    let wa = ndarray::ArrayView2::from_shape((n, k), &held[..])?;
    let want: Vec<f64> = pertoken_reference::linear(xa, wa, None)?
        .iter()
        .copied()
        .collect();
    let cmp = compare(
        &out.to_vec::<f32>()?,
        &want,
        Tolerance::F32.for_reduction(k, 1.0),
    );
    if !cmp.passed() {
        return Err(
            format!("the {m}x{k}x{n} {format} linear that bounds prompts is wrong: {cmp}").into(),
        );
    }
    let t = gpu.measure(3, &mut || {
        pertoken_matmul::linear_into(gpu, &x, &w, None, &out, kernel)
    })?;
    Ok(2.0 * (m * k * n) as f64 / t.best)
}
