//! Scores the cost model on every published measurement in `data/validation.toml` and prints
//! each point's error. Run with `cargo test -p pertoken-cost --test validation -- --nocapture`.

use std::collections::BTreeSet;

use pertoken_cost::validation::{points, score, summarize};

#[test]
fn the_model_against_published_measurements() {
    let scored = score().expect("every point predicts");
    println!(
        "{:<52} {:>10} {:>11} {:>11} {:>8} {:>8}",
        "point", "mode", "measured", "predicted", "error", "bound"
    );
    for s in &scored {
        println!(
            "{:<52} {:>10} {:>11.2} {:>11.2} {:>+7.1}% {:>8}{}",
            s.id,
            s.mode,
            s.measured,
            s.predicted,
            s.error * 100.0,
            s.bound,
            if s.upper_bound { " (upper bound)" } else { "" }
        );
    }
    let sum = summarize(&scored);
    println!(
        "{} points: {} within ±15% ({:.1}%), median |error| {:.1}%, worst {:.1}% ({}), \
         worst factor {:.2}×",
        sum.points,
        sum.within_15,
        100.0 * sum.within_15 as f64 / sum.points as f64,
        sum.median_abs_error * 100.0,
        sum.worst.0 * 100.0,
        sum.worst.1,
        sum.worst_factor
    );
    // The targets, all met (40 of 49 within ±15%, 81.6%; see docs/cost.md for the points
    // that miss and why): 80% within ±15%, a median of 10%, nothing past 2×.
    assert!(sum.points >= 20);
    assert!(sum.within_15 * 5 >= 4 * sum.points, "{sum:?}");
    assert!(sum.median_abs_error <= 0.10, "{sum:?}");
    assert!(sum.worst_factor < 2.0, "{sum:?}");
}

#[test]
fn every_point_is_sourced_and_the_set_covers_the_cases() {
    let ps = points().unwrap();
    let mut ids = BTreeSet::new();
    for p in &ps {
        assert!(ids.insert(p.id.clone()), "duplicate {}", p.id);
        assert!(
            !p.source.is_empty() && !p.quote.is_empty() && p.date.len() >= 4,
            "{}",
            p.id
        );
        assert!(p.measured > 0.0, "{}", p.id);
    }
    let has = |f: &dyn Fn(&pertoken_cost::validation::Point) -> bool| ps.iter().any(f);
    assert!(has(&|p| p.mode == "batch1" && p.devices == 1));
    assert!(has(&|p| p.mode == "batch1" && p.devices > 1));
    assert!(has(&|p| p.mode != "batch1" && p.devices == 1));
    assert!(has(&|p| p.mode != "batch1" && p.devices > 1));
    assert!(has(
        &|p| p.model.contains("mixtral") || p.model.contains("qwen3")
    ));
    let formats: BTreeSet<&str> = ps.iter().map(|p| p.format.as_str()).collect();
    assert!(formats.len() >= 5, "{formats:?}");
}
