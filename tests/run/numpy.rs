//! The numpy snippet of docs/run.md, where numpy is installed.

use std::process::Command;

use pertoken::gpu::testing::gpu_or_skip;

/// The numpy snippet of docs/run.md, run as it stands, where numpy is installed (`PERTOKEN_PYTHON`
/// names the Python, else `python3`).
#[test]
fn the_documented_numpy_snippet_reproduces_numpy() {
    let python = std::env::var("PERTOKEN_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_numpy = Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        println!(
            "skipped: numpy is not installed for {python} (set PERTOKEN_PYTHON to a Python with numpy)"
        );
        return;
    }
    if gpu_or_skip().is_none() {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/run.md")).unwrap();
    let section = &readme[readme
        .find("## Check a kernel with numpy")
        .expect("docs/run.md's section")..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .args(["-c", snippet])
        .current_dir(dir.path())
        .env("PERTOKEN", env!("CARGO_BIN_EXE_pertoken"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout.matches("check: verified").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("numpy: max abs err").count(), 2, "{stdout}");
    println!("{stdout}");
}
