//! Tensors: storage buffers with a shape and a dtype.

use std::sync::Arc;

use ndarray::{ArrayD, ArrayView, Dimension, IxDyn};

use crate::{DType, Element, Error, Gpu, Result};

/// Every tensor's buffer is padded to a multiple of this many bytes, so kernels may bind it as an
/// array of `vec4<f32>` whatever its length.
pub const BUFFER_ALIGN: u64 = 16;

/// A dense, row-major tensor in a storage buffer on one [`Gpu`].
///
/// Holds at least one element: zero-sized dimensions are refused. Cloning is cheap and shares the
/// buffer.
#[derive(Clone)]
pub struct Tensor {
    gpu: Gpu,
    buffer: Arc<wgpu::Buffer>,
    /// The buffer's bytes in its handle's ledger, returned with the last view.
    _lease: Arc<crate::memory::Lease>,
    shape: Vec<usize>,
    dtype: DType,
    len: usize,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

/// Checks a shape and returns its element count and byte size.
fn check_shape(op: &'static str, shape: &[usize], dtype: DType) -> Result<(usize, u64)> {
    if shape.contains(&0) {
        return Err(Error::InvalidShape {
            op,
            shape: shape.to_vec(),
            reason: "a dimension is zero; tensors hold at least one element".into(),
        });
    }
    let overflow = || Error::InvalidShape {
        op,
        shape: shape.to_vec(),
        reason: "the element count overflows".into(),
    };
    let len = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let (block_elems, block_bytes) = dtype.block();
    let last = shape.last().copied().unwrap_or(1);
    if !last.is_multiple_of(block_elems) {
        return Err(Error::InvalidShape {
            op,
            shape: shape.to_vec(),
            reason: format!(
                "{dtype} quantizes blocks of {block_elems} along the last dimension, which is {last}"
            ),
        });
    }
    let bytes = ((len / block_elems) as u64)
        .checked_mul(block_bytes as u64)
        .ok_or_else(overflow)?;
    Ok((len, bytes))
}

impl Tensor {
    /// A tensor of `shape` whose contents are zero (wgpu zero-initializes every buffer).
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::allocate(gpu, "Tensor::zeros", shape, dtype)
    }

    /// A zeroed tensor for `op`, which errors (a bad shape, too large, out of memory) name.
    fn allocate(gpu: &Gpu, op: &'static str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let (len, bytes) = check_shape(op, shape, dtype)?;
        let (buffer, lease) = gpu.storage_buffer(op, bytes)?;
        Ok(Tensor {
            gpu: gpu.clone(),
            buffer: Arc::new(buffer),
            _lease: Arc::new(lease),
            shape: shape.to_vec(),
            dtype,
            len,
        })
    }

    /// Uploads row-major `data` as a tensor of `shape`.
    pub fn from_slice<T: Element>(gpu: &Gpu, data: &[T], shape: &[usize]) -> Result<Tensor> {
        let (len, _) = check_shape("Tensor::from_slice", shape, T::DTYPE)?;
        if data.len() != len {
            return Err(Error::DataLength {
                op: "Tensor::from_slice",
                shape: shape.to_vec(),
                expected: len,
                got: data.len(),
            });
        }
        let t = Tensor::allocate(gpu, "Tensor::from_slice", shape, T::DTYPE)?;
        t.write_bytes(bytemuck::cast_slice(data));
        Ok(t)
    }

    /// Uploads f32 `values` stored as `dtype` (F32 as they are, F16 rounded to nearest) and
    /// returns with the tensor the values it actually holds: what a reference must be given to
    /// check a kernel, and not the values before rounding.
    pub fn from_f32_as(
        gpu: &Gpu,
        values: &[f32],
        shape: &[usize],
        dtype: DType,
    ) -> Result<(Tensor, Vec<f32>)> {
        match dtype {
            DType::F32 => Ok((Tensor::from_slice(gpu, values, shape)?, values.to_vec())),
            DType::F16 => {
                let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
                let held = h.iter().map(|v| v.to_f32()).collect();
                Ok((Tensor::from_slice(gpu, &h, shape)?, held))
            }
            other => Err(Error::Unsupported {
                op: "Tensor::from_f32_as",
                reason: format!(
                    "{other} is block-quantized: quantize the values (pertoken_reference::quantize) \
                     and upload the bytes with Tensor::from_quantized"
                ),
            }),
        }
    }

