//! `pertoken bench --serve`: a workload under continuous batching, end to end.

use super::{pertoken, pertoken_in};
use pertoken::gpu::testing::gpu_or_skip;

#[test]
fn serve_runs_each_load_verified_priced_and_predicted() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (json, csv, svg) = (
        dir.path().join("serve.json"),
        dir.path().join("serve.csv"),
        dir.path().join("serve.svg"),
    );
    let cache = dir.path().join("cache");
    // 4 KV blocks of 4 positions cannot hold 3 requests of up to 15 positions at once: the
    // scheduler preempts, and the requests stay verified.
    let (ok, stdout, stderr) = pertoken_in(
        &[
            "bench",
            "--serve",
            "-m",
            "tiny",
            "--weights",
            "q4_1",
            "--isl",
            "4-10",
            "--osl",
            "2-5",
            "--concurrency",
            "1,3",
            "--requests",
            "6",
            "--block-size",
            "4",
            "--kv-blocks",
            "5",
            "--hardware",
            "h100-sxm",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        &[("PERTOKEN_CACHE_DIR", &cache)],
    );
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| tiny")).collect();
    assert_eq!(rows.len(), 4, "two tables of two runs: {stdout}");
    assert!(
        rows[0].contains(" c1 ") && rows[1].contains(" c3 "),
        "{stdout}"
    );
    assert!(
        rows[..2].iter().all(|r| r.ends_with("| yes      |")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "verified tiny c3: requests 0 and 5 equal to each run alone and to the f64 reference"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("cost model for tiny, calibrated"),
        "{stdout}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["kind"], "serve");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let c3 = &runs[1];
    assert_eq!(c3["report"]["requests"], 6);
    assert_eq!(c3["verified"], true);
    assert!(c3["report"]["preemptions"].as_u64().unwrap() > 0, "{c3}");
    assert!(c3["report"]["blocks_peak"].as_u64().unwrap() <= 5, "{c3}");
    assert!(c3["usd_per_m_output"].as_f64().unwrap() > 0.0, "{c3}");
    assert!(
        c3["predicted"]["output_tps"].as_f64().unwrap() > 0.0,
        "{c3}"
    );
    assert!(!c3["steps"].as_array().unwrap().is_empty());
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 3);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));

    // The cost model calibrated from the serving report.
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "h100-sxm",
        "--isl",
        "8",
        "--osl",
        "4",
        "--bench-report",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("a serving run's"), "{stdout}");
}

#[test]
fn serve_refuses_what_cannot_run_before_running() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--kv-blocks", "1", "--isl", "40"],
            "cannot hold one request",
        ),
        (&["--requests", "0"], "measures nothing"),
        (&["--isl", "0"], "--isl"),
        (&["--osl", "5-2"], "--osl"),
        (&["--concurrency", "0"], "concurrency of 0"),
        (&["--rate=-1"], "positive number"),
        (&["--kv-type", "q8_0"], "f16 or f32"),
        (&["-p", "8"], "cannot be used with"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["bench", "--serve", "-m", "tiny", "--no-verify"];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = pertoken(&args);
        assert!(!ok, "{extra:?} ran: {stdout}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(
            !stdout.contains("| tiny"),
            "{extra:?} measured something: {stdout}"
        );
    }
}
