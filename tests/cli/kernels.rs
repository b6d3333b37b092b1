//! `pertoken bench kernels`: each kernel alone, verified, tuned, and its report read by the cost model.

use super::{pertoken, pertoken_in};
use pertoken::gpu::testing::gpu_or_skip;

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
