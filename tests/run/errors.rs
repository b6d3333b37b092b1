//! Every bad input the issue lists is an error that names the file and the problem, never a
//! panic. All of them are found before the GPU is opened: these tests need no adapter.

use std::path::Path;

use pertoken::reference::random::uniform_f32;

use super::{pertoken, save_f16, save_f32, save_f64, save_raw};

/// Runs `pertoken run OP NAME=FILE ... [--options]` in `d` (each `NAME=FILE` becomes
/// `--in NAME=d/FILE`, `--check` is added) and expects it to fail with every phrase of `says`
/// in its error.
fn refuses(d: &Path, command: &str, says: &[&str]) {
    let mut args = vec!["run".to_owned(), "--check".to_owned()];
    for w in command.split_whitespace() {
        match w.split_once('=') {
            Some((name, file)) if !w.starts_with('-') => {
                args.push("--in".into());
                args.push(format!("{name}={}", d.join(file).display()));
            }
            _ => args.push(w.into()),
        }
    }
    // The op comes first.
    args.swap(1, 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = pertoken(&args);
    assert!(!ok, "{command} succeeded:\n{stdout}");
    for s in says {
        assert!(stderr.contains(s), "{command}: {s:?} not in:\n{stderr}");
    }
}

/// A folder with a: [4, 5] and b: [5, 3] (float32) and v1: [20].
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save_f32(d, "a.npy", &[4, 5], &uniform_f32(21, 20));
    save_f32(d, "b.npy", &[5, 3], &uniform_f32(22, 15));
    save_f32(d, "v1.npy", &[20], &uniform_f32(23, 20));
    dir
}

#[test]
fn missing_damaged_and_foreign_files() {
    let dir = folder();
    let d = dir.path();
    refuses(d, "matmul a=nope.npy b=b.npy", &["nope.npy", "cannot open"]);
    std::fs::write(d.join("text.npy"), "a,b\n1,2\n").unwrap();
    refuses(
        d,
        "matmul a=text.npy b=b.npy",
        &["text.npy", "not a readable .npy file"],
    );
    let full = std::fs::read(d.join("a.npy")).unwrap();
    std::fs::write(d.join("head.npy"), &full[..20]).unwrap();
    refuses(
        d,
        "matmul a=head.npy b=b.npy",
        &["head.npy", "truncated", "ends inside its .npy header"],
    );
    std::fs::write(d.join("cut.npy"), &full[..full.len() - 7]).unwrap();
    refuses(
        d,
        "matmul a=cut.npy b=b.npy",
        &[
            "cut.npy",
            "truncated",
            "shape [4, 5] (80 bytes of data)",
            "73 bytes",
        ],
    );
    std::fs::write(d.join("long.npy"), [&full[..], &[0u8; 4]].concat()).unwrap();
    refuses(
        d,
        "matmul a=a.npy b=long.npy",
        &["long.npy", "4 bytes past the end"],
    );
    // A header claiming far more than the file holds is truncated, not a huge allocation.
    save_raw(d, "claims.npy", "<f4", &[1 << 20, 1 << 20], &[0; 16]);
    refuses(
        d,
        "matmul a=claims.npy b=b.npy",
        &["claims.npy", "truncated"],
    );
}

#[test]
fn unsupported_dtypes() {
    let dir = folder();
    let d = dir.path();
    save_raw(d, "int.npy", "<i4", &[4, 5], &[0; 80]);
    refuses(
        d,
        "matmul a=int.npy b=b.npy",
        &["int.npy", "int32", "float32, float16 or float64"],
    );
    save_raw(d, "c.npy", "<c8", &[4, 5], &[0; 160]);
    refuses(d, "matmul a=c.npy b=b.npy", &["c.npy", "complex64"]);
    save_raw(d, "bool.npy", "|b1", &[4, 5], &[0; 20]);
    refuses(d, "matmul a=bool.npy b=b.npy", &["bool.npy", "bool"]);
    refuses(
        d,
        "embedding table=a.npy ids=b.npy",
        &["b.npy", "float32", "integers"],
    );
    // Formats an op or a shape cannot take.
    refuses(
        d,
        "matmul a=a.npy b=b.npy --dtype q4_0",
        &["linear", "x · wᵀ"],
    );
    refuses(
        d,
        "linear x=a.npy w=a.npy --dtype q4_0",
        &["a.npy", "blocks of 32", "which is 5"],
    );
    refuses(d, "rmsnorm x=a.npy w=v1.npy --dtype f16", &["--dtype f32"]);
    refuses(
        d,
        "attention q=a.npy k=a.npy v=a.npy --dtype q8_0",
        &["f32 or f16"],
    );
}

#[test]
fn wrong_ranks() {
    let dir = folder();
    let d = dir.path();
    refuses(
        d,
        "matmul a=v1.npy b=b.npy",
        &["v1.npy", "[20]", "[M, K] or [B, M, K]"],
    );
    refuses(
        d,
        "attention q=a.npy k=a.npy v=a.npy",
        &["a.npy", "[n_heads, q_len, head_dim]"],
    );
    refuses(d, "linear x=a.npy w=v1.npy", &["v1.npy", "[N, K]"]);
    save_raw(d, "scalar.npy", "<f4", &[], &[0; 4]);
    refuses(
        d,
        "linear x=scalar.npy w=a.npy",
        &["scalar.npy", "at least 1-D"],
    );
    refuses(d, "rope x=a.npy", &["a.npy", "[L, n_heads, head_dim]"]);
    refuses(
        d,
        "embedding table=v1.npy ids=v1.npy",
        &["v1.npy", "[V, D]"],
    );
    save_raw(d, "empty.npy", "<f4", &[0, 5], &[]);
    refuses(
        d,
        "matmul a=empty.npy b=b.npy",
        &["empty.npy", "zero-sized"],
    );
}

