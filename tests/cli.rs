//! The `pertoken` binary, end to end.

use std::process::Command;

use pertoken::gpu::testing::gpu_or_skip;

fn pertoken(args: &[&str]) -> (bool, String, String) {
    pertoken_in(args, &[])
}

/// [`pertoken`] with environment variables set.
fn pertoken_in(args: &[&str], env: &[(&str, &std::path::Path)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pertoken"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run pertoken");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_prints_a_verified_table() {
    if gpu_or_skip().is_none() {
        return;
    }
    let (ok, stdout, stderr) = pertoken(&[
        "bench",
        "kernels",
        "--no-tune",
        "--sizes",
        "33,20x65x7",
        "--repeats",
        "2",
        "--linear",
        "64x40",
        "--rows",
        "1,3",
        "--prefill",
        "20",
        "--dtypes",
        "f32,q4_0",
        "--copy-bytes",
        "65536",
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("33x33x33") || l.starts_with("20x65x7"))
        .collect();
    // naive, tiled and CPU for each size.
    assert_eq!(rows.len(), 6, "{stdout}");
    let linear_rows: Vec<&str> = stdout.lines().filter(|l| l.contains(" 64x40 ")).collect();
    // rows 1, 3 and the prefill 20, for each of two dtypes.
    assert_eq!(linear_rows.len(), 6, "{stdout}");
    for row in &linear_rows {
        assert!(row.trim_end().ends_with("yes"), "unverified row: {row}");
    }
    assert!(stdout.contains("copy kernel:"), "{stdout}");
    for row in rows {
        assert!(row.trim_end().ends_with("yes"), "unverified row: {row}");
        let gflops: f64 = row
            .split_whitespace()
            .rev()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        assert!(gflops > 0.0 && gflops.is_finite(), "{row}");
    }
}

#[test]
fn devices_lists_the_adapter_and_its_limits() {
    if gpu_or_skip().is_none() {
        return;
    }
    let (ok, stdout, stderr) = pertoken(&["devices"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("selected:"), "{stdout}");
    assert!(stdout.contains("max storage binding"), "{stdout}");
    // Headless (no XDG_RUNTIME_DIR), Mesa's device-select layer would print its Wayland error.
    let out = Command::new(env!("CARGO_BIN_EXE_pertoken"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("XDG_RUNTIME_DIR"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (ok, _, stderr) = pertoken(&["bench", "kernels", "--sizes", "0"]);
    assert!(!ok);
    assert!(stderr.contains("at least 1"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["bench", "kernels", "--sizes", "12x4"]);
    assert!(!ok);
    assert!(stderr.contains("MxKxN"), "{stderr}");
    for cmd in [&["bench"][..], &["bench", "kernels"]] {
        let mut args = cmd.to_vec();
        args.extend(["--adapter", "no-such-adapter-anywhere"]);
        let (ok, _, stderr) = pertoken(&args);
        assert!(!ok);
        assert!(stderr.contains("no GPU adapter found"), "{stderr}");
        assert!(stderr.contains("no-such-adapter-anywhere"), "{stderr}");
    }
    let (ok, _, stderr) = pertoken(&["bench", "-m", "no-such-model"]);
    assert!(!ok && stderr.contains("no-such-model"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["bench", "--weights", "q5_k"]);
    assert!(!ok && stderr.contains("q4_1"), "{stderr}");
}

#[test]
fn cost_needs_no_gpu_and_reports_per_batch() {
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--rent",
        "3.0",
        "--batch",
        "1,64",
    ]);
    assert!(ok, "{stdout}{stderr}");
    // Table rows: a batch size, then whether it fits.
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|b| b.parse::<u32>().is_ok())
                && matches!(w.next(), Some("yes" | "NO"))
        })
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    // $3/hour at r tokens/s is 3 / 3600 / r · 10⁶ per million output tokens.
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    let (tps, out_price): (f64, f64) = (cols[4].parse().unwrap(), cols[7].parse().unwrap());
    assert!(tps > 50.0 && tps < 400.0, "{stdout}");
    let want = 3.0 / 3600.0 / tps * 1e6;
    assert!((out_price - want).abs() < 1e-3 * want + 1e-4, "{stdout}");
    // The step's terms are named: roofline, launches, communication.
    assert!(
        stdout.contains("launches") && stdout.contains("roofline"),
        "{stdout}"
    );

    // Several SXM devices and no --interconnect: the platform's NVLink, said so.
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-70b",
        "--hardware",
        "h100-sxm",
        "--devices",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("over nvlink4") && stdout.contains("--interconnect to change"),
        "{stdout}"
    );

    let (ok, stdout, _) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "a100-80gb",
        "--format",
        "json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["estimates"].as_array().unwrap().len(), 3);
}

#[test]
fn cost_errors_say_what_to_fix() {
    let (ok, _, stderr) = pertoken(&["cost", "--model", "llama-3-8b", "--hardware", "h100-sxm"]);
    assert!(!ok);
    assert!(stderr.contains("did you mean \"llama-3.1-8b\""), "{stderr}");
    // No price: speed and energy, and how to add a price.
    let (ok, stdout, stderr) = pertoken(&["cost", "--model", "tiny", "--hardware", "l4"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("no price") && stdout.contains("--rent"),
        "{stdout}"
    );
    let (ok, _, stderr) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "h100-sxm",
        "--rent=-1",
    ]);
    assert!(!ok);
    assert!(stderr.contains("must be positive"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("hw.toml");
    std::fs::write(&bad, "[[hardware]]\nname = 'x'\nmemory_gb = 'lots'\n").unwrap();
    let (ok, _, stderr) = pertoken(&["hardware", "--hardware-file", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("hw.toml, line 3"), "{stderr}");
}

#[test]
fn cost_sweep_writes_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("cost.svg");
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--sweep",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("Pareto front"), "{stdout}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("b=1"),
        "{}",
        &text[..200]
    );
}

/// `pertoken bench` with no matmul or linear rows, a small copy and one repeat, then `extra`
/// (the attention options under test).
fn attention_bench(extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "bench",
        "kernels",
        "--no-tune",
        "--sizes",
        "none",
        "--linear",
        "none",
        "--copy-bytes",
        "65536",
        "--repeats",
        "1",
    ];
    args.extend_from_slice(extra);
    pertoken(&args)
}

#[test]
fn bench_attention_and_decode_rows_are_verified() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");
    let (ok, stdout, stderr) = attention_bench(&[
        "--attention",
        "20,70",
        "--attention-heads",
        "4,2",
        "--head-dim",
        "32",
        "--decode-context",
        "40",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    // flash, naive and flash with f16 inputs at two lengths; decode in f32 and f16.
    assert_eq!(rows.len(), 8, "{stdout}");
    assert_eq!(rows.iter().filter(|r| r.contains(" f16 ")).count(), 3);
    assert!(
        rows.iter().all(|r| r.trim_end().ends_with("yes")),
        "{stdout}"
    );
    assert!(
        stdout.contains("decode kernels: 40 f32: ") && stdout.contains("; 40 f16: "),
        "{stdout}"
    );
    // The same rows in the JSON report: 6 prefill (3 kernels × 2 lengths), 2 decode.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let ops: Vec<(&str, &str, bool)> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["op"].as_str().unwrap(),
                r["dtype"].as_str().unwrap(),
                r["verified"].as_bool().unwrap(),
            )
        })
        .collect();
    let count = |op: &str, dtype: &str| {
        ops.iter()
            .filter(|(o, d, ok)| *o == op && *d == dtype && *ok)
            .count()
    };
    assert_eq!(ops.len(), 8, "{doc}");
    assert_eq!(
        (
            count("attention_prefill", "f32"),
            count("attention_prefill", "f16"),
            count("attention_decode", "f32"),
            count("attention_decode", "f16")
        ),
        (4, 2, 1, 1),
        "{doc}"
    );
    for r in doc["rows"].as_array().unwrap() {
        if r["op"] == "attention_decode" {
            let at_size = r["fraction_of_copy_same_bytes"].as_f64().unwrap();
            assert!(at_size > 0.0 && at_size.is_finite(), "{r}");
        }
    }
}