    /// Uploads the raw bytes of a block-quantized tensor (`Q8_0`, `Q4_0`) in ggml's layout: row
    /// after row, each row `shape.last() / 32` blocks.
    pub fn from_quantized(
        gpu: &Gpu,
        bytes: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        const OP: &str = "Tensor::from_quantized";
        if !dtype.is_quantized() {
            return Err(Error::Unsupported {
                op: OP,
                reason: format!("{dtype} is not a block-quantized format; use Tensor::from_slice"),
            });
        }
        let (_, expected) = check_shape(OP, shape, dtype)?;
        if bytes.len() as u64 != expected {
            return Err(Error::DataLength {
                op: OP,
                shape: shape.to_vec(),
                expected: expected as usize,
                got: bytes.len(),
            });
        }
        let t = Tensor::allocate(gpu, OP, shape, dtype)?;
        t.write_bytes(bytes);
        Ok(t)
    }

    /// Uploads an ndarray view of any layout (copied to row-major first if needed).
    pub fn from_array<T: Element, D: Dimension>(
        gpu: &Gpu,
        array: ArrayView<'_, T, D>,
    ) -> Result<Tensor> {
        let shape = array.shape().to_vec();
        match array.as_slice() {
            Some(s) => Tensor::from_slice(gpu, s, &shape),
            None => {
                let owned: Vec<T> = array.iter().copied().collect();
                Tensor::from_slice(gpu, &owned, &shape)
            }
        }
    }

    /// A tensor of `shape` over the first bytes of this one's buffer (shared, not copied): a
    /// decoder keeps buffers sized for its longest prompt and views the rows a shorter one
    /// needs. The view must fit in the buffer; writes through either are seen by both.
    pub fn view(&self, shape: &[usize]) -> Result<Tensor> {
        let (len, bytes) = check_shape("Tensor::view", shape, self.dtype)?;
        if bytes > self.buffer.size() {
            return Err(Error::InvalidShape {
                op: "Tensor::view",
                shape: shape.to_vec(),
                reason: format!(
                    "needs {bytes} bytes; the viewed tensor {:?} has {}",
                    self.shape,
                    self.buffer.size()
                ),
            });
        }
        Ok(Tensor {
            gpu: self.gpu.clone(),
            buffer: Arc::clone(&self.buffer),
            _lease: Arc::clone(&self._lease),
            shape: shape.to_vec(),
            dtype: self.dtype,
            len,
        })
    }

    /// Overwrites the whole tensor with `data` (row-major), after every op recorded before it.
    pub fn write<T: Element>(&self, data: &[T]) -> Result<()> {
        self.check_dtype::<T>("Tensor::write")?;
        if data.len() != self.len {
            return Err(Error::DataLength {
                op: "Tensor::write",
                shape: self.shape.clone(),
                expected: self.len,
                got: data.len(),
            });
        }
        // Queue writes run before the next submitted command buffer, so submit what is pending
        // first: an op recorded earlier must see the old contents.
        self.gpu.submit_pending("Tensor::write", None)?;
        self.write_bytes(bytemuck::cast_slice(data));
        Ok(())
    }

