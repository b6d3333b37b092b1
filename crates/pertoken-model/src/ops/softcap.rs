//! Final logit soft-capping.

use pertoken_gpu::{Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::MODEL_SOFTCAP;

use super::{need_f32, strided_groups, u};

/// `x = cap · tanh(x / cap)` in place over every value of the f32 `x` (Gemma's final logits
/// where the model soft-caps them). Greedy argmax is unchanged by it; the logits are not.
pub fn softcap(gpu: &Gpu, x: &Tensor, cap: f32) -> Result<()> {
    const OP: &str = "softcap";
    if !(cap.is_finite() && cap > 0.0) {
        return Err(Error::InvalidOption {
            name: "softcap cap",
            value: cap.to_string(),
            reason: "must be a positive finite number".into(),
        });
    }
    let n = x.len();
    need_f32(OP, x, n, "x")?;
    let params: [u32; 4] = [u(n), cap.to_bits(), 0, 0];
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_SOFTCAP,
        constants: &[],
        bindings: &[x.into()],
        params: bytemuck::cast_slice(&params),
        workgroups: [
            strided_groups(n, gpu.capabilities().max_workgroups_per_dimension),
            1,
            1,
        ],
    })
}