/// Without --no-tune, decode runs the plan the attention tuner measured (then cached: a second
/// run reads it).
#[test]
fn bench_tunes_the_decode_plan_and_reuses_it() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "kernels",
        "--sizes",
        "none",
        "--linear",
        "none",
        "--copy-bytes",
        "65536",
        "--repeats",
        "1",
        "--attention-heads",
        "8,2",
        "--head-dim",
        "32",
        "--decode-context",
        "300",
    ];
    let env = [("PERTOKEN_CACHE_DIR", dir.path())];
    let (ok, first, stderr) = pertoken_in(&args, &env);
    assert!(ok, "stdout:\n{first}\nstderr:\n{stderr}");
    if first.contains("300 f32: tiled") {
        return; // no team kernel on this adapter: nothing to tune
    }
    assert!(
        first.contains("300 f32: teams") && first.contains("(tuned)"),
        "{first}"
    );
    assert!(dir.path().join("tune-attention-v1.json").exists());
    let (ok, second, stderr) = pertoken_in(&args, &env);
    assert!(ok, "stdout:\n{second}\nstderr:\n{stderr}");
    assert!(
        second.contains("(cached)") && !second.contains("(tuned)"),
        "{second}"
    );
    assert_eq!(second.matches(" yes").count(), 2, "{second}");
}

