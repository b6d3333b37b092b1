//! The `pertoken` binary, end to end.

use std::process::Command;

use pertoken::gpu::testing::gpu_or_skip;

mod cost;
mod kernels;
mod model;
mod serve;

pub(crate) fn pertoken(args: &[&str]) -> (bool, String, String) {
    pertoken_in(args, &[])
}

/// [`pertoken`] with environment variables set.
pub(crate) fn pertoken_in(
    args: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (bool, String, String) {
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
    // IQ4_NL is a GGUF type pertoken does not compute with: the error lists those it does.
    let (ok, _, stderr) = pertoken(&["bench", "--weights", "iq4_nl"]);
    assert!(
        !ok && stderr.contains("iq4_nl") && stderr.contains("q6_k"),
        "{stderr}"
    );
}
