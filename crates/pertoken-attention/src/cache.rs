//! A per-layer KV cache: keys and values `[n_kv_heads, capacity, head_dim]`, appended in place.

use pertoken_gpu::{DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::ATTENTION_APPEND;

use crate::{
    AttentionOptions, AttentionShape, Kernel, MAX_HEAD_DIM, OP, Partials, check_out, flash,
    strided_groups,
};

/// Keys and values of one layer, `[n_kv_heads, capacity, head_dim]` each, in f32 or f16, of
/// which the first [`KvCache::len`] positions are filled.
#[derive(Debug)]
pub struct KvCache {
    k: Tensor,
    v: Tensor,
    n_kv_heads: usize,
    capacity: usize,
    head_dim: usize,
    len: usize,
    /// Split-KV partial results, reused by every attention call over this cache.
    partials: Partials,
}

impl KvCache {
    /// An empty cache. f16 caches need an even `head_dim` (rows are copied as 32-bit words).
    pub fn new(
        gpu: &Gpu,
        n_kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        dtype: DType,
    ) -> Result<KvCache> {
        let shape = vec![n_kv_heads, capacity, head_dim];
        let bad = |reason: &str| Error::InvalidShape {
            op: "KvCache::new",
            shape: shape.clone(),
            reason: reason.into(),
        };
        match dtype {
            DType::F32 => {}
            DType::F16 if head_dim.is_multiple_of(2) => {}
            DType::F16 => return Err(bad("an f16 cache needs an even head_dim")),
            _ => return Err(bad("the cache holds f32 or f16")),
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(bad(&format!(
                "head_dim over the attention kernels' maximum of {MAX_HEAD_DIM}"
            )));
        }
        // The kernels bind K and V whole.
        let bytes = (n_kv_heads as u64)
            .saturating_mul(capacity as u64)
            .saturating_mul(head_dim as u64)
            .saturating_mul(dtype.block().1 as u64);
        let limit = gpu.capabilities().max_storage_binding;
        if bytes > limit {
            return Err(Error::TooLarge {
                op: "KvCache::new",
                what: "K or V cache tensor (bound whole; an f16 cache takes half)",
                bytes,
                limit,
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        Ok(KvCache {
            k: Tensor::zeros(gpu, &shape, dtype)?,
            v: Tensor::zeros(gpu, &shape, dtype)?,
            n_kv_heads,
            capacity,
            head_dim,
            len: 0,
            partials: Partials::default(),
        })
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps the first `len` positions and forgets the rest: speculative decoding rolls back
    /// the drafted tokens the target model rejected, and the next append writes over them. No
    /// GPU work. A `len` past [`KvCache::len`] is an error (there is nothing to keep there).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::InvalidShape {
                op: "KvCache::truncate",
                shape: vec![self.n_kv_heads, self.len, self.head_dim],
                reason: format!("cannot keep {len} positions: only {} are filled", self.len),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Marks `t` more positions filled that a caller's kernel wrote into [`KvCache::keys`] and
    /// [`KvCache::values`] at rows `len .. len + t` (a decoder's RoPE fused with the append).
    /// No GPU work; an overflow is an error and changes nothing.
    pub fn extend_written(&mut self, t: usize) -> Result<()> {
        if self.len + t > self.capacity {
            return Err(Error::InvalidShape {
                op: "KvCache::extend_written",
                shape: vec![self.n_kv_heads, t, self.head_dim],
                reason: format!(
                    "KV cache overflow: {} positions filled + {t} new > capacity {}",
                    self.len, self.capacity
                ),
            });
        }
        self.len += t;
        Ok(())
    }

    /// The keys tensor (all `capacity` rows).
    pub fn keys(&self) -> &Tensor {
        &self.k
    }

    /// The values tensor (all `capacity` rows).
    pub fn values(&self) -> &Tensor {
        &self.v
    }

    /// Appends `t` new positions: `k_new` and `v_new` are `[n_kv_heads, t, head_dim]` in the
    /// cache's dtype. A kernel copies them in place; nothing goes through the host.
    pub fn append(&mut self, gpu: &Gpu, k_new: &Tensor, v_new: &Tensor) -> Result<()> {
        const OP_APPEND: &str = "KvCache::append";
        for t in [k_new, v_new] {
            if t.dtype() != self.k.dtype() {
                return Err(Error::DTypeMismatch {
                    op: OP_APPEND,
                    expected: self.k.dtype(),
                    got: t.dtype(),
                });
            }
        }
        let [h, t, d] = k_new.shape()[..] else {
            return Err(Error::InvalidShape {
                op: OP_APPEND,
                shape: k_new.shape().to_vec(),
                reason: "new keys must be [n_kv_heads, t, head_dim]".into(),
            });
        };
        if h != self.n_kv_heads || d != self.head_dim || v_new.shape() != k_new.shape() {
            return Err(Error::ShapeMismatch {
                op: OP_APPEND,
                lhs: k_new.shape().to_vec(),
                rhs: vec![self.n_kv_heads, self.capacity, self.head_dim],
                expected: "new keys and values [n_kv_heads, t, head_dim] matching the cache".into(),
            });
        }
        if self.len + t > self.capacity {
            return Err(Error::InvalidShape {
                op: OP_APPEND,
                shape: k_new.shape().to_vec(),
                reason: format!(
                    "KV cache overflow: {} positions filled + {t} new > capacity {}",
                    self.len, self.capacity
                ),
            });
        }
        let words = if self.k.dtype() == DType::F16 {
            d / 2
        } else {
            d
        };
        let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let params = [u(t), u(words), u(self.capacity), u(self.len)];
        for (src, dst) in [(k_new, &self.k), (v_new, &self.v)] {
            gpu.launch(&Launch {
                op: OP_APPEND,
                shader: &ATTENTION_APPEND,
                constants: &[],
                bindings: &[src.into(), dst.into()],
                params: bytemuck::cast_slice(&params),
                workgroups: [
                    strided_groups(t * words, gpu.capabilities().max_workgroups_per_dimension),
                    u(h),
                    1,
                ],
            })?;
        }
        self.len += t;
        Ok(())
    }

    /// Attention of `q: [n_heads, q_len, head_dim]` over the filled positions (flash kernel,
    /// split-KV), into a new f32 tensor shaped like q. With `causal`, the queries are the last
    /// `q_len` positions of the cache.
    pub fn attention(&self, gpu: &Gpu, q: &Tensor, options: AttentionOptions) -> Result<Tensor> {
        let out = Tensor::zeros(gpu, q.shape(), DType::F32)?;
        self.attention_into(gpu, q, &out, options)?;
        Ok(out)
    }

    /// [`KvCache::attention`] into an existing f32 tensor shaped like q (a decode loop reuses
    /// one output).
    pub fn attention_into(
        &self,
        gpu: &Gpu,
        q: &Tensor,
        out: &Tensor,
        options: AttentionOptions,
    ) -> Result<()> {
        self.attention_into_with(gpu, q, out, options, Kernel::Flash)
    }

    /// [`KvCache::attention_into`] with a given kernel: [`Kernel::Flash`] (the heuristic's plan)
    /// or [`Kernel::Team`] (these knobs; `pertoken bench --decode-plans` compares them). The
    /// naive baseline does not run over a cache.
    pub fn attention_into_with(
        &self,
        gpu: &Gpu,
        q: &Tensor,
        out: &Tensor,
        options: AttentionOptions,
        kernel: Kernel,
    ) -> Result<()> {
        if kernel == Kernel::Naive {
            return Err(Error::Unsupported {
                op: OP,
                reason: "the naive baseline runs on plain tensors (attention_with), not over a \
                         KV cache"
                    .into(),
            });
        }
        let mut s = self.shape_for(q, options.causal)?;
        check_out(out, [q, &self.k, &self.v])?;
        let scale = options.scale_for(s.head_dim)?;
        // A sliding window: the keys before the first query's window are never read (k and v
        // bound from a row past them, where the offset alignment allows).
        let k_first = match (options.window, options.causal) {
            (Some(w), true) => {
                let first_query = self.len - s.q_len;
                let earliest = (first_query + 1).saturating_sub(w as usize);
                let row_bytes = (self.head_dim * self.k.dtype().block().1) as u64;
                let align = u64::from(gpu.capabilities().min_storage_offset_alignment).max(1);
                let unit = (align / gcd(align, row_bytes)) as usize;
                earliest / unit * unit
            }
            _ => 0,
        };
        s.kv_len -= k_first;
        flash(
            gpu,
            [q, &self.k, &self.v, out],
            &s,
            (self.capacity, options.mask(), scale, k_first),
            Some(&self.partials),
            kernel,
        )
    }

    /// The attention shape of `q` over this cache, or why `q` does not fit it.
    pub(crate) fn shape_for(&self, q: &Tensor, causal: bool) -> Result<AttentionShape> {
        let [n_heads, q_len, d] = q.shape()[..] else {
            return Err(Error::InvalidShape {
                op: OP,
                shape: q.shape().to_vec(),
                reason: "q must be [n_heads, q_len, head_dim]".into(),
            });
        };
        let mismatch = |expected: &str| Error::ShapeMismatch {
            op: OP,
            lhs: q.shape().to_vec(),
            rhs: vec![self.n_kv_heads, self.len, self.head_dim],
            expected: expected.into(),
        };
        if q.dtype() != self.k.dtype() {
            return Err(Error::DTypeMismatch {
                op: OP,
                expected: self.k.dtype(),
                got: q.dtype(),
            });
        }
        if d != self.head_dim || n_heads % self.n_kv_heads != 0 {
            return Err(mismatch(
                "q's head_dim equal to the cache's, and n_heads a multiple of its KV heads",
            ));
        }
        if self.len == 0 || (causal && q_len > self.len) {
            return Err(mismatch(
                "a non-empty cache holding at least q_len positions",
            ));
        }
        Ok(AttentionShape {
            n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: d,
            q_len,
            kv_len: self.len,
        })
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
