//! `--check`: the GPU result against the f64 CPU reference, printed.

use pertoken_reference::{Comparison, compare};

use super::npy;
use super::ops::{Op, Which};
use crate::cli::CliError;

/// Runs the reference on the values the kernel read, compares, and prints the errors and the
/// verdict; where `--dtype` or a float64 file changed the values, also the errors against the
/// reference on the files' own values (for scale: that difference is the format's, not the
/// kernel's, and is not judged).
pub(super) fn check(op: &dyn Op, got: &[f32], shape: &[usize]) -> Result<Comparison, CliError> {
    let roundings: Vec<String> = op.operands().iter().filter_map(|o| o.rounding()).collect();
    let want = op.reference(Which::Held)?;
    let tol = op.tolerance();
    let cmp = compare(got, &want, tol.tolerance);
    let on = if roundings.is_empty() {
        "the values in the files (the kernel read them unchanged)".to_owned()
    } else {
        format!(
            "the values the kernel read, the same numbers on both sides ({})",
            roundings.join("; ")
        )
    };
    println!("check: reference: the CPU reference, accumulating in f64, on {on}");
    println!(
        "check: tolerance: |gpu - ref| <= max({:.1e}, {:.1e}·|ref|) element by element ({})",
        tol.tolerance.abs, tol.tolerance.rel, tol.why
    );
    println!("check: {}", errors(&cmp));
    if cmp.passed() {
        println!("check: verified: all {} elements within tolerance", cmp.len);
    } else {
        let worst = cmp
            .worst
            .map(|(i, a, e)| format!("; worst at {}: gpu {a}, reference {e}", npy::at(i, shape)))
            .unwrap_or_default();
        println!(
            "check: FAILED: {} of {} elements out of tolerance{worst}",
            cmp.failures, cmp.len
        );
    }
    if !roundings.is_empty() {
        let exact = op.reference(Which::Given)?;
        let c = compare(got, &exact, tol.tolerance);
        println!(
            "check: against the reference on the files' own values (the rounding above \
             included; for scale, not judged): {}",
            errors(&c)
        );
    }
    Ok(cmp)
}

fn errors(c: &Comparison) -> String {
    format!(
        "max abs err {:.3e}, max rel err {:.3e}, NMSE {:.3e} over {} elements",
        c.max_abs, c.max_rel, c.nmse, c.len
    )
}
