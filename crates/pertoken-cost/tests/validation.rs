//! Scores the cost model on every published measurement in `data/validation.toml` and prints
//! each point's error, then the accuracy per hardware family. Run with
//! `cargo test -p pertoken-cost --test validation -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};

use pertoken_cost::Catalog;
use pertoken_cost::validation::{Scored, deployment, family, points, score, summarize};

fn line(name: &str, scored: &[Scored]) -> String {
    let s = summarize(scored);
    format!(
        "{name}: {} points, {} within ±15% ({:.1}%), median |error| {:.1}%, worst {:+.1}% ({}), \
         worst factor {:.2}×",
        s.points,
        s.within_15,
        100.0 * s.within_15 as f64 / s.points.max(1) as f64,
        s.median_abs_error * 100.0,
        scored
            .iter()
            .find(|p| p.id == s.worst.1)
            .map_or(0.0, |p| p.error * 100.0),
        s.worst.1,
        s.worst_factor
    )
}

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
    let mut families: BTreeMap<&str, Vec<Scored>> = BTreeMap::new();
    for s in &scored {
        families
            .entry(family(&s.hardware))
            .or_default()
            .push(s.clone());
    }
    for (f, points) in &families {
        println!("{}", line(f, points));
    }
    let accelerators: Vec<Scored> = scored
        .iter()
        .filter(|s| {
            matches!(
                family(&s.hardware),
                "AWS Trainium/Inferentia" | "Google TPU"
            )
        })
        .cloned()
        .collect();
    println!("{}", line("Trainium/Inferentia/TPU", &accelerators));
    println!("{}", line("all", &scored));

    // Where the model stands, kept from regressing. The issue-25 targets are NOT all met (see
    // docs/cost.md, "Validation", for every miss and why): on the whole set 80% within ±15%
    // (57 of 81, 70.4%), a median of 10% (met: 7.7%) and nothing past 2× (a vLLM-on-Neuron
    // point at 32 users is 3.87× over); on Trainium/Inferentia/TPU 70% within ±15% (10 of 20).
    // The 49 points the set had before (GPUs and Apple) still meet all three: 40 within ±15%.
    let sum = summarize(&scored);
    assert!(sum.points >= 80, "{sum:?}");
    assert!(sum.within_15 >= 57, "{sum:?}");
    assert!(sum.median_abs_error <= 0.10, "{sum:?}");
    assert!(sum.worst_factor < 4.0, "{sum:?}");
    let acc = summarize(&accelerators);
    assert!(acc.points >= 20 && acc.within_15 >= 10, "{acc:?}");
    let before: Vec<Scored> = scored.iter().take(49).cloned().collect();
    let b = summarize(&before);
    assert!(b.within_15 * 5 >= 4 * b.points, "{b:?}");
    assert!(b.median_abs_error <= 0.10 && b.worst_factor < 2.0, "{b:?}");
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
    // Every family the comparison ranks has points: Trainium, Inferentia, TPU, Blackwell, AMD.
    for hw in [
        "trn1", "trn2", "inf2", "tpu-v6e", "tpu-v7", "b200", "gb200", "mi325x", "mi355x",
    ] {
        assert!(has(&|p| p.hardware == hw), "no point on {hw}");
    }
}

#[test]
fn multi_chip_points_on_trainium_inferentia_and_tpu_need_no_named_interconnect() {
    let catalog = Catalog::builtin();
    let mut n = 0;
    for p in points().unwrap() {
        let f = family(&p.hardware);
        if p.devices > 1 && matches!(f, "AWS Trainium/Inferentia" | "Google TPU") {
            assert!(p.interconnect.is_none(), "{} names its link", p.id);
            let d = deployment(&p, &catalog).unwrap();
            let link = d.interconnect.expect("the part's usual link");
            assert!(
                link.name.starts_with("neuronlink") || link.name.starts_with("tpu-ici"),
                "{}: {}",
                p.id,
                link.name
            );
            n += 1;
        }
    }
    assert!(n >= 10, "{n}");
}
