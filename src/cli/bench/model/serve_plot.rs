//! `bench --serve --plot`: output tokens/s against time per output token, one point per load,
//! one line per model: the curve an operating point is chosen from.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::serve_report::ServeRow;
use crate::cli::CliError;

/// (TPOT ms, output tokens/s, load) of each model's runs.
type Curve = Vec<(f64, f64, String)>;

pub(crate) fn draw(path: &Path, title: &str, rows: &[ServeRow]) -> Result<(), CliError> {
    let mut curves: BTreeMap<String, Curve> = BTreeMap::new();
    for r in rows {
        if let Ok(m) = &r.result {
            curves.entry(r.model.clone()).or_default().push((
                m.report.tpot.p50 * 1e3,
                m.report.output_tps,
                r.load.clone(),
            ));
        }
    }
    if curves.values().all(|c| c.iter().all(|p| p.0 <= 0.0)) {
        return Err(format!(
            "--plot {}: no run has a time per output token (give --osl of at least 2)",
            path.display()
        )
        .into());
    }
    draw_svg(path, title, &curves).map_err(|e| format!("--plot {}: {e}", path.display()).into())
}

fn draw_svg(
    path: &Path,
    title: &str,
    curves: &BTreeMap<String, Curve>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (760, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let all = || curves.values().flatten();
    let span = |f: &dyn Fn(&(f64, f64, String)) -> f64| {
        let (lo, hi) = all()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        (lo.max(1e-6) * 0.8)..(hi * 1.25)
    };
    let mut chart = ChartBuilder::on(&root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(span(&|p| p.0).log_scale(), span(&|p| p.1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time per output token, median (ms)")
        .y_desc("output tokens/s, all requests")
        .draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, c)) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        let mut pts: Vec<(f64, f64, String)> = c.iter().filter(|p| p.0 > 0.0).cloned().collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(pts.iter().map(|p| {
            EmptyElement::at((p.0, p.1))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(p.2.clone(), (6, -14), ("sans-serif", 13))
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
