//! Where a model's weights come from: [`Synthetic`] (seeded random values at any shape and
//! format), a GGUF file ([`GgufWeights`]) or safetensors with a `config.json`
//! ([`SafetensorsWeights`]). Each gives the decoder one tensor at a time, by [`Role`], as the
//! bytes to upload, so a model is never held twice in host memory.

mod gguf;
mod reference;
mod safetensors;
mod synthetic;

pub use gguf::{GgufWeights, tensor_name};
pub use reference::{reference_decoder, to_reference};
pub use safetensors::{SafetensorsWeights, hf_tensor_name};
pub use synthetic::Synthetic;

use std::borrow::Cow;

use pertoken_gpu::DType;

use crate::{ModelError, ModelSpec, Result};

/// A weight's part in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Token embedding `[vocab, hidden]`.
    Embed,
    /// Output head `[vocab, hidden]` (absent when tied to the embedding).
    Output,
    /// Final RMSNorm `[hidden]`.
    FinalNorm,
    /// Layer `l`'s RMSNorm before attention `[hidden]`.
    AttnNorm(usize),
    /// Query projection `[heads·head_dim, hidden]`.
    Q(usize),
    /// Key projection `[kv_heads·head_dim, hidden]`.
    K(usize),
    /// Value projection `[kv_heads·head_dim, hidden]`.
    V(usize),
    /// Query bias (Qwen2) `[heads·head_dim]`.
    QBias(usize),
    /// Key bias `[kv_heads·head_dim]`.
    KBias(usize),
    /// Value bias `[kv_heads·head_dim]`.
    VBias(usize),
    /// Attention output projection `[hidden, heads·head_dim]`.
    O(usize),
    /// Layer `l`'s RMSNorm before the MLP `[hidden]`.
    FfnNorm(usize),
    /// MLP gate projection `[ffn, hidden]`.
    Gate(usize),
    /// MLP up projection `[ffn, hidden]`.
    Up(usize),
    /// MLP down projection `[hidden, ffn]`.
    Down(usize),
    /// Per-head RMSNorm of q (Gemma 3, Qwen3) `[head_dim]`.
    QNorm(usize),
    /// Per-head RMSNorm of k `[head_dim]`.
    KNorm(usize),
    /// RMSNorm of the attention's output before the residual add (Gemma) `[hidden]`.
    PostAttnNorm(usize),
    /// RMSNorm of the MLP's output before the residual add `[hidden]`.
    PostFfnNorm(usize),
}

impl Role {
    /// The row-major shape `spec` gives this weight.
    pub fn shape(self, spec: &ModelSpec) -> Vec<usize> {
        let m = &spec.shape;
        let (h, v, f) = (m.hidden as usize, m.vocab as usize, m.ffn as usize);
        let (q, kv) = (spec.q_width(), spec.kv_width());
        match self {
            Role::Embed | Role::Output => vec![v, h],
            Role::FinalNorm
            | Role::AttnNorm(_)
            | Role::FfnNorm(_)
            | Role::PostAttnNorm(_)
            | Role::PostFfnNorm(_) => vec![h],
            Role::QNorm(_) | Role::KNorm(_) => vec![m.head_dim as usize],
            Role::Q(_) => vec![q, h],
            Role::K(_) | Role::V(_) => vec![kv, h],
            Role::QBias(_) => vec![q],
            Role::KBias(_) | Role::VBias(_) => vec![kv],
            Role::O(_) => vec![h, q],
            Role::Gate(_) | Role::Up(_) => vec![f, h],
            Role::Down(_) => vec![h, f],
        }
    }

    /// Whether this is a norm weight or a bias (uploaded as f32 whatever the file stores).
    pub fn is_vector(self) -> bool {
        matches!(
            self,
            Role::FinalNorm
                | Role::AttnNorm(_)
                | Role::FfnNorm(_)
                | Role::QBias(_)
                | Role::KBias(_)
                | Role::VBias(_)
                | Role::QNorm(_)
                | Role::KNorm(_)
                | Role::PostAttnNorm(_)
                | Role::PostFfnNorm(_)
        )
    }

    /// Every weight of a model of `spec`'s shape, the output head included (a source gives
    /// `None` for it where it is tied), in the order a file lists them.
    pub fn all(spec: &ModelSpec) -> Vec<Role> {
        let m = &spec.shape;
        let mut roles = vec![Role::Embed, Role::Output, Role::FinalNorm];
        for l in 0..m.layers as usize {
            roles.extend(Role::of_layer(l, m));
        }
        roles
    }

    /// The roles of layer `l`, biases and the architecture's extra norms included only where
    /// the shape has them.
    pub fn of_layer(l: usize, m: &pertoken_cost::Model) -> Vec<Role> {
        let mut r = vec![Role::AttnNorm(l), Role::Q(l), Role::K(l), Role::V(l)];
        if m.qkv_bias {
            r.extend([Role::QBias(l), Role::KBias(l), Role::VBias(l)]);
        }
        if m.arch.qk_norm {
            r.extend([Role::QNorm(l), Role::KNorm(l)]);
        }
        r.extend([
            Role::O(l),
            Role::FfnNorm(l),
            Role::Gate(l),
            Role::Up(l),
            Role::Down(l),
        ]);
        if m.arch.post_norms {
            r.extend([Role::PostAttnNorm(l), Role::PostFfnNorm(l)]);
        }
        r
    }
}

/// One weight as stored: its dtype, row-major shape and bytes (ggml's block layout for the
/// quantized formats).
#[derive(Debug, Clone)]
pub struct HostTensor<'a> {
    /// Its name in the source (for errors).
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The bytes.
    pub bytes: Cow<'a, [u8]>,
}

impl HostTensor<'_> {
    /// The values as f32 (quantized blocks dequantized), for vectors and the reference.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        use pertoken_reference::{QuantFormat, dequantize};
        let q = |f| {
            dequantize(f, &self.bytes).map_err(|e| ModelError::Invalid {
                op: "HostTensor::to_f32",
                reason: format!("{}: {e}", self.name),
            })
        };
        match self.dtype {
            DType::F32 => Ok(bytemuck::pod_collect_to_vec(&self.bytes)),
            DType::F16 => {
                let h: Vec<half::f16> = bytemuck::pod_collect_to_vec(&self.bytes);
                Ok(h.iter().map(|v| v.to_f32()).collect())
            }
            other if other.is_quantized() => match QuantFormat::from_name(other.name()) {
                Some(f) => q(f),
                None => Err(ModelError::Invalid {
                    op: "HostTensor::to_f32",
                    reason: format!("{}: the reference cannot read {other}", self.name),
                }),
            },
            other => Err(ModelError::Invalid {
                op: "HostTensor::to_f32",
                reason: format!("{}: {other} is not a weight format", self.name),
            }),
        }
    }
}

/// A model's weights, one tensor at a time.
pub trait WeightSource {
    /// The model's shape and layout.
    fn spec(&self) -> &ModelSpec;
    /// The weight in `role`; `Ok(None)` only for an [`Role::Output`] tied to the embedding.
    fn tensor(&self, role: Role) -> Result<Option<HostTensor<'_>>>;
    /// The dtype and shape of the weight in `role`, without reading (or generating) it.
    fn stored(&self, role: Role) -> Result<Option<(DType, Vec<usize>)>> {
        Ok(self.tensor(role)?.map(|t| (t.dtype, t.shape)))
    }
    /// What the weights are, for reports (`synthetic q4_0`, `SmolLM2-135M-Instruct.Q4_1.gguf`).
    fn describe(&self) -> String;
}
