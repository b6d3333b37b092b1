//! The token embedding gather.

use pertoken_gpu::{Binding, DType, Error, Gpu, Launch, Result, Tensor};
use pertoken_shaders::{MODEL_EMBED, MODEL_EMBED_ROWS};

use super::{need_f32, strided_groups, u};

/// `out[out_row0 + i] = table[tokens[tok0 + i]]` for `t` tokens into `out: [rows, hidden]`
/// (f32), from a `table: [vocab,
/// hidden]` in any weight format of [`DType::WEIGHTS`] (dequantized on the way). A table over the
/// storage-binding limit is gathered in windows of rows, one dispatch each. A token id past the
/// vocabulary gives a row of NaN.
pub fn embed(
    gpu: &Gpu,
    table: &Tensor,
    tokens: &Tensor,
    (tok0, t): (usize, usize),
    out: &Tensor,
    out_row0: usize,
) -> Result<()> {
    embed_scaled(gpu, table, tokens, (tok0, t), (out, out_row0), 1.0)
}

/// [`embed`], each row multiplied by `scale` (Gemma's √hidden).
pub fn embed_scaled(
    gpu: &Gpu,
    table: &Tensor,
    tokens: &Tensor,
    (tok0, t): (usize, usize),
    (out, out_row0): (&Tensor, usize),
    scale: f32,
) -> Result<()> {
    const OP: &str = "embed";
    let Some(fmt) = table.dtype().shader_format() else {
        return Err(Error::Unsupported {
            op: OP,
            reason: format!("embedding tables in {} are not supported", table.dtype()),
        });
    };
    let ([vocab, h], [out_rows, oh]) = (table.shape(), out.shape()) else {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: table.shape().to_vec(),
            rhs: out.shape().to_vec(),
            expected: "table [vocab, hidden] and out [t, hidden]".into(),
        });
    };
    let (vocab, h, rows) = (*vocab, *h, *out_rows);
    if *oh != h {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: table.shape().to_vec(),
            rhs: out.shape().to_vec(),
            expected: "out's width equal to the table's".into(),
        });
    }
    if tokens.dtype() != DType::U32 || tokens.len() < tok0 + t {
        return Err(Error::InvalidShape {
            op: OP,
            shape: tokens.shape().to_vec(),
            reason: format!("tokens must be u32 and hold slots {tok0}..{}", tok0 + t),
        });
    }
    if out_row0 + t > rows {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: table.shape().to_vec(),
            rhs: out.shape().to_vec(),
            expected: format!("out with rows {out_row0}..{}", out_row0 + t),
        });
    }
    need_f32(OP, out, rows * h, "out")?;
    let groups = strided_groups(t * h, gpu.capabilities().max_workgroups_per_dimension);
    for (row0, n, window) in windows(gpu, table, OP)? {
        let params: [u32; 8] = [
            u(t),
            u(h),
            u(row0),
            u(n),
            u(tok0),
            u(vocab),
            u(out_row0),
            scale.to_bits(),
        ];
        gpu.launch(&Launch {
            op: OP,
            shader: &MODEL_EMBED,
            constants: &[("FMT", f64::from(fmt))],
            bindings: &[window, tokens.into(), out.into()],
            params: bytemuck::cast_slice(&params),
            workgroups: [groups, 1, 1],
        })?;
    }
    Ok(())
}

/// `out[i] = table[tokens[rows[i].slot]] · scale` for a step's `n` rows (`rows: [≥ n, 4]` u32,
/// each row's token slot first: the rows of many sequences at once), into `out: [≥ n, hidden]`
/// f32, from a table in any weight format, in windows of rows as [`embed_scaled`].
pub fn embed_rows(
    gpu: &Gpu,
    table: &Tensor,
    (tokens, rows, n): (&Tensor, &Tensor, usize),
    out: &Tensor,
    scale: f32,
) -> Result<()> {
    const OP: &str = "embed_rows";
    let Some(fmt) = table.dtype().shader_format() else {
        return Err(Error::Unsupported {
            op: OP,
            reason: format!("embedding tables in {} are not supported", table.dtype()),
        });
    };
    let [vocab, h] = table.shape()[..] else {
        return Err(Error::InvalidShape {
            op: OP,
            shape: table.shape().to_vec(),
            reason: "the table must be [vocab, hidden]".into(),
        });
    };
    if rows.dtype() != DType::U32 || rows.len() < 4 * n || tokens.dtype() != DType::U32 {
        return Err(Error::InvalidShape {
            op: OP,
            shape: rows.shape().to_vec(),
            reason: format!(
                "tokens and rows must be u32, rows with at least {} elements",
                4 * n
            ),
        });
    }
    need_f32(OP, out, n * h, "out")?;
    let groups = strided_groups(n * h, gpu.capabilities().max_workgroups_per_dimension);
    for (row0, count, window) in windows(gpu, table, OP)? {
        let params: [u32; 8] = [
            u(n),
            u(h),
            u(row0),
            u(count),
            0,
            u(vocab),
            0,
            scale.to_bits(),
        ];
        gpu.launch(&Launch {
            op: OP,
            shader: &MODEL_EMBED_ROWS,
            constants: &[("FMT", f64::from(fmt))],
            bindings: &[window, tokens.into(), out.into(), rows.into()],
            params: bytemuck::cast_slice(&params),
            workgroups: [groups, 1, 1],
        })?;
    }
    Ok(())
}

/// The table as bindings that each fit the storage-binding limit: `(first row, rows, binding)`.
/// Window starts are multiples of the offset alignment (whole groups of rows).
fn windows<'a>(
    gpu: &Gpu,
    table: &'a Tensor,
    op: &'static str,
) -> Result<Vec<(usize, usize, Binding<'a>)>> {
    let caps = gpu.capabilities();
    let (vocab, h) = (table.shape()[0], table.shape()[1]);
    let (elems, block) = table.dtype().block();
    let row_bytes = (h / elems * block) as u64;
    let total = table.buffer().size();
    let align = u64::from(caps.min_storage_offset_alignment).max(4);
    let step = align / gcd(row_bytes, align);
    let fit = (caps.max_storage_binding / row_bytes / step * step) as usize;
    if fit == 0 {
        return Err(Error::TooLarge {
            op,
            what: "embedding row",
            bytes: row_bytes * step,
            limit: caps.max_storage_binding,
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    let mut out = Vec::new();
    let mut row0 = 0;
    while row0 < vocab {
        let n = fit.min(vocab - row0);
        let offset = row0 as u64 * row_bytes;
        let size = (n as u64 * row_bytes)
            .next_multiple_of(4)
            .min(total - offset);
        out.push((row0, n, Binding::window(table, offset, size)));
        row0 += n;
    }
    Ok(out)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
