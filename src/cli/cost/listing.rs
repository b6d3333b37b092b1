//! `pertoken models`, `pertoken hardware`, and the cost chart.

use pertoken_cost::estimate::{Estimate, pareto};

use super::CatalogArgs;
use crate::cli::CliError;

pub(crate) fn models(args: &CatalogArgs) -> Result<(), CliError> {
    let c = args.load()?;
    println!(
        "{:<16} {:>9} {:>9} {:>6} {:>7} {:>9} {:>12}  source",
        "name", "params B", "active B", "layers", "hidden", "heads/kv", "KV KiB/tok"
    );
    for m in &c.models {
        let p = m.params();
        println!(
            "{:<16} {:>9.3} {:>9.3} {:>6} {:>7} {:>9} {:>12.1}  {}",
            m.name,
            p.total as f64 / 1e9,
            p.active as f64 / 1e9,
            m.layers,
            m.hidden,
            format!("{}/{}", m.heads, m.kv_heads),
            m.kv_bytes_per_token(2.0) / 1024.0,
            m.source
        );
    }
    Ok(())
}

pub(crate) fn hardware(args: &CatalogArgs) -> Result<(), CliError> {
    let c = args.load()?;
    println!(
        "{:<14} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>6} {:>5}  {:<14} {:<12} description",
        "name", "mem GB", "GB/s", "bf16", "fp8", "fp4", "TDP W", "$/h", "chips", "link", "stack"
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    let tf = |h: &pertoken_cost::Hardware, d: &str| opt(h.dense_peak(d).map(|v| v / 1e12), 0);
    for h in &c.hardware {
        println!(
            "{:<14} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>6} {:>5}  {:<14} {:<12} {}",
            h.name,
            format!("{:.0}", h.memory_gb.value),
            h.bandwidth_gbs.value,
            tf(h, "bf16"),
            tf(h, "fp8"),
            tf(h, "fp4"),
            opt(h.tdp_w.as_ref().map(|f| f.value), 0),
            opt(h.price_per_hour.as_ref().map(|f| f.value), 2),
            h.max_devices
                .as_ref()
                .map_or("-".to_owned(), |m| m.value.to_string()),
            h.interconnect.as_ref().map_or("-", |l| l.name.as_str()),
            h.stack.as_ref().map_or("-", |s| s.name.as_str()),
            h.description
        );
    }
    println!(
        "Peaks in dense TFLOP/s; $/h on demand per device (other kinds: `prices` in the file); \
         chips: the largest platform searched when comparing parts. Every figure's source and \
         date: crates/pertoken-cost/data/hardware.toml. '-': not sourced."
    );
    Ok(())
}

/// A chart's drawing area: cost per 1M output tokens against tokens/s per user, both on log axes.
pub(super) type CostChart<'a, 'b> = plotters::chart::ChartContext<
    'a,
    plotters::backend::SVGBackend<'b>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// Writes an SVG of `size` to `path`: cost per 1M output tokens (`y_desc` says in what) against
/// tokens/s per user, on log axes around `points` (x, y), with what `series` draws on it and, with
/// `legend`, the labels it gave its series. Errors name the --plot file.
pub(super) fn cost_chart(
    path: &std::path::Path,
    size: (u32, u32),
    title: &str,
    y_desc: &str,
    points: &[(f64, f64)],
    legend: bool,
    series: impl FnOnce(&mut CostChart<'_, '_>) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), CliError> {
    use plotters::prelude::*;

    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(
                (x0 * 0.8..x1 * 1.25).log_scale(),
                (y0 * 0.8..y1 * 1.25).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("tokens/s per user (1 / time per output token)")
            .y_desc(y_desc)
            .draw()?;
        series(&mut chart)?;
        if legend {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("--plot {}: {e}", path.display()).into())
}

/// Cost per million output tokens against tokens/s per user, one point per batch size that fits,
/// with the Pareto front drawn as a line.
pub(super) fn plot(
    path: &std::path::Path,
    title: &str,
    estimates: &[Estimate],
) -> Result<(), CliError> {
    use plotters::prelude::*;

    let fit: Vec<&Estimate> = estimates.iter().filter(|e| e.fits).collect();
    if fit.is_empty() {
        return Err("--plot: no batch size fits in memory, nothing to draw".into());
    }
    // Without a price, device-seconds per million output tokens stand in for dollars.
    let xy = |e: &Estimate| {
        (
            1.0 / e.tpot_s,
            e.usd_per_m_output.unwrap_or(1e6 / e.decode_tokens_per_s),
        )
    };
    let points: Vec<(f64, f64)> = fit.iter().map(|e| xy(e)).collect();
    cost_chart(
        path,
        (900, 560),
        title,
        "$ per 1M output tokens (device-seconds per 1M without a price)",
        &points,
        false,
        |chart| {
            let front = pareto(estimates, None);
            let mut line: Vec<(f64, f64)> = front.iter().map(xy).collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart.draw_series(LineSeries::new(line, &BLUE))?;
            chart.draw_series(fit.iter().map(|e| {
                let (x, y) = xy(e);
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 4, BLUE.filled())
                    + Text::new(format!("b={}", e.batch), (6, -14), ("sans-serif", 13))
            }))?;
            Ok(())
        },
    )
}
