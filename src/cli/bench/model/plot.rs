//! `--plot`: generation tokens/s and $ per 1M output tokens against batch size, one line per
//! model and test, as an SVG (plotters).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::cli::CliError;
use pertoken_bench::model::Row;

/// One series: batch, tokens/s, $ per 1M.
type Series = Vec<(usize, f64, Option<f64>)>;

/// Draws the generation rows of `rows` to `path`: tokens/s on the left, $ per 1M on the right
/// (where a price is known), both against batch size on a log axis.
pub(crate) fn draw(path: &Path, title: &str, rows: &[Row]) -> Result<(), CliError> {
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for (name, batch, tps, usd) in rows.iter().filter_map(Row::batch_point) {
        series.entry(name).or_default().push((batch, tps, usd));
    }
    if series.is_empty() {
        return Err(format!(
            "--plot {}: no generation rows to draw (add -n N, and -b 1,8,32 for a curve)",
            path.display()
        )
        .into());
    }
    for s in series.values_mut() {
        s.sort_by_key(|p| p.0);
    }
    let priced = series.values().flatten().all(|p| p.2.is_some());
    draw_svg(path, title, &series, priced)
        .map_err(|e| format!("--plot {}: {e}", path.display()).into())
}

fn draw_svg(
    path: &Path,
    title: &str,
    series: &BTreeMap<String, Series>,
    priced: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let width = if priced { 1200 } else { 640 };
    let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let panels = if priced {
        root.split_evenly((1, 2))
    } else {
        vec![root.clone()]
    };
    let points = || series.values().flatten();
    let b_max = points().map(|p| p.0).max().unwrap_or(1) as f64;
    let range = |v: Vec<f64>| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        (lo * 0.8)..(hi * 1.25)
    };
    let x_range = || (0.8..b_max * 1.25).log_scale();
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

    let mut tps = ChartBuilder::on(&panels[0])
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            x_range(),
            range(points().map(|p| p.1).collect()).log_scale(),
        )?;
    tps.configure_mesh()
        .x_desc("sequences decoding together (batch)")
        .y_desc("generated tokens/s, all sequences")
        .draw()?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let line: Vec<(f64, f64)> = s.iter().map(|p| (p.0 as f64, p.1)).collect();
        tps.draw_series(LineSeries::new(line.clone(), color))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        tps.draw_series(
            line.into_iter()
                .map(|xy| Circle::new(xy, 4, color.filled())),
        )?;
    }
    tps.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    if priced {
        let mut usd = ChartBuilder::on(&panels[1])
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(
                x_range(),
                range(points().filter_map(|p| p.2).collect()).log_scale(),
            )?;
        usd.configure_mesh()
            .x_desc("sequences decoding together (batch)")
            .y_desc("$ per 1M generated tokens")
            .draw()?;
        for (i, s) in series.values().enumerate() {
            let color = colors[i % colors.len()];
            let line: Vec<(f64, f64)> = s.iter().filter_map(|p| Some((p.0 as f64, p.2?))).collect();
            usd.draw_series(LineSeries::new(line.clone(), color))?;
            usd.draw_series(
                line.into_iter()
                    .map(|xy| Circle::new(xy, 4, color.filled())),
            )?;
        }
    }
    root.present()?;
    Ok(())
}
