//! `pertoken cost`: the cost model on catalog hardware, no GPU needed.

use super::pertoken;

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

#[test]
fn cost_splits_a_moe_by_experts_and_runs_a_finite_queue() {
    let moe = [
        "cost",
        "--model",
        "qwen3-235b-a22b",
        "--hardware",
        "h100-sxm",
        "--devices",
        "8",
        "--interconnect",
        "nvlink4",
        "--weights",
        "fp8",
        "--compute-dtype",
        "fp8",
        "--kv-bytes",
        "1",
        "--isl",
        "128",
        "--osl",
        "2048",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = moe.iter().chain(extra).copied().collect();
        pertoken(&args)
    };
    let (ok, tensor, stderr) = run(&[]);
    assert!(ok, "{stderr}");
    assert!(tensor.contains("held and read on 2 devices"), "{tensor}");
    let (ok, expert, stderr) = run(&["--split", "expert", "--requests", "3000"]);
    assert!(ok, "{stderr}");
    assert!(
        expert.contains("expert parallel over 8 devices")
            && expert.contains("a finite run of 3000 requests"),
        "{expert}"
    );
    // A dense model has no experts to spread.
    let (ok, _, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--devices",
        "2",
        "--interconnect",
        "nvlink4",
        "--split",
        "expert",
    ]);
    assert!(!ok && stderr.contains("--split tensor"), "{stderr}");
}

#[test]
fn cost_compares_parts_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("parts.svg");
    let json = dir.path().join("parts.json");
    let args = [
        "cost",
        "--model",
        "llama-3.1-70b",
        "--hardware",
        "h100-sxm,trn2,tpu-v6e,b300",
        "--isl",
        "1000",
        "--osl",
        "1000",
        "--max-tpot-ms",
        "50",
        "--plot",
        svg.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = pertoken(&args);
    assert!(ok, "{stdout}{stderr}");
    // Ranked, each part's own stack, an unpriced part last and said so, and why the winner wins.
    assert!(stdout.contains(" 1 ") && stdout.contains("neuron") && stdout.contains("vllm-tpu"));
    assert!(stdout.contains("b300: no price sourced"), "{stdout}");
    assert!(stdout.contains(" wins at $"), "{stdout}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("trn2"),
        "{}",
        &text[..200]
    );
    let mut with_json = args.to_vec();
    with_json.truncate(args.len() - 2);
    with_json.extend(["--format", "json"]);
    let (ok, stdout, stderr) = pertoken(&with_json);
    assert!(ok, "{stderr}");
    std::fs::write(&json, &stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let parts = v["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 4);
    // Every configuration is listed with why it lost; a multi-chip one names the part's link.
    let h100 = parts.iter().find(|p| p["hardware"] == "h100-sxm").unwrap();
    let kinds: Vec<&str> = h100["considered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"]["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"winner") && kinds.contains(&"memory") && kinds.contains(&"cost"));
    let tpu = parts.iter().find(|p| p["hardware"] == "tpu-v6e").unwrap();
    assert!(
        tpu["considered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["interconnect"] == "tpu-ici-v6e")
    );

    // Options that belong to one part are refused, and so is a comparison without a load.
    let (ok, _, stderr) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "h100-sxm,h200",
        "--devices",
        "2",
        "--isl",
        "8",
        "--osl",
        "8",
    ]);
    assert!(
        !ok && stderr.contains("--devices applies to one part"),
        "{stderr}"
    );
    let (ok, _, stderr) = pertoken(&["cost", "--model", "tiny", "--hardware", "h100-sxm,h200"]);
    assert!(!ok && stderr.contains("--isl and --osl"), "{stderr}");
    let (ok, _, stderr) = pertoken(&[
        "cost",
        "--model",
        "tiny",
        "--hardware",
        "h100-sxm,h200",
        "--isl",
        "8",
        "--osl",
        "8",
        "--price-kind",
        "cheap",
    ]);
    assert!(!ok && stderr.contains("expected one of"), "{stderr}");
}

#[test]
fn cost_uses_each_parts_own_link_and_a_bandwidth_alone() {
    // A multi-chip Trainium deployment names no interconnect: NeuronLink-v3 by default.
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-70b",
        "--hardware",
        "trn2",
        "--devices",
        "16",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("neuronlink-v3"), "{stdout}");
    // A PCIe card given only a bus bandwidth is not refused.
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "a100-80gb-pcie",
        "--devices",
        "2",
        "--interconnect-gbs",
        "32",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("pcie4"), "{stdout}");
    // A part with no usual link, and only a bandwidth: that bandwidth with a PCIe ring's latency.
    let (ok, stdout, stderr) = pertoken(&[
        "cost",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "m2-max",
        "--devices",
        "2",
        "--interconnect-gbs",
        "32",
        "--compute-dtype",
        "fp16",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("--interconnect-gbs 32"), "{stdout}");
}

#[cfg(unix)]
#[test]
fn a_reader_that_closes_the_pipe_ends_the_listing_quietly() {
    // `pertoken models | head -1`: the reader closes the pipe before the listing is written.
    // The process must end without a panic on stderr (a closed pipe is SIGPIPE's to handle).
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_pertoken"))
        .args(["models"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
