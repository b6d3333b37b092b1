//! One block's weights on the GPU, with q/k/v and gate/up fused into one matrix each where
//! every layer's share a format (one linear instead of three, or two).

use pertoken_gpu::{DType, Gpu, Tensor};

use crate::weights::{HostTensor, Role, WeightSource};
use crate::{ModelError, Result};

/// Weights of one row-block of a fused linear, or several separate ones.
#[derive(Debug)]
pub(crate) enum Proj {
    /// One matrix whose output holds the parts side by side.
    Fused { w: Tensor, bias: Option<Tensor> },
    /// One matrix per part, where their formats differ.
    Split(Vec<(Tensor, Option<Tensor>)>),
}

impl Proj {
    /// Each matrix with its bias, in output order: one for a fused projection.
    pub(crate) fn parts(&self) -> impl Iterator<Item = (&Tensor, Option<&Tensor>)> {
        let (fused, split) = match self {
            Proj::Fused { w, bias } => (Some((w, bias.as_ref())), &[][..]),
            Proj::Split(parts) => (None, &parts[..]),
        };
        fused
            .into_iter()
            .chain(split.iter().map(|(w, b)| (w, b.as_ref())))
    }
}

#[derive(Debug)]
pub(crate) struct GpuLayer {
    pub attn_norm: Tensor,
    pub qkv: Proj,
    pub o: Tensor,
    pub ffn_norm: Tensor,
    pub gate_up: Proj,
    pub down: Tensor,
    /// Per-head RMSNorm weights of q and k (`Arch::qk_norm`).
    pub qk_norm: Option<(Tensor, Tensor)>,
    /// RMSNorm weights of the attention's and the MLP's outputs (`Arch::post_norms`).
    pub post_norms: Option<(Tensor, Tensor)>,
}

pub(crate) fn fetch<'a>(source: &'a dyn WeightSource, role: Role) -> Result<HostTensor<'a>> {
    let t = source.tensor(role)?.ok_or_else(|| ModelError::Invalid {
        op: "load",
        reason: format!("{} has no {role:?} weight", source.describe()),
    })?;
    let want = role.shape(source.spec());
    if t.shape != want {
        return Err(ModelError::Invalid {
            op: "load",
            reason: format!(
                "{}: shape {:?}, the model's metadata needs {want:?}",
                t.name, t.shape
            ),
        });
    }
    Ok(t)
}

/// Uploads a matrix as stored.
pub(crate) fn upload(gpu: &Gpu, t: &HostTensor<'_>) -> Result<Tensor> {
    Ok(match t.dtype {
        DType::F32 => {
            Tensor::from_slice::<f32>(gpu, &bytemuck::pod_collect_to_vec(&t.bytes), &t.shape)?
        }
        DType::F16 => {
            Tensor::from_slice::<half::f16>(gpu, &bytemuck::pod_collect_to_vec(&t.bytes), &t.shape)?
        }
        q if q.is_quantized() => Tensor::from_quantized(gpu, &t.bytes, &t.shape, q)?,
        other => {
            return Err(ModelError::Invalid {
                op: "load",
                reason: format!("{}: {other} is not a weight format", t.name),
            });
        }
    })
}

/// Uploads a norm weight or bias as f32.
pub(crate) fn upload_vector(gpu: &Gpu, t: &HostTensor<'_>) -> Result<Tensor> {
    Ok(Tensor::from_slice(gpu, &t.to_f32()?, &t.shape)?)
}

