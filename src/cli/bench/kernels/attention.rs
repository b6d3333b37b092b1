//! Causal prefill attention: flash against the naive baseline, verified on one KV-head group.

use pertoken_attention::{
    AttentionOptions, AttentionTuner, Kernel, attention_into, attention_with,
};
use pertoken_gpu::{DType, Error as GpuError, Gpu, Tensor};
use pertoken_reference::{AttentionShape, Tolerance, compare, random::uniform_f32};

use super::{CliError, verdict};

pub(crate) struct AttentionRow {
    pub(crate) seq: usize,
    /// The inputs' dtype (arithmetic is f32 either way).
    pub(crate) dtype: DType,
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
    let options = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    // Causal: query i sees i + 1 keys; q·k and p·v are 2 FLOPs per element each.
    let flops = 4.0 * (nh * d) as f64 * (seq * (seq + 1) / 2) as f64;
    // Which fused kernel Kernel::Flash runs here (pertoken_attention's crate docs).
    let fused = pertoken_attention::AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len: seq,
        kv_len: seq,
    };
    let teams = pertoken_attention::team_kernel_applies(&fused, gpu.capabilities());
    let (flash, flash16) = if teams {
        ("flash/teams", "f16 teams")
    } else {
        ("flash/tiled", "f16 tiled")
    };

    let mut rows = Vec::new();
    for (dtype, runs) in [
        (
            DType::F32,
            &[(Kernel::Flash, flash), (Kernel::Naive, "naive")][..],
        ),
        (DType::F16, &[(Kernel::Flash, flash16)][..]),
    ] {
        // f16 inputs are the f32 ones rounded; the reference takes what was uploaded.
        let (tq, q) = Tensor::from_f32_as(gpu, &q, &[nh, seq, d], dtype)?;
        let (tk, k) = Tensor::from_f32_as(gpu, &k, &[nkv, seq, d], dtype)?;
        let (tv, v) = Tensor::from_f32_as(gpu, &v, &[nkv, seq, d], dtype)?;
        let want = group_reference(&q, &k, &v, (nh, nkv, d, seq))?;
        for &(kernel, name) in runs {
            rows.push(bench_kernel(
                gpu,
                [&tq, &tk, &tv],
                &want,
                (kernel, name),
                (seq, flops, repeats),
                options,
            )?);
        }
    }
    Ok(rows)
}

/// The f64 reference on the first KV head's group of query heads: 1/nkv of the full cost.
fn group_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (nh, nkv, d, seq): (usize, usize, usize, usize),
) -> Result<Vec<f64>, CliError> {
    let group = nh / nkv;
    let shape = AttentionShape {
        n_heads: group,
        n_kv_heads: 1,
        head_dim: d,
        q_len: seq,
        kv_len: seq,
        causal: true,
    };
    Ok(pertoken_reference::attention(
        &q[..group * seq * d],
        &k[..seq * d],
        &v[..seq * d],
        shape,
        1.0 / (d as f64).sqrt(),
    )?)
}

