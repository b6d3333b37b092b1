//! The model bench's table: llama-bench's markdown columns with ours, then each generation
//! row's breakdown.

use pertoken_bench::model::{Row, mean_sd};

/// Prints the rows as llama-bench's markdown table with our columns, then each generation
/// row's breakdown.
pub(crate) fn print_rows(rows: &[Row]) {
    println!(
        "| {:<24} | {:>9} | {:>8} | {:<7} | {:>13} | {:>18} | {:>8} | {:>9} | {:>8} | {:<28} |",
        "model", "size", "params", "backend", "test", "t/s", "% bound", "$/1M", "J/tok", "verified"
    );
    println!(
        "| {:-<24} | {:->9} | {:->8} | {:-<7} | {:->13} | {:->18} | {:->8} | {:->9} | {:->8} | {:-<28} |",
        "", "", "", "", "", "", "", "", "", ""
    );
    for r in rows {
        if let Some(why) = &r.failed {
            println!(
                "| {:<24} | {:>9} | {:>8} | {:<7} | {:>13} | FAILED: {why}",
                r.model, "-", "-", r.backend, r.test
            );
            continue;
        }
        let (mean, sd) = mean_sd(&r.samples);
        let pct = r
            .bound
            .map_or_else(|| "-".to_owned(), |b| format!("{:.1}%", 100.0 * mean / b));
        let verified = match &r.verified {
            None => "not checked".to_owned(),
            Some(Ok(what)) => format!("yes ({what})"),
            Some(Err(_)) => "NO".to_owned(),
        };
        let money = r
            .cost
            .0
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.3}"));
        let joules = r
            .cost
            .1
            .map_or_else(|| "-".to_owned(), |j| format!("{j:.3}"));
        println!(
            "| {:<24} | {:>5.1} MiB | {:>7.1}M | {:<7} | {:>13} | {:>9.2} ± {:>6.2} | {:>8} | {:>9} | {:>8} | {:<28} |",
            r.model,
            r.size_bytes as f64 / (1 << 20) as f64,
            r.params as f64 / 1e6,
            r.backend,
            r.test,
            mean,
            sd,
            pct,
            money,
            joules,
            verified
        );
    }
    println!();
    println!(
        "t/s: mean ± standard deviation over the repetitions, wall clock from a synced GPU to a \
         synced GPU. % bound: generation against copy bandwidth / (weight bytes + KV bytes \
         read per token); prompts against the prompt's linear layers alone (the decoder's own \
         kernels at the model's shapes, each timed alone: what the prompt would take if it \
         were only its matmuls). $/1M: per million tokens of the row's kind (input for pp, \
         output for tg) at its mean rate, every sequence's tokens counted. J/tok: the board's energy over \
         the timed tokens where NVML reads it (the power line above says which), else the \
         catalog's TDP over the rate."
    );
    for r in rows {
        if let Some(Err(why)) = &r.verified {
            println!("{} {}: verification FAILED: {why}", r.model, r.test);
        }
    }
    for r in rows {
        let Some(b) = &r.breakdown else { continue };
        let total: f64 = b.by_op.iter().map(|e| e.2).sum();
        println!();
        println!(
            "{} {}: one generation step takes {:.3} ms submitted whole; its kernels timed alone \
             add up to {:.3} ms:",
            r.model,
            r.test,
            b.step_seconds * 1e3,
            total * 1e3
        );
        for (op, n, s) in &b.by_op {
            println!(
                "  {op:<16} {n:>5} launches {:>9.3} ms {:>5.1}%",
                s * 1e3,
                100.0 * s / total
            );
        }
    }
}
