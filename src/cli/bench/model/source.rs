//! The models a bench run loads, and a reduced-depth copy of one for checking large models.

use pertoken_gpu::DType;
use pertoken_model::{
    GgufWeights, HostTensor, ModelSpec, Result, Role, SafetensorsWeights, Synthetic, WeightSource,
};

/// A model's weights, from wherever they come.
pub(crate) enum Loaded {
    Gguf(Box<GgufWeights>),
    Safetensors(Box<SafetensorsWeights>),
    Synthetic(Box<Synthetic>),
}

impl Loaded {
    pub(crate) fn source(&self) -> &dyn WeightSource {
        match self {
            Loaded::Gguf(g) => g.as_ref(),
            Loaded::Safetensors(s) => s.as_ref(),
            Loaded::Synthetic(s) => s.as_ref(),
        }
    }
}

/// The first `layers` layers of a model, with its embedding, final norm and head: a copy whose
/// forward pass the CPU reference can afford when the whole model's is too slow.
pub(crate) struct Truncated<'a> {
    inner: &'a dyn WeightSource,
    spec: ModelSpec,
}

impl<'a> Truncated<'a> {
    pub(crate) fn new(inner: &'a dyn WeightSource, layers: u64) -> Truncated<'a> {
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