/// `--decode-plans` times every candidate plan of the team kernel, each verified, the
/// heuristic's marked, and writes them to the JSON report.
#[test]
fn bench_decode_plans_are_verified() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");
    let (ok, stdout, stderr) = attention_bench(&[
        "--attention-heads",
        "8,2",
        "--head-dim",
        "32",
        "--decode-context",
        "300",
        "--decode-plans",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    if stdout.contains("the team kernel does not run here") {
        return;
    }
    assert!(stdout.contains("decode plans at 300 keys"), "{stdout}");
    let plans: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("* t") || l.starts_with("  t"))
        .collect();
    assert!(plans.len() >= 8, "{stdout}");
    assert_eq!(plans.iter().filter(|l| l.starts_with('*')).count(), 1);
    assert!(
        plans.iter().all(|l| l.trim_end().ends_with("yes / yes")),
        "{stdout}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows: Vec<&serde_json::Value> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["op"] == "attention_decode_plan")
        .collect();
    assert_eq!(rows.len(), 2 * plans.len(), "{doc}");
    assert!(rows.iter().all(|r| r["verified"] == true), "{doc}");
    assert_eq!(rows.iter().filter(|r| r["heuristic"] == true).count(), 2);
}

/// A decode context whose KV cache is over the adapter's binding limit is a "cannot run" row,
/// and the bench goes on (exit status 0, the other rows verified).
#[test]
fn bench_decode_over_the_binding_limit_cannot_run() {
    let Some(gpu) = gpu_or_skip() else { return };
    let limit = gpu.capabilities().max_storage_binding;
    if limit > 256 << 20 {
        eprintln!("skipped: a cache over this adapter's {limit}-byte binding limit is too big");
        return;
    }
    // 2 KV heads × head_dim 32 × 4 bytes a position: one position over the limit in f32.
    let context = (limit / (2 * 32 * 4) + 1).to_string();
    let (ok, stdout, stderr) = attention_bench(&[
        "--attention-heads",
        "4,2",
        "--head-dim",
        "32",
        "--decode-context",
        &format!("40,{context}"),
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let f32_row = format!("{context} f32    cannot run: KvCache::new");
    assert!(stdout.contains(&f32_row), "{stdout}");
    // 40 keys in f32 and f16, and the long context in f16 (half the bytes: under the limit).
    assert_eq!(stdout.matches(" yes").count(), 3, "{stdout}");
    assert!(
        stdout.contains(&format!("; {context} f16: teams")),
        "{stdout}"
    );
}

#[test]
fn bench_report_feeds_the_cost_model() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");
    let (ok, stdout, stderr) = pertoken(&[
        "bench",
        "kernels",
        "--no-tune",
        "--sizes",
        "64",
        "--linear",
        "64x40",
        "--rows",
        "1",
        "--prefill",
        "0",
        "--dtypes",
        "f16",
        "--repeats",
        "1",
        "--copy-bytes",
        "65536",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["rows"].as_array().unwrap().len(), 4, "{doc}");
    // The linear row is timed from cache and from memory (copies of w past the caches).
    let linear = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["op"] == "linear")
        .unwrap();
    assert!(linear["cold_seconds"].as_f64().unwrap() > 0.0, "{linear}");
    assert_eq!(linear["verified"], true, "{linear}");
    assert!(stdout.contains("cold GB/s"), "{stdout}");

    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "h100-sxm",
        "--format",
        "json",
        "--bench-report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // A software adapter's rates are a sliver of an H100's peaks: taken as they are.
    let eff = v["efficiency"]["bandwidth"].as_f64().unwrap();
    assert!(eff > 0.0 && eff < 0.01, "{eff}");

    std::fs::write(&report, "{\n  \"rows\": [\n  oops").unwrap();
    let (ok, _, stderr) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "h100-sxm",
        "--bench-report",
        report.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("line 3"), "{stderr}");
}

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
}