#[test]
fn mismatched_shapes() {
    let dir = folder();
    let d = dir.path();
    refuses(
        d,
        "matmul a=a.npy b=a.npy",
        &["a.npy", "rows must equal the columns of a"],
    );
    save_f32(d, "ab.npy", &[2, 4, 5], &uniform_f32(24, 40));
    save_f32(d, "bb.npy", &[3, 5, 3], &uniform_f32(25, 45));
    refuses(d, "matmul a=ab.npy b=bb.npy", &["bb.npy", "batch differs"]);
    save_f32(d, "q.npy", &[3, 2, 8], &uniform_f32(26, 48));
    save_f32(d, "k.npy", &[2, 4, 8], &uniform_f32(27, 64));
    save_f32(d, "k6.npy", &[1, 4, 6], &uniform_f32(28, 24));
    save_f32(d, "k1.npy", &[1, 4, 8], &uniform_f32(29, 32));
    save_f32(d, "q9.npy", &[1, 9, 8], &uniform_f32(30, 72));
    refuses(
        d,
        "attention q=q.npy k=k.npy v=k.npy",
        &["k.npy", "multiple of its 2 KV heads"],
    );
    refuses(
        d,
        "attention q=q.npy k=k6.npy v=k6.npy",
        &["k6.npy", "head_dim"],
    );
    refuses(
        d,
        "attention q=q.npy k=k1.npy v=k.npy",
        &["k.npy", "v must have k's shape"],
    );
    refuses(
        d,
        "attention q=q9.npy k=k1.npy v=k1.npy --causal",
        &["q9.npy", "q_len ≤ kv_len"],
    );
    refuses(
        d,
        "linear x=a.npy w=b.npy",
        &["b.npy", "columns must equal x's last dimension"],
    );
    save_f32(d, "w35.npy", &[3, 5], &uniform_f32(31, 15));
    refuses(
        d,
        "linear x=a.npy w=w35.npy bias=v1.npy",
        &["v1.npy", "[N] = [3]"],
    );
    refuses(d, "rmsnorm x=a.npy w=v1.npy", &["v1.npy", "[D] = [5]"]);
    refuses(d, "silu-mul g=a.npy u=b.npy", &["b.npy", "g's shape"]);
    save_f32(d, "odd.npy", &[2, 1, 5], &uniform_f32(32, 10));
    refuses(d, "rope x=odd.npy", &["odd.npy", "even"]);
}

#[test]
fn nan_inf_and_unrepresentable_values_say_where() {
    let dir = folder();
    let d = dir.path();
    let mut nan = uniform_f32(33, 20);
    nan[7] = f32::NAN;
    save_f32(d, "nan.npy", &[4, 5], &nan);
    refuses(
        d,
        "matmul a=nan.npy b=b.npy",
        &["nan.npy", "NaN at element 7 (index [1, 2])"],
    );
    let mut inf = uniform_f32(34, 15);
    inf[14] = f32::NEG_INFINITY;
    save_f16(d, "inf.npy", &[5, 3], &inf);
    refuses(
        d,
        "matmul a=a.npy b=inf.npy",
        &["inf.npy", "-inf at element 14 (index [4, 2])"],
    );
    let mut huge = vec![0.5f64; 20];
    huge[3] = 1e300;
    save_f64(d, "huge.npy", &[4, 5], &huge);
    refuses(
        d,
        "matmul a=huge.npy b=b.npy",
        &["huge.npy", "index [0, 3]", "float32's range"],
    );
    let mut big = uniform_f32(35, 15);
    big[1] = 1e5;
    save_f32(d, "big.npy", &[5, 3], &big);
    refuses(
        d,
        "matmul a=a.npy b=big.npy --dtype f16",
        &["big.npy", "index [0, 1]", "--dtype f16 cannot hold"],
    );
    let ids = |v: [i64; 2]| v.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>();
    save_raw(d, "ids.npy", "<i8", &[2], &ids([5, 1]));
    refuses(
        d,
        "embedding table=a.npy ids=ids.npy",
        &["ids.npy", "holds 5 at element 0", "(0..4)"],
    );
    save_raw(d, "neg.npy", "<i8", &[2], &ids([1, -1]));
    refuses(
        d,
        "embedding table=a.npy ids=neg.npy",
        &["neg.npy", "holds -1 at element 1"],
    );
}

#[test]
fn inputs_and_options_the_op_does_not_take() {
    let dir = folder();
    let d = dir.path();
    refuses(d, "matmul a=a.npy", &["needs --in b=FILE.npy"]);
    refuses(
        d,
        "matmul a=a.npy b=b.npy x=b.npy",
        &["no input \"x\"", "a=[M, K]"],
    );
    refuses(d, "matmul a=a.npy a=a.npy b=b.npy", &["given twice"]);
    refuses(
        d,
        "matmul a=a.npy b=b.npy --causal",
        &["--causal", "attention"],
    );
    refuses(
        d,
        "attention q=a.npy k=a.npy v=a.npy --eps 1e-3",
        &["--eps", "rmsnorm"],
    );
    refuses(d, "rmsnorm x=a.npy w=b.npy --eps -1", &["--eps"]);
    let (ok, _, stderr) = pertoken(&["run", "matmul", "--in", "a=a.npy", "--in", "b=b.npy"]);
    assert!(!ok && stderr.contains("nothing to do"), "{stderr}");
    let (ok, _, stderr) = pertoken(&["run", "matmul", "--in", "a.npy"]);
    assert!(!ok && stderr.contains("NAME=FILE.npy"), "{stderr}");
}
