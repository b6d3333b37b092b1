//! Causal prefill attention: flash against the naive baseline, verified on one KV-head group.

use pertoken_attention::{AttentionOptions, Kernel, attention_into, attention_with};
use pertoken_gpu::{Error as GpuError, Gpu, Tensor};
use pertoken_reference::{AttentionShape, Tolerance, compare, random::uniform_f32};

use super::CliError;

pub(crate) struct AttentionRow {
    pub(crate) seq: usize,
    pub(crate) kernel: &'static str,
    /// Median seconds, or why the kernel could not run.
    pub(crate) seconds: Result<f64, String>,
    pub(crate) flops: f64,
    pub(crate) verified: Result<(), String>,
}

pub(crate) fn bench(
    gpu: &Gpu,
    seq: usize,
    (nh, nkv): (usize, usize),
    d: usize,
    repeats: u32,
) -> Result<Vec<AttentionRow>, CliError> {
    let q = uniform_f32(seq as u64, nh * seq * d);
    let k = uniform_f32(seq as u64 + 1, nkv * seq * d);
    let v = uniform_f32(seq as u64 + 2, nkv * seq * d);
    let tq = Tensor::from_slice(gpu, &q, &[nh, seq, d])?;
    let tk = Tensor::from_slice(gpu, &k, &[nkv, seq, d])?;
    let tv = Tensor::from_slice(gpu, &v, &[nkv, seq, d])?;
    let options = AttentionOptions {
        causal: true,
        scale: None,
    };
    // Causal: query i sees i + 1 keys; q·k and p·v are 2 FLOPs per element each.
    let flops = 4.0 * (nh * d) as f64 * (seq * (seq + 1) / 2) as f64;

    // The reference on the first KV head's group of query heads: 1/nkv of the full cost.
    let group = nh / nkv;
    let shape = AttentionShape {
        n_heads: group,
        n_kv_heads: 1,
        head_dim: d,
        q_len: seq,
        kv_len: seq,
        causal: true,
    };
    let want = pertoken_reference::attention(
        &q[..group * seq * d],
        &k[..seq * d],
        &v[..seq * d],
        shape,
        1.0 / (d as f64).sqrt(),
    )?;

    let mut rows = Vec::new();
    // Which fused kernel Kernel::Flash runs here (pertoken_attention's crate docs).
    let fused = pertoken_attention::AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len: seq,
        kv_len: seq,
    };
    let flash = if pertoken_attention::team_kernel_applies(&fused, gpu.capabilities()) {
        "flash/teams"
    } else {
        "flash/tiled"
    };
    for (kernel, name) in [(Kernel::Flash, flash), (Kernel::Naive, "naive")] {
        let out = match attention_with(gpu, &tq, &tk, &tv, options, kernel) {
            Ok(o) => o,
            Err(e @ GpuError::TooLarge { .. }) => {
                rows.push(AttentionRow {
                    seq,
                    kernel: name,
                    seconds: Err(format!("cannot run: {e}")),
                    flops,
                    verified: Err("not run".into()),
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let got = out.to_vec::<f32>()?;
        let cmp = compare(
            &got[..want.len()],
            &want,
            Tolerance::F32.for_reduction(seq, 1.0),
        );
        let verified = if cmp.passed() {
            Ok(())
        } else {
            Err(cmp.to_string())
        };
        let m = gpu.measure(repeats, &mut || {
            attention_into(gpu, &tq, &tk, &tv, &out, options, kernel)
        })?;
        rows.push(AttentionRow {
            seq,
            kernel: name,
            seconds: Ok(m.median),
            flops,
            verified,
        });
    }
    Ok(rows)
}

/// One decode step over a KV cache of `context` positions: bytes/s of K and V read.
pub(crate) struct DecodeRow {
    pub(crate) context: usize,
    pub(crate) dtype: pertoken_gpu::DType,
    pub(crate) seconds: f64,
    pub(crate) bytes: f64,
    pub(crate) verified: Result<(), String>,
}

pub(crate) fn bench_decode(
    gpu: &Gpu,
    context: usize,
    (nh, nkv): (usize, usize),
    d: usize,
    dtype: pertoken_gpu::DType,
    repeats: u32,
) -> Result<DecodeRow, CliError> {
    use pertoken_attention::KvCache;

    let upload = |v: &[f32], shape: &[usize]| Tensor::from_f32_as(gpu, v, shape, dtype);
    let (k, kv) = upload(
        &uniform_f32(context as u64, nkv * context * d),
        &[nkv, context, d],
    )?;
    let (v, vv) = upload(
        &uniform_f32(context as u64 + 1, nkv * context * d),
        &[nkv, context, d],
    )?;
    let (q, qv) = upload(&uniform_f32(context as u64 + 2, nh * d), &[nh, 1, d])?;
    let mut cache = KvCache::new(gpu, nkv, context, d, dtype)?;
    cache.append(gpu, &k, &v)?;
    let options = AttentionOptions {
        causal: true,
        scale: None,
    };
    let got = cache.attention(gpu, &q, options)?.to_vec::<f32>()?;
    let shape = AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len: 1,
        kv_len: context,
        causal: true,
    };
    let want = pertoken_reference::attention(&qv, &kv, &vv, shape, 1.0 / (d as f64).sqrt())?;
    let cmp = compare(&got, &want, Tolerance::F32.for_reduction(context, 1.0));
    let verified = if cmp.passed() {
        Ok(())
    } else {
        Err(cmp.to_string())
    };
    let out = Tensor::zeros(gpu, q.shape(), pertoken_gpu::DType::F32)?;
    let m = gpu.measure(repeats, &mut || {
        cache.attention_into(gpu, &q, &out, options)
    })?;
    let elem = dtype.block().1 as f64;
    Ok(DecodeRow {
        context,
        dtype,
        seconds: m.median,
        bytes: 2.0 * (nkv * context * d) as f64 * elem + (nh * d) as f64 * (elem + 4.0),
        verified,
    })
}