/// Row-concatenates `parts` (each `[n_i, k]`, with optional f32 biases) into one matrix where
/// `allowed` (every layer's parts share a dtype), else uploads them apart.
fn fuse(
    gpu: &Gpu,
    parts: Vec<(HostTensor<'_>, Option<HostTensor<'_>>)>,
    allowed: bool,
) -> Result<Proj> {
    let same = parts.windows(2).all(|w| w[0].0.dtype == w[1].0.dtype);
    if !(same && allowed) {
        let mut out = Vec::new();
        for (w, b) in &parts {
            out.push((
                upload(gpu, w)?,
                b.as_ref().map(|b| upload_vector(gpu, b)).transpose()?,
            ));
        }
        return Ok(Proj::Split(out));
    }
    let k = parts[0].0.shape[1];
    let rows: usize = parts.iter().map(|(w, _)| w.shape[0]).sum();
    let mut bytes = Vec::with_capacity(parts.iter().map(|(w, _)| w.bytes.len()).sum());
    for (w, _) in &parts {
        bytes.extend_from_slice(&w.bytes);
    }
    let fused = HostTensor {
        name: parts
            .iter()
            .map(|(w, _)| w.name.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        dtype: parts[0].0.dtype,
        shape: vec![rows, k],
        bytes: bytes.into(),
    };
    let bias = if parts.iter().all(|(_, b)| b.is_some()) {
        let mut v = Vec::with_capacity(rows);
        for (_, b) in &parts {
            v.extend(
                b.as_ref()
                    .map(|b| b.to_f32())
                    .transpose()?
                    .unwrap_or_default(),
            );
        }
        Some(Tensor::from_slice(gpu, &v, &[rows])?)
    } else {
        None
    };
    Ok(Proj::Fused {
        w: upload(gpu, &fused)?,
        bias,
    })
}

/// Whether every layer stores the parts of q/k/v (`Role::Q`, `K`, `V`) and of gate/up in one
/// dtype each, so that every layer can fuse them: a step's buffers and kernels are the same for
/// every layer. K-quant files mix (llama.cpp's Q4_K_M gives attn_v Q6_K on some layers and
/// Q4_K on the others), and then every layer keeps its parts apart.
pub(crate) fn fusible(source: &dyn WeightSource) -> Result<(bool, bool)> {
    let dtype = |r: Role| -> Result<Option<DType>> { Ok(source.stored(r)?.map(|(d, _)| d)) };
    let same = |roles: &[Role]| -> Result<bool> {
        let first = dtype(roles[0])?;
        for &r in &roles[1..] {
            if dtype(r)? != first {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let (mut qkv, mut gate_up) = (true, true);
    for l in 0..source.spec().shape.layers as usize {
        qkv &= same(&[Role::Q(l), Role::K(l), Role::V(l)])?;
        gate_up &= same(&[Role::Gate(l), Role::Up(l)])?;
    }
    Ok((qkv, gate_up))
}

pub(crate) fn load_layer(
    gpu: &Gpu,
    source: &dyn WeightSource,
    l: usize,
    (fuse_qkv, fuse_gate_up): (bool, bool),
) -> Result<GpuLayer> {
    let m = &source.spec().shape;
    let bias = m.qkv_bias;
    let pair = |on: bool, a: Role, b: Role| -> Result<Option<(Tensor, Tensor)>> {
        if !on {
            return Ok(None);
        }
        Ok(Some((
            upload_vector(gpu, &fetch(source, a)?)?,
            upload_vector(gpu, &fetch(source, b)?)?,
        )))
    };
    let b = |role: Role| bias.then(|| fetch(source, role)).transpose();
    let qkv = fuse(
        gpu,
        vec![
            (fetch(source, Role::Q(l))?, b(Role::QBias(l))?),
            (fetch(source, Role::K(l))?, b(Role::KBias(l))?),
            (fetch(source, Role::V(l))?, b(Role::VBias(l))?),
        ],
        fuse_qkv,
    )?;
    let gate_up = fuse(
        gpu,
        vec![
            (fetch(source, Role::Gate(l))?, None),
            (fetch(source, Role::Up(l))?, None),
        ],
        fuse_gate_up,
    )?;
    Ok(GpuLayer {
        attn_norm: upload_vector(gpu, &fetch(source, Role::AttnNorm(l))?)?,
        qkv,
        o: upload(gpu, &fetch(source, Role::O(l))?)?,
        ffn_norm: upload_vector(gpu, &fetch(source, Role::FfnNorm(l))?)?,
        gate_up,
        down: upload(gpu, &fetch(source, Role::Down(l))?)?,
        qk_norm: pair(m.arch.qk_norm, Role::QNorm(l), Role::KNorm(l))?,
        post_norms: pair(
            m.arch.post_norms,
            Role::PostAttnNorm(l),
            Role::PostFfnNorm(l),
        )?,
    })
}
