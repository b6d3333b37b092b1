//! A step's time by kind of kernel.

use pertoken_gpu::Timing;

/// Launches timed alone ([`pertoken_gpu::Gpu::time_each`]) summed by op: `(op, launches,
/// seconds)`, the costliest first.
pub fn by_op(log: &[(&'static str, Timing)]) -> Vec<(&'static str, usize, f64)> {
    let mut out: Vec<(&'static str, usize, f64)> = Vec::new();
    for (op, t) in log {
        match out.iter_mut().find(|(o, _, _)| o == op) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.seconds;
            }
            None => out.push((op, 1, t.seconds)),
        }
    }
    out.sort_by(|x, y| y.2.total_cmp(&x.2));
    out
}
