//! The copy kernel, and the bandwidth it achieves: the ceiling memory-bound kernels are
//! reported against.

use pertoken_shaders::COPY;

use crate::{Binding, DType, Error, Gpu, Launch, Result, Tensor, TimingMethod};

const OP: &str = "copy";
const WG: u32 = 256;

/// Copies `src`'s bytes into `dst` (same byte size, any dtypes) with the copy kernel.
pub fn copy(gpu: &Gpu, src: &Tensor, dst: &Tensor) -> Result<()> {
    if src.size_in_bytes() != dst.size_in_bytes() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: src.shape().to_vec(),
            rhs: dst.shape().to_vec(),
            expected: "source and destination of the same byte size".into(),
        });
    }
    if std::ptr::eq(src.buffer(), dst.buffer()) {
        return Err(Error::InvalidShape {
            op: OP,
            shape: dst.shape().to_vec(),
            reason: "source and destination are the same tensor".into(),
        });
    }
    let vec4s = src.buffer().size() / 16;
    let n = u32::try_from(vec4s).map_err(|_| Error::TooLarge {
        op: OP,
        what: "copy",
        bytes: src.buffer().size(),
        limit: u64::from(u32::MAX) * 16,
        limit_name: "u32 vec4 index",
    })?;
    let groups = n
        .div_ceil(WG * 4)
        .clamp(1, gpu.capabilities().max_workgroups_per_dimension);
    let params = bytemuck::cast::<[u32; 4], [u8; 16]>([n, 0, 0, 0]);
    gpu.launch(&Launch {
        op: OP,
        shader: &COPY,
        constants: &[("WG", f64::from(WG))],
        bindings: &[Binding::whole(src), Binding::whole(dst)],
        params: &params,
        workgroups: [groups, 1, 1],
    })
}

/// What [`measure_bandwidth`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    /// Bytes copied per run (each is read once and written once).
    pub bytes: u64,
    /// Median seconds per copy.
    pub seconds: f64,
    /// Fastest copy, in seconds: the adapter's achievable bandwidth on a shared, noisy machine,
    /// and so the ceiling kernels are reported against.
    pub best_seconds: f64,
    /// Copies per timed batch ([`Gpu::measure`]): more than one where a copy is short.
    pub calls: u32,
    /// How the time was measured.
    pub method: TimingMethod,
}

impl Bandwidth {
    /// Bytes moved (read + written) per second, at the median time.
    pub fn bytes_per_second(&self) -> f64 {
        2.0 * self.bytes as f64 / self.seconds
    }

    /// Bytes moved (read + written) per second by the fastest copy.
    pub fn best_bytes_per_second(&self) -> f64 {
        2.0 * self.bytes as f64 / self.best_seconds
    }
}

/// Measures the adapter's achievable bandwidth with the copy kernel: `bytes` (clamped to the
/// storage-binding limit) copied in `repeats` timed batches after a warm-up ([`Gpu::measure`]);
/// the copy is verified bit-for-bit before any time counts. Returns the median and the fastest
/// time per copy.
pub fn measure_bandwidth(gpu: &Gpu, bytes: u64, repeats: u32) -> Result<Bandwidth> {
    let bytes = bytes.min(gpu.capabilities().max_storage_binding) / 16 * 16;
    let words = (bytes / 4).max(4) as usize;
    // Distinct words, so a copy that drops or repeats any 16-byte chunk is caught.
    let data: Vec<u32> = (0..words as u32)
        .map(|i| i.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995)
        .collect();
    let src = Tensor::from_slice(gpu, bytemuck::cast_slice::<u32, f32>(&data), &[words])?;
    let dst = Tensor::zeros(gpu, &[words], DType::F32)?;
    copy(gpu, &src, &dst)?;
    let back: Vec<f32> = dst.to_vec()?;
    if bytemuck::cast_slice::<f32, u32>(&back) != data {
        return Err(Error::Device {
            op: OP,
            message: "the copy kernel's output differs from its input".into(),
        });
    }
    let m = gpu.measure(repeats, &mut || copy(gpu, &src, &dst))?;
    Ok(Bandwidth {
        bytes: words as u64 * 4,
        seconds: m.median,
        best_seconds: m.best,
        calls: m.calls,
        method: m.method,
    })
}
