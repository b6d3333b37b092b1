//! The reference's dequantization against gguf-py's (PyPI `gguf`, the library llama.cpp's own
//! tools use), on random blocks of every weight type: `tests/data/ggufpy_dequant.txt`, written
//! by `scripts/ggufpy-dequant-vectors.py`. Values must match bit for bit.

use pertoken_reference::{QuantFormat, dequantize};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn every_type_dequantizes_as_gguf_py_does() {
    let text = include_str!("data/ggufpy_dequant.txt");
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = Vec::new();
    for pair in lines.chunks(2) {
        let (name, blocks) = pair[0].split_once(' ').expect("a type and its blocks");
        let (name2, values) = pair[1].split_once(' ').expect("a type and its values");
        assert_eq!(name, name2);
        let format = QuantFormat::from_name(&name.to_lowercase()).expect("a known type");
        let want: Vec<f32> = hex(values)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let got = dequantize(format, &hex(blocks)).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{name} value {i}: {g} vs gguf-py {w}"
            );
        }
        seen.push(format);
    }
    assert_eq!(seen, QuantFormat::ALL, "every format has vectors");
}
