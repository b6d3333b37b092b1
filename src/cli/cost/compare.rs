//! `pertoken cost --hardware a,b,c --isl … --osl …`: which part serves the model cheapest.

use pertoken_cost::account::WeightFormat;
use pertoken_cost::compare::{
    Outcome, PRICE_FALLBACK, PartResult, Search, compare, why_the_winner_wins,
};
use pertoken_cost::validation::family;
use pertoken_cost::{Catalog, Model, PRICE_KINDS};

use super::{Args, Format};
use crate::cli::CliError;

pub(super) fn run(args: &Args, model: &Model, catalog: &Catalog) -> Result<(), CliError> {
    let (Some(isl), Some(osl)) = (args.isl, args.osl) else {
        return Err(
            "comparing parts needs the load: pass --isl and --osl (tokens per request)".into(),
        );
    };
    if !PRICE_KINDS.contains(&args.price_kind.as_str()) {
        return Err(format!(
            "--price-kind {:?}: expected one of {}",
            args.price_kind,
            PRICE_KINDS.join(", ")
        )
        .into());
    }
    let names: Vec<String> = args
        .hardware
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    for (flag, given) in [
        ("--devices", args.devices != 1),
        ("--interconnect", args.interconnect.is_some()),
        ("--static-batch", args.static_batch.is_some()),
        ("--bench-report", args.bench_report.is_some()),
        ("--rent", args.rent.is_some()),
        ("--owned", args.owned),
    ] {
        if given {
            return Err(format!(
                "{flag} applies to one part; comparing parts searches devices, splits and \
                 batches itself, priced from the catalog (--price-kind)"
            )
            .into());
        }
    }
    let formats = args
        .formats
        .as_ref()
        .map(|f| {
            f.iter()
                .map(|s| WeightFormat::parse(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let mut price_kinds = vec![args.price_kind.clone()];
    price_kinds.extend(
        PRICE_FALLBACK
            .iter()
            .filter(|k| **k != args.price_kind)
            .map(|k| (*k).to_owned()),
    );
    let search = Search {
        isl,
        osl,
        max_tpot_s: args.max_tpot_ms.map(|t| t / 1e3),
        max_ttft_s: args.max_ttft_ms.map(|t| t / 1e3),
        formats,
        price_kinds,
        kv_bytes: args.kv_bytes,
        stack: args.stack.clone(),
    };
    let parts = compare(model, catalog, &names, &search)?;
    if let Some(path) = &args.plot {
        plot(
            path,
            &format!("{} at {isl} in / {osl} out", model.name),
            &parts,
        )?;
    }
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "model": model.name,
                "isl": isl,
                "osl": osl,
                "max_tpot_ms": args.max_tpot_ms,
                "max_ttft_ms": args.max_ttft_ms,
                "price_kind": args.price_kind,
                "why": why_the_winner_wins(&parts),
                "parts": parts,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
        }
        Format::Csv => {
            println!(
                "rank,hardware,stack,chips,split,weights,batch,usd_per_m_output,usd_per_m_blended,\
                 tokens_per_s_per_user,tokens_per_s_per_chip,ttft_s,joules_per_token,price_kind"
            );
            for (i, p) in parts.iter().enumerate() {
                let (c, sv) = match p.best_serving() {
                    Some(x) => x,
                    None => {
                        println!("{},{},{},,,,,,,,,,,", i + 1, p.hardware, p.stack);
                        continue;
                    }
                };
                let o = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
                println!(
                    "{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.4},{},{}",
                    i + 1,
                    p.hardware,
                    p.stack,
                    c.devices,
                    c.split,
                    c.format,
                    sv.batch,
                    o(c.usd_per_m_output),
                    o(c.usd_per_m_blended),
                    1.0 / sv.tpot_s,
                    sv.output_tokens_per_s / c.devices as f64,
                    sv.ttft_s,
                    o(p.joules_per_output_token),
                    p.price.as_ref().map_or("", |p| p.kind.as_str())
                );
            }
        }
        Format::Table => table(model, args, isl, osl, &parts),
    }
    Ok(())
}

fn table(model: &Model, args: &Args, isl: u64, osl: u64, parts: &[PartResult]) {
    let limits = [
        args.max_tpot_ms.map(|t| format!("TPOT <= {t} ms")),
        args.max_ttft_ms.map(|t| format!("TTFT <= {t} ms")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    println!(
        "{}: {isl} in / {osl} out per request, {}; the cheapest configuration on each part \
         (devices, split, weights, batch searched), ranked by $ per 1M output tokens",
        model.name,
        if limits.is_empty() {
            "no latency limit".to_owned()
        } else {
            limits.join(", ")
        }
    );
    println!(
        "{:>2} {:<9} {:<11} {:>5} {:<6} {:<6} {:>5} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7}  price",
        "#",
        "part",
        "stack",
        "chips",
        "split",
        "wts",
        "batch",
        "$/1M out",
        "$/1M all",
        "tok/s/u",
        "tok/s/c",
        "TTFT s",
        "J/tok"
    );
    let o = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
    for (i, p) in parts.iter().enumerate() {
        let price = p.price.as_ref().map_or("none sourced".to_owned(), |pr| {
            format!("${:.3}/chip-h {} ({})", pr.value, pr.kind, pr.date)
        });
        match p.best_serving() {
            Some((c, sv)) => println!(
                "{:>2} {:<9} {:<11} {:>5} {:<6} {:<6} {:>5} {:>9} {:>9} {:>8.1} {:>8.0} {:>7.2} {:>7}  {price}{}",
                i + 1,
                p.hardware,
                p.stack,
                c.devices,
                c.split,
                c.format,
                sv.batch,
                o(c.usd_per_m_output, 3),
                o(c.usd_per_m_blended, 3),
                1.0 / sv.tpot_s,
                sv.output_tokens_per_s / c.devices as f64,
                sv.ttft_s,
                o(p.joules_per_output_token, 3),
                if c.upper_bound.is_some() {
                    " (upper bound: unpacking not modelled)"
                } else {
                    ""
                }
            ),
            None => {
                let why = p
                    .considered
                    .iter()
                    .find_map(|c| match &c.outcome {
                        Outcome::Sla(w) | Outcome::Memory(w) => Some(w.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "no configuration runs".into());
                println!(
                    "{:>2} {:<9} {:<11} no configuration meets the limits: {why}",
                    i + 1,
                    p.hardware,
                    p.stack
                );
            }
        }
    }
    for p in parts {
        if let Some(n) = &p.price_note {
            println!("note: {}: {n}", p.hardware);
        }
    }
    if let Some(why) = why_the_winner_wins(parts) {
        println!("{why}.");
    }
    accuracy(parts);
    let considered: usize = parts.iter().map(|p| p.considered.len()).sum();
    println!(
        "{considered} configurations considered; --format json lists each and why it lost \
         (memory, SLA, cost). Figures: crates/pertoken-cost/data (every one sourced); J/token at TDP."
    );
}

/// How the cost model fared against published measurements on each compared part's family, so
/// a reader knows how far to trust each row.
fn accuracy(parts: &[PartResult]) {
    let Ok(scored) = pertoken_cost::validation::score() else {
        return;
    };
    let mut seen = Vec::new();
    for p in parts {
        let f = family(&p.hardware);
        if seen.contains(&f) {
            continue;
        }
        seen.push(f);
        let mine: Vec<_> = scored
            .iter()
            .filter(|s| family(&s.hardware) == f)
            .cloned()
            .collect();
        if mine.is_empty() {
            println!("validation: {f}: no published point yet");
            continue;
        }
        let s = pertoken_cost::validation::summarize(&mine);
        let mut errors: Vec<f64> = mine.iter().map(|s| s.error).collect();
        errors.sort_by(f64::total_cmp);
        println!(
            "validation: {f}: {} of {} published points within ±15%, median error {:+.0}%",
            s.within_15,
            s.points,
            errors[errors.len() / 2] * 100.0
        );
    }
}

/// Cost per 1M output tokens against tokens/s per user, one curve per part (the cheapest
/// configuration at each batch limit that meets the limits).
fn plot(path: &std::path::Path, title: &str, parts: &[PartResult]) -> Result<(), CliError> {
    use plotters::prelude::*;

    // Dollars and device-hours do not share an axis: with any part priced, unpriced ones stay
    // off the chart (the table lists them).
    let priced = parts.iter().any(|p| p.price.is_some());
    let parts: Vec<&PartResult> = parts
        .iter()
        .filter(|p| !priced || p.price.is_some())
        .collect();
    let pts: Vec<(f64, f64)> = parts.iter().flat_map(|p| p.curve.iter().copied()).collect();
    if pts.is_empty() {
        return Err("--plot: no part has a configuration that meets the limits".into());
    }
    let y_desc = if priced {
        "$ per 1M output tokens"
    } else {
        "device-hours per 1M output tokens (no part priced)"
    };
    super::listing::cost_chart(path, (960, 600), title, y_desc, &pts, true, |chart| {
        for (i, p) in parts.iter().enumerate() {
            if p.curve.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    p.curve.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(p.hardware.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart.draw_series(
                p.curve
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )?;
        }
        Ok(())
    })
}
