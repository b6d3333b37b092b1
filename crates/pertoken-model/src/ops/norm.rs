//! RMSNorm, with the residual add fused in.

use pertoken_gpu::{Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::MODEL_RMSNORM;

use super::{need_f32, u};

/// `out[r − row0] = rms_norm(x[r]) · w` for rows `row0 .. row0 + out_rows` of `x: [T, h]`
/// (`out: [out_rows, h]`), after `x[r] += delta[r]` when `delta` is given (the residual add,
/// written back into x). All f32.
pub fn rms_norm(
    gpu: &Gpu,
    x: &Tensor,
    delta: Option<&Tensor>,
    w: &Tensor,
    out: &Tensor,
    row0: usize,
    eps: f32,
) -> Result<()> {
    norm(gpu, x, delta.map(|d| (d, None)), w, out, (row0, eps))
}

/// As [`rms_norm`] with the residual add of a normed layer output (Gemma's sandwich norms):
/// `x[r] += rms_norm(delta[r]) · post`, then `out[r − row0] = rms_norm(x[r]) · w`.
pub fn rms_norm_post(
    gpu: &Gpu,
    x: &Tensor,
    (delta, post): (&Tensor, &Tensor),
    w: &Tensor,
    out: &Tensor,
    row0: usize,
    eps: f32,
) -> Result<()> {
    norm(gpu, x, Some((delta, Some(post))), w, out, (row0, eps))
}

fn norm(
    gpu: &Gpu,
    x: &Tensor,
    delta: Option<(&Tensor, Option<&Tensor>)>,
    w: &Tensor,
    out: &Tensor,
    (row0, eps): (usize, f32),
) -> Result<()> {
    const OP: &str = "rms_norm";
    let [rows, h] = x.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: x.shape().to_vec(),
            reason: "x must be [rows, hidden]".into(),
        });
    };
    let [out_rows, oh] = out.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: out.shape().to_vec(),
            reason: "out must be [rows, hidden]".into(),
        });
    };
    if oh != h || row0 + out_rows > rows || w.shape() != [h] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: out.shape().to_vec(),
            expected: format!("w [{h}] and rows {row0}..{} within x", row0 + out_rows),
        });
    }
    need_f32(OP, x, rows * h, "x")?;
    need_f32(OP, w, h, "w")?;
    need_f32(OP, out, out_rows * h, "out")?;
    let post = delta.and_then(|(_, p)| p);
    let delta = delta.map(|(d, _)| d);
    if let Some(p) = post {
        need_f32(OP, p, h, "post")?;
        if p.shape() != [h] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: p.shape().to_vec(),
                rhs: vec![h],
                expected: "the post-norm weight [hidden]".into(),
            });
        }
    }
    if let Some(d) = delta {
        if d.shape() != x.shape() {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: x.shape().to_vec(),
                rhs: d.shape().to_vec(),
                expected: "the residual delta shaped like x".into(),
            });
        }
        need_f32(OP, d, rows * h, "delta")?;
    }
    if !eps.is_finite() || eps <= 0.0 {
        return Err(Error::InvalidOption {
            name: "rms_norm eps",
            value: eps.to_string(),
            reason: "must be a positive finite number".into(),
        });
    }
    let params: [u32; 4] = [u(row0), u(h), eps.to_bits(), 0];
    let add = delta.is_some();
    // Without a delta the binding is never read; w stands in (read-only, like delta).
    let delta = delta.unwrap_or(w);
    gpu.launch(&Launch {
        op: OP,
        shader: &MODEL_RMSNORM,
        constants: &[
            ("ADD", f64::from(u8::from(add))),
            ("POST", f64::from(u8::from(post.is_some()))),
            ("WG", f64::from(norm_wg(gpu))),
        ],
        bindings: &[
            x.into(),
            delta.into(),
            w.into(),
            out.into(),
            post.unwrap_or(w).into(),
        ],
        params: bytemuck::cast_slice(&params),
        workgroups: [u(out_rows), 1, 1],
    })
}

/// Invocations per row: 256 on GPUs; 32 on CPU adapters, where each of the reduction's
/// barriers costs a pass over the workgroup and a row of a few thousand is a few SIMD loads per
/// invocation either way.
fn norm_wg(gpu: &Gpu) -> u32 {
    if gpu.capabilities().cpu { 32 } else { 256 }
}
