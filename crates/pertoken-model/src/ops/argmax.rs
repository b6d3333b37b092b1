//! Greedy sampling on the GPU.

use pertoken_gpu::{DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::MODEL_ARGMAX;

use super::{need_f32, u};

/// Writes the index of the largest of `logits[row]` (`logits: [rows, vocab]`; the first of equal
/// ones; NaN never wins; `u32::MAX` if every logit is NaN) into `tokens[slot]`, where the next
/// step's embedding gather reads it: no host round trip.
pub fn argmax_into(
    gpu: &Gpu,
    logits: &Tensor,
    row: usize,
    tokens: &Tensor,
    slot: usize,
) -> Result<()> {
    const OP: &str = "argmax";
    let [rows, n] = logits.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: logits.shape().to_vec(),
            reason: "logits must be [rows, vocab]".into(),
        });
    };
    if row >= rows {
        return Err(Error::InvalidShape {
            op: OP,
            shape: logits.shape().to_vec(),
            reason: format!("row {row} is past the logits' {rows} rows"),
        });
    }
    need_f32(OP, logits, rows * n, "logits")?;
    if tokens.dtype() != DType::U32 || slot >= tokens.len() {
        return Err(Error::InvalidShape {
            op: OP,
            shape: tokens.shape().to_vec(),
            reason: format!("tokens must be u32 with a slot {slot}"),
        });
    }
    let params: [u32; 4] = [u(row), u(n), u(slot), 0];
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_ARGMAX,
        constants: &[],
        bindings: &[logits.into(), tokens.into()],
        params: bytemuck::cast_slice(&params),
        workgroups: [1, 1, 1],
    })
}