/// One kernel's row: verified against `want` (f32 accumulation whatever the inputs, so the f32
/// tolerance), then timed into the same output.
fn bench_kernel(
    gpu: &Gpu,
    [tq, tk, tv]: [&Tensor; 3],
    want: &[f64],
    (kernel, name): (Kernel, &'static str),
    (seq, flops, repeats): (usize, f64, u32),
    options: AttentionOptions,
) -> Result<AttentionRow, CliError> {
    let out = match attention_with(gpu, tq, tk, tv, options, kernel) {
        Ok(o) => o,
        Err(e @ GpuError::TooLarge { .. }) => {
            return Ok(AttentionRow {
                seq,
                dtype: tq.dtype(),
                kernel: name,
                seconds: Err(format!("cannot run: {e}")),
                flops,
                verified: Err("not run".into()),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let got = out.to_vec::<f32>()?;
    let cmp = compare(
        &got[..want.len()],
        want,
        Tolerance::F32.for_reduction(seq, 1.0),
    );
    let verified = verdict(&cmp);
    let m = gpu.measure(repeats, &mut || {
        attention_into(gpu, tq, tk, tv, &out, options, kernel)
    })?;
    Ok(AttentionRow {
        seq,
        dtype: tq.dtype(),
        kernel: name,
        seconds: Ok(m.median),
        flops,
        verified,
    })
}

/// One decode step over a KV cache of `context` positions: bytes/s of K and V read.
pub(crate) struct DecodeRow {
    pub(crate) context: usize,
    pub(crate) dtype: DType,
    /// The kernel and, for the team kernel, its plan.
    pub(crate) kernel: String,
    /// Where the kernel choice came from: `given` (by the caller), or the tuner's `heuristic`,
    /// `cached` or `tuned`.
    pub(crate) source: &'static str,
    pub(crate) seconds: f64,
    pub(crate) bytes: f64,
    pub(crate) verified: Result<(), String>,
}

/// Which kernels [`bench_decode`] runs.
pub(crate) enum Pick<'a> {
    /// Each of these, in order ([`Kernel::Flash`]: the heuristic's plan; [`Kernel::Team`]:
    /// given knobs).
    Given(&'a [Kernel]),
    /// The one the tuner chooses for this cache and query.
    Tuned(&'a mut AttentionTuner),
}

/// Decode (q_len 1) over a KV cache of `context` keys with the kernels `pick` names, each
/// verified against one f64 reference into a NaN-poisoned output, then timed. One row per
/// kernel, in order.
pub(crate) fn bench_decode(
    gpu: &Gpu,
    context: usize,
    (nh, nkv): (usize, usize),
    d: usize,
    dtype: DType,
    (repeats, pick): (u32, Pick<'_>),
) -> Result<Vec<DecodeRow>, CliError> {
    use pertoken_attention::KvCache;

    let upload = |v: &[f32], shape: &[usize]| Tensor::from_f32_as(gpu, v, shape, dtype);
    let mut cache = KvCache::new(gpu, nkv, context, d, dtype)?;
    let (k, kv) = upload(
        &uniform_f32(context as u64, nkv * context * d),
        &[nkv, context, d],
    )?;
    let (v, vv) = upload(
        &uniform_f32(context as u64 + 1, nkv * context * d),
        &[nkv, context, d],
    )?;
    let (q, qv) = upload(&uniform_f32(context as u64 + 2, nh * d), &[nh, 1, d])?;
    cache.append(gpu, &k, &v)?;
    let options = AttentionOptions {
        causal: true,
        scale: None,
        window: None,
    };
    let shape = AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len: 1,
        kv_len: context,
        causal: true,
    };
    let want = pertoken_reference::attention(&qv, &kv, &vv, shape, 1.0 / (d as f64).sqrt())?;
    let fused = pertoken_attention::AttentionShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: d,
        q_len: 1,
        kv_len: context,
    };
    let elem = dtype.block().1 as f64;
    let out = Tensor::zeros(gpu, q.shape(), DType::F32)?;
    let choices: Vec<(Kernel, &'static str)> = match pick {
        Pick::Tuned(t) => {
            let c = t.decode(&cache, &q, options)?;
            vec![(c.kernel(), c.source())]
        }
        Pick::Given(kernels) => kernels.iter().map(|&k| (k, "given")).collect(),
    };
    let mut rows = Vec::new();
    for (kernel, source) in choices {
        out.fill(f32::NAN)?;
        cache.attention_into_with(gpu, &q, &out, options, kernel)?;
        let cmp = compare(
            &out.to_vec::<f32>()?,
            &want,
            Tolerance::F32.for_reduction(context, 1.0),
        );
        let m = gpu.measure(repeats, &mut || {
            cache.attention_into_with(gpu, &q, &out, options, kernel)
        })?;
        rows.push(DecodeRow {
            context,
            dtype,
            kernel: decode_kernel(gpu, &fused, kernel),
            source,
            seconds: m.median,
            bytes: 2.0 * (nkv * context * d) as f64 * elem + (nh * d) as f64 * (elem + 4.0),
            verified: verdict(&cmp),
        });
    }
    Ok(rows)
}

/// The kernel a decode of shape `s` runs here with `kernel`, and for the team kernel its plan.
fn decode_kernel(gpu: &Gpu, s: &pertoken_attention::AttentionShape, kernel: Kernel) -> String {
    let caps = gpu.capabilities();
    if !pertoken_attention::team_kernel_applies(s, caps) {
        return "tiled".into();
    }
    let knobs = match kernel {
        Kernel::Team(k) => k,
        _ => pertoken_attention::TeamKnobs::heuristic(s, caps.cpu),
    };
    let p = pertoken_attention::team_plan_with(s, &knobs, caps.max_storage_binding);
    format!(
        "teams: {}x{} rows per team, {} per workgroup ({} splitting keys), {} × {} keys{}",
        p.heads,
        p.queries,
        p.workgroup / pertoken_attention::TEAM,
        p.key_teams,
        p.split.splits,
        p.split.chunk,
        if p.prefetch { ", prefetch" } else { "" }
    )
}
