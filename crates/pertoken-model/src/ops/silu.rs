//! A gated MLP's gate: SwiGLU's SiLU, or GeGLU's tanh-approximated GELU.

use pertoken_gpu::{Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::MODEL_SILU_MUL;

use super::{Columns, strided_groups, u};

pub use pertoken_cost::Activation;

/// `out[i, j] = silu(g[i, j]) · up[i, j]` for `out: [t, f]`; g and up are column windows (of
/// the fused gate-up linear's output, or two tensors).
pub fn silu_mul(gpu: &Gpu, g: Columns<'_>, up: Columns<'_>, out: &Tensor) -> Result<()> {
    act_mul(gpu, Activation::Silu, g, up, out)
}

/// `out[i, j] = act(g[i, j]) · up[i, j]`, as [`silu_mul`] with any [`Activation`].
pub fn act_mul(
    gpu: &Gpu,
    act: Activation,
    g: Columns<'_>,
    up: Columns<'_>,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "gate_mul";
    let [t, f] = out.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: out.shape().to_vec(),
            reason: "out must be [t, ffn]".into(),
        });
    };
    let stride = |c: &Columns<'_>| c.tensor.shape().last().copied().unwrap_or(0);
    for c in [&g, &up] {
        if c.tensor.shape().len() != 2 || c.tensor.shape()[0] < t || c.col + f > stride(c) {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: c.tensor.shape().to_vec(),
                rhs: out.shape().to_vec(),
                expected: format!("columns {}..{} of at least {t} rows", c.col, c.col + f),
            });
        }
        super::need_f32(OP, c.tensor, t * stride(c), "the gate or up projection")?;
    }
    super::need_f32(OP, out, t * f, "out")?;
    let params: [u32; 8] = [
        u(t),
        u(f),
        u(stride(&g)),
        u(stride(&up)),
        u(g.col),
        u(up.col),
        0,
        0,
    ];
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_SILU_MUL,
        constants: &[(
            "ACT",
            match act {
                Activation::Silu => 0.0,
                Activation::GeluTanh => 1.0,
            },
        )],
        bindings: &[g.tensor.into(), up.tensor.into(), out.into()],
        params: bytemuck::cast_slice(&params),
        workgroups: [
            strided_groups(t * f, gpu.capabilities().max_workgroups_per_dimension),
            1,
            1,
        ],
    })
}
