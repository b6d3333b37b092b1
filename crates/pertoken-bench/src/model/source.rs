//! A reduced-depth copy of a model, for checking large ones.

use pertoken_gpu::DType;
use pertoken_model::{HostTensor, ModelSpec, Result, Role, WeightSource};

/// The first `layers` layers of a model, with its embedding, final norm and head: a copy whose
/// forward pass the CPU reference can afford when the whole model's is too slow.
pub struct Truncated<'a> {
    inner: &'a dyn WeightSource,
    spec: ModelSpec,
}

impl<'a> Truncated<'a> {
    /// The first `layers` layers of `inner`.
    pub fn new(inner: &'a dyn WeightSource, layers: u64) -> Truncated<'a> {
        let mut spec = inner.spec().clone();
        spec.shape.layers = layers.min(spec.shape.layers);
        Truncated { inner, spec }
    }
}

impl WeightSource for Truncated<'_> {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn tensor(&self, role: Role) -> Result<Option<HostTensor<'_>>> {
        self.inner.tensor(role)
    }

    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        self.inner.stored(role)
    }

    fn describe(&self) -> String {
        format!(
            "the first {} layers of {}",
            self.spec.shape.layers,
            self.inner.describe()
        )
    }
}
