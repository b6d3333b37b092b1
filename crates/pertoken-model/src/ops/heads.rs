//! The attention output's layout change.

use pertoken_gpu::{Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::MODEL_HEADS;

use super::{need_f32, strided_groups, u};

/// `dst[row0 + i, h·d + c] = src[h, i, c]`: heads-first `[n_heads, t, d]` to rows `row0 ..
/// row0 + t` of tokens-first `[rows, n_heads·d]`.
pub fn heads_to_tokens(gpu: &Gpu, src: &Tensor, dst: &Tensor, row0: usize) -> Result<()> {
    const OP: &str = "heads_to_tokens";
    let ([h, t, d], [dt, dw]) = (src.shape(), dst.shape()) else {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: src.shape().to_vec(),
            rhs: dst.shape().to_vec(),
            expected: "src [n_heads, t, d] and dst [t, n_heads·d]".into(),
        });
    };
    let (h, t, d) = (*h, *t, *d);
    if row0 + t > *dt || *dw != h * d {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: src.shape().to_vec(),
            rhs: dst.shape().to_vec(),
            expected: format!("src [n_heads, t, d] and dst [≥ {row0} + t, n_heads·d]"),
        });
    }
    need_f32(OP, src, h * t * d, "src")?;
    need_f32(OP, dst, (row0 + t) * h * d, "dst")?;
    let params: [u32; 4] = [u(t), u(d), u(h), u(row0)];
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_HEADS,
        constants: &[],
        bindings: &[src.into(), dst.into()],
        params: bytemuck::cast_slice(&params),
        workgroups: [
            strided_groups(h * t * d, gpu.capabilities().max_workgroups_per_dimension),
            1,
            1,
        ],
    })
}
