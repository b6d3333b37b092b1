//! `pertoken run` end to end: real `.npy` files written here (float32, float16, float64), the
//! binary run on them, its output read back and checked against the reference; every bad input
//! the issue lists; and, where numpy is installed, the numpy snippet of docs/run.md.

mod errors;
mod numpy;
mod ops;

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{ArrayD, IxDyn};

fn pertoken(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pertoken"))
        .args(args)
        .output()
        .expect("run pertoken");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    (out.status.success(), stdout, stderr)
}

/// `pertoken run` with `--in` for each `(name, file)`, in `dir`.
fn run(dir: &Path, op: &str, inputs: &[(&str, &str)], extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["run".to_owned(), op.to_owned()];
    for (name, file) in inputs {
        args.push("--in".into());
        args.push(format!("{name}={}", dir.join(file).display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pertoken(&args)
}

/// Runs and expects success with a verified check; returns the output file's shape and values.
fn run_ok(
    dir: &Path,
    op: &str,
    inputs: &[(&str, &str)],
    extra: &[&str],
) -> (Vec<usize>, Vec<f32>, String) {
    let out = dir.join("out.npy");
    let mut args = vec!["--out", out.to_str().unwrap(), "--check"];
    args.extend(extra);
    let (ok, stdout, stderr) = run(dir, op, inputs, &args);
    assert!(
        ok,
        "{op} {inputs:?} {extra:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("check: verified"), "{stdout}");
    for what in ["max abs err", "max rel err", "NMSE"] {
        assert!(stdout.contains(what), "{stdout}");
    }
    let a: ArrayD<f32> = ndarray_npy::read_npy(&out).expect("the output is a float32 .npy");
    (a.shape().to_vec(), a.iter().copied().collect(), stdout)
}

fn save_f32(dir: &Path, file: &str, shape: &[usize], v: &[f32]) {
    let a = ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap();
    ndarray_npy::write_npy(dir.join(file), &a).unwrap();
}

fn save_f64(dir: &Path, file: &str, shape: &[usize], v: &[f64]) {
    let a = ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap();
    ndarray_npy::write_npy(dir.join(file), &a).unwrap();
}

/// An `.npy` file written byte by byte (version 1.0), for dtypes ndarray-npy does not write
/// (float16) and for damaged files.
fn save_raw(dir: &Path, file: &str, descr: &str, shape: &[usize], data: &[u8]) -> PathBuf {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes.extend(data);
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Saves values rounded to f16 as a float16 file; returns the values it holds.
fn save_f16(dir: &Path, file: &str, shape: &[usize], v: &[f32]) -> Vec<f32> {
    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
    let bytes: Vec<u8> = h.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect();
    save_raw(dir, file, "<f2", shape, &bytes);
    h.iter().map(|x| x.to_f32()).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn matmul_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let a = ndarray::ArrayView2::from_shape((m, k), a).unwrap();
    let b = ndarray::ArrayView2::from_shape((k, n), b).unwrap();
    pertoken::reference::matmul(a, b)
        .unwrap()
        .into_iter()
        .collect()
}
