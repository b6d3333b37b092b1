//! `pertoken generate` and the model bench (`pertoken bench`) on real and synthetic models.

use super::{pertoken, pertoken_in};
use pertoken::gpu::testing::gpu_or_skip;

#[test]
fn generate_on_smollm2_gives_the_reference_greedy_text() {
    let Some(model) = pertoken::formats::testdata::smollm2_or_skip() else {
        return;
    };
    if gpu_or_skip().is_none() {
        return;
    }
    let model = model.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = pertoken(&[
        "generate",
        "--gguf",
        &model,
        "--prompt",
        "What is the capital of France?",
        "--chat",
        "-n",
        "12",
        "--check",
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(stderr.contains("prefill: 16 tokens"), "{stderr}");
    assert!(
        stderr.contains("verified: the CPU reference chooses the same"),
        "{stderr}"
    );
}

#[test]
fn generate_with_synthetic_weights_streams_ids_and_profiles_a_step() {
    if gpu_or_skip().is_none() {
        return;
    }
    let (ok, stdout, stderr) = pertoken(&[
        "generate",
        "--model",
        "tiny",
        "--weights",
        "q4_1",
        "--prompt-ids",
        "5,9,2,7",
        "-n",
        "6",
        "--profile",
        "2",
        "--check",
        // Both fusions (off by default on CPU adapters), checked against the reference.
        "--fuse",
        "gate,norm",
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let ids: Vec<u32> = stdout
        .split_whitespace()
        .map(|t| t.parse().expect("token ids"))
        .collect();
    assert_eq!(ids.len(), 6, "{stdout}");
    assert!(stderr.contains("decode:  5 tokens"), "{stderr}");
    assert!(stderr.contains("step / sum"), "{stderr}");
    assert!(stderr.contains("verified"), "{stderr}");
}

#[test]
fn a_memory_limit_refuses_a_model_past_it_and_a_bad_limit_is_named() {
    use std::path::Path;
    let args = [
        "generate",
        "--model",
        "tiny",
        "--prompt-ids",
        "1,2",
        "-n",
        "2",
    ];
    let (ok, _, stderr) = pertoken_in(&args, &[("PERTOKEN_MEMORY_LIMIT", Path::new("lots"))]);
    assert!(
        !ok && stderr.contains("PERTOKEN_MEMORY_LIMIT") && stderr.contains("512M"),
        "{stderr}"
    );
    if gpu_or_skip().is_none() {
        return;
    }
    let (ok, _, stderr) = pertoken_in(&args, &[("PERTOKEN_MEMORY_LIMIT", Path::new("64K"))]);
    assert!(
        !ok && stderr.contains("does not fit") && stderr.contains("Raise the memory limit"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (ok, stdout, stderr) = pertoken_in(&args, &[("PERTOKEN_MEMORY_LIMIT", Path::new("512M"))]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn generate_refuses_bad_input_with_what_to_do() {
    let (ok, _, stderr) = pertoken(&[
        "generate",
        "--gguf",
        "/nonexistent/m.gguf",
        "--prompt",
        "hi",
    ]);
    assert!(!ok && stderr.contains("/nonexistent/m.gguf"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["generate", "--model", "tiny", "--prompt", "hi"]);
    assert!(!ok && stderr.contains("--prompt-ids"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["generate", "--model", "tiny"]);
    assert!(!ok && stderr.contains("give a prompt"), "{stderr}");
    let (ok, _, stderr) = pertoken(&[
        "generate",
        "--model",
        "tiny",
        "--prompt-ids",
        "1",
        "--fuse",
        "none,gate",
    ]);
    assert!(!ok && stderr.contains("--fuse none cannot"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["generate", "--model", "no-such-model", "--prompt-ids", "1"]);
    assert!(!ok && stderr.contains("no-such-model"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let junk = junk.to_string_lossy().into_owned();
    let (ok, _, stderr) = pertoken(&["generate", "--gguf", &junk, "--prompt", "hi"]);
    assert!(
        !ok && stderr.contains("junk.gguf") && stderr.contains("magic"),
        "{stderr}"
    );
}

#[test]
fn bench_measures_a_model_verified_with_every_combination() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("model.json");
    let svg = dir.path().join("batch.svg");
    // Tuned: the linear kernels are measured once and cached in the test's own folder.
    let cache = dir.path().join("cache");
    let (ok, stdout, stderr) = pertoken_in(
        &[
            "bench",
            "-m",
            "tiny",
            "--weights",
            "q4_1,f16",
            "-p",
            "8",
            "-n",
            "4",
            "-d",
            "0,3",
            "-b",
            "1,3",
            "-r",
            "2",
            "--hardware",
            "h100-sxm",
            "--json",
            report.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        &[("PERTOKEN_CACHE_DIR", &cache)],
    );
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("linear problems"), "{stderr}");
    assert!(
        cache.join("tune-v4.json").is_file(),
        "the tuning cache is written"
    );
    assert!(
        stdout.contains("from catalog h100-sxm (--hardware"),
        "{stdout}"
    );
    assert!(stdout.contains("TDP of catalog h100-sxm"), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| tiny")).collect();
    // 2 formats × 2 depths × (pp8, tg4, tg4 with 3 sequences).
    assert_eq!(rows.len(), 12, "{stdout}");
    for test in [
        " pp8 |",
        " tg4 |",
        " pp8 @ d3 |",
        " tg4 @ d3 |",
        " tg4 b3 |",
        " tg4 b3 @ d3 |",
    ] {
        assert_eq!(
            rows.iter().filter(|r| r.contains(test)).count(),
            2,
            "{test}: {stdout}"
        );
    }
    assert!(
        rows.iter().all(|r| r.contains("yes (whole model")),
        "{stdout}"
    );
    assert!(stdout.contains("one generation step takes"), "{stdout}");
    // The plot: a line per format and depth over batch 1 and 3, in tokens/s and in $/1M.
    let drawn = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "tiny q4_1 tg4",
        "tiny f16 tg4 @ d3",
        "$ per 1M generated tokens",
    ] {
        assert!(drawn.contains(label), "{label} missing from the plot");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    assert!(
        stdout.contains("sequences 0 and 2"),
        "batched rows check their first and last sequence: {stdout}"
    );
    for r in rows {
        assert_eq!(r["samples"].as_array().unwrap().len(), 2);
        assert!(r["tokens_per_second"].as_f64().unwrap() > 0.0);
        assert_eq!(r["verified"], true, "{r}");
        // $/1M at $/hour p and r tokens/s is p / 3600 / r · 10⁶.
        let (tps, usd) = (
            r["tokens_per_second"].as_f64().unwrap(),
            r["usd_per_million_tokens"].as_f64().unwrap(),
        );
        let per_hour = pertoken::cost::Catalog::builtin()
            .hardware("h100-sxm")
            .unwrap()
            .price_per_hour
            .as_ref()
            .unwrap()
            .value;
        assert!(
            (usd - per_hour / 3600.0 / tps * 1e6).abs() <= 1e-9 * usd,
            "{r}"
        );
        assert!(r["joules_per_token"].as_f64().unwrap() > 0.0);
        if r["op"] == "model_generation" {
            assert!(r["launches_per_step"].as_u64().unwrap() > 0, "{r}");
        }
    }
    // The cost model takes its efficiencies from these whole steps.
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--bench-report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // ... and the launch cost from whole steps' time beyond their bytes, per launch.
    assert!(
        stdout.contains("whole measured steps") && stdout.contains("us per launch"),
        "{stdout}"
    );
    // Without a price: the rates, and how to add one; and CSV.
    let csv = dir.path().join("rows.csv");
    let (ok, stdout, _) = pertoken(&[
        "bench",
        "--no-tune",
        "-m",
        "tiny",
        "-p",
        "4",
        "-n",
        "2",
        "-r",
        "1",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("add --rent USD_PER_HOUR"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("model,size_bytes,params,backend,test,tokens_per_second"));
    assert!(
        lines[1].contains(",pp4,") && lines[2].contains(",tg2,"),
        "{text}"
    );
    assert!(lines[1..].iter().all(|l| l.contains(",true,")), "{text}");
    let (ok, _, stderr) = pertoken(&[
        "bench",
        "--no-tune",
        "-m",
        "tiny",
        "-p",
        "2",
        "-n",
        "0",
        "-r",
        "1",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("no generation rows"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["bench", "--no-tune", "-m", "tiny", "--rent=-3"]);
    assert!(!ok && stderr.contains("positive price"), "{stderr}");
    // Nothing to measure is an error, not an empty table.
    let (ok, _, stderr) = pertoken(&["bench", "--no-tune", "-m", "tiny", "-p", "0", "-n", "0"]);
    assert!(!ok && stderr.contains("nothing to measure"), "{stderr}");
    // A configuration that cannot run (a batch past the memory limit) gets its reason in its own
    // row; the rows measured around it are printed and written all the same.
    let json = dir.path().join("rows.json");
    let (ok, stdout, stderr) = pertoken_in(
        &[
            "bench",
            "--no-tune",
            "-m",
            "smollm2-135m",
            "-p",
            "0",
            "-n",
            "2",
            "-r",
            "1",
            "-b",
            "1,1024",
            "--json",
            json.to_str().unwrap(),
        ],
        &[("PERTOKEN_MEMORY_LIMIT", std::path::Path::new("200M"))],
    );
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("tg2 b1024 | FAILED: ")
            && stdout.contains("does not fit")
            && stdout.contains("| yes ("),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert!(rows[0]["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(rows[1]["error"].as_str().unwrap().len() > 10, "{report}");
}