    /// Overwrites elements `start .. start + data.len()` (row-major), after every op recorded
    /// before it: a decoder writes a prompt's tokens after the ones already in its buffer.
    /// The byte offset and length must be multiples of 4 (an even count of f16).
    pub fn write_range<T: Element>(&self, start: usize, data: &[T]) -> Result<()> {
        const OP: &str = "Tensor::write_range";
        self.check_dtype::<T>(OP)?;
        let size = std::mem::size_of::<T>();
        let bad = |reason: String| Error::InvalidShape {
            op: OP,
            shape: self.shape.clone(),
            reason,
        };
        if start
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(bad(format!(
                "elements {start}..{} are past the tensor's {}",
                start.saturating_add(data.len()),
                self.len
            )));
        }
        if !(start * size).is_multiple_of(4) || !std::mem::size_of_val(data).is_multiple_of(4) {
            return Err(bad(format!(
                "{} elements from {start} are not whole 4-byte words",
                data.len()
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.gpu.submit_pending(OP, None)?;
        self.gpu.queue().write_buffer(
            &self.buffer,
            (start * size) as u64,
            bytemuck::cast_slice(data),
        );
        Ok(())
    }

    /// Sets every element to `value`, after every op recorded before it. Tests poison outputs
    /// with NaN this way, so an element a kernel fails to write cannot pass.
    pub fn fill<T: Element>(&self, value: T) -> Result<()> {
        self.write(&vec![value; self.len])
    }

    fn write_bytes(&self, bytes: &[u8]) {
        // write_buffer needs a multiple of 4 bytes; an odd count of f16 is padded with zero.
        if bytes.len().is_multiple_of(4) {
            self.gpu.queue().write_buffer(&self.buffer, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.gpu.queue().write_buffer(&self.buffer, 0, &padded);
        }
    }

    /// Downloads the tensor (submitting every pending op first).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check_dtype::<T>("Tensor::to_vec")?;
        let bytes = self
            .gpu
            .download_buffer(&self.buffer, self.size_in_bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Downloads the tensor's raw bytes (for quantized tensors, ggml's block layout).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.gpu.download_buffer(&self.buffer, self.size_in_bytes())
    }

    /// Downloads the tensor as an ndarray of its shape.
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        let v = self.to_vec::<T>()?;
        ArrayD::from_shape_vec(IxDyn(&self.shape), v).map_err(|e| Error::InvalidShape {
            op: "Tensor::to_array",
            shape: self.shape.clone(),
            reason: e.to_string(),
        })
    }

    fn check_dtype<T: Element>(&self, op: &'static str) -> Result<()> {
        if T::DTYPE != self.dtype {
            return Err(Error::DTypeMismatch {
                op,
                expected: self.dtype,
                got: T::DTYPE,
            });
        }
        Ok(())
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: tensors hold at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of data (without the buffer's padding).
    pub fn size_in_bytes(&self) -> u64 {
        let (elems, bytes) = self.dtype.block();
        (self.len / elems) as u64 * bytes as u64
    }

    /// The storage buffer (padded to [`BUFFER_ALIGN`] bytes).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The shared handle on the buffer, for caches that must not keep it alive.
    pub(crate) fn buffer_handle(&self) -> &Arc<wgpu::Buffer> {
        &self.buffer
    }

    /// The handle this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // The last handle on this buffer: bind groups cached for it should go too.
        if Arc::strong_count(&self.buffer) == 1 {
            self.gpu.inner.stale.mark();
        }
    }
}

impl Gpu {
    /// A storage buffer of at least `bytes` (rounded up to [`BUFFER_ALIGN`]), and its lease
    /// in the handle's memory ledger.
    fn storage_buffer(
        &self,
        op: &'static str,
        bytes: u64,
    ) -> Result<(wgpu::Buffer, crate::memory::Lease)> {
        self.sweep_bind_cache();
        let size = bytes.max(1).next_multiple_of(BUFFER_ALIGN);
        let limit = self.capabilities().max_buffer_size;
        if size > limit {
            return Err(Error::TooLarge {
                op,
                what: "buffer",
                bytes: size,
                limit,
                limit_name: "max_buffer_size",
            });
        }
        let lease = self.inner.ledger.lease(op, size)?;
        let buffer = self.scoped(op, || {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(op),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        Ok((buffer, lease))
    }

    pub(crate) fn staging_buffer(&self, bytes: u64) -> wgpu::Buffer {
        self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("pertoken staging"),
            size: bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copies the first `bytes` of `buffer` to the host, after every pending op.
    fn download_buffer(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let padded = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = self.staging_buffer(padded);
        self.submit_pending(
            "download",
            Some(&mut |enc: &mut wgpu::CommandEncoder| {
                enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded);
            }),
        )?;
        let mut raw = self.read_staging("download", &staging)?;
        raw.truncate(bytes as usize);
        Ok(raw)
    }

    /// Maps a staging buffer whose copy has been submitted, and reads it.
    pub(crate) fn read_staging(&self, op: &'static str, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait(op)?;
        let mapped = rx.recv().map_err(|_| Error::Device {
            op,
            message: "the buffer map callback never ran".into(),
        });
        mapped
            .and_then(|m| {
                m.map_err(|e| Error::Device {
                    op,
                    message: format!("mapping the staging buffer failed: {e}"),
                })
            })
            .map_err(|e| self.lost_or(op, e))?;
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Device {
                op,
                message: format!("reading the staging buffer failed: {e}"),
            })?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
