//! GGUF: damaged files are errors that say what is wrong, never panics.

mod common;

use common::*;
use pertoken_formats::FormatError;
use pertoken_formats::gguf::Gguf;
use pertoken_formats::gguf::write::GgufBuilder;
use proptest::prelude::*;

fn parse(bytes: Vec<u8>) -> Result<Gguf, FormatError> {
    Gguf::parse(bytes, "damaged.gguf")
}

fn corrupt_reason(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Err(FormatError::Corrupt { file, reason }) => {
            assert_eq!(file, "damaged.gguf");
            reason
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    assert!(parse(bytes.clone()).is_ok());
    for len in 0..bytes.len() {
        let err = parse(bytes[..len].to_vec()).expect_err(&format!("prefix of {len} bytes"));
        assert!(err.to_string().contains("damaged.gguf"), "{err}");
    }
    let err = parse(bytes[..bytes.len() - 1].to_vec()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FormatError::Truncated { .. }), "{msg}");
    assert!(
        msg.contains("\"f16\"") && msg.contains("re-download"),
        "{msg}"
    );
}

#[test]
fn every_flipped_byte_is_ok_or_an_error() {
    let bytes = sample();
    for pos in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[pos] ^= mask;
            if let Ok(g) = parse(b) {
                for t in g.tensors() {
                    assert!(g.tensor_bytes(t).len() as u64 == t.size_bytes);
                }
            }
        }
    }
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    let mut b = sample();
    put_u64(&mut b, 8, u64::MAX);
    assert!(corrupt_reason(b).contains("announces 18446744073709551615 entries"));
    let mut b = sample();
    put_u64(&mut b, 16, u64::MAX);
    assert!(corrupt_reason(b).contains("metadata count"));
    // array length
    let mut b = sample();
    let at = after_string(&b, "tokens") + 8;
    put_u64(&mut b, at, u64::MAX);
    let reason = corrupt_reason(b);
    assert!(reason.contains("\"tokens\""), "{reason}");
    // string length: the first key's
    let mut b = sample();
    put_u64(&mut b, 24, u64::MAX / 2);
    let err = parse(b).unwrap_err();
    assert!(
        matches!(err, FormatError::Truncated { needed, .. } if needed == u64::MAX / 2),
        "{err}"
    );
    // a string value's length
    let mut b = sample();
    let at = after_string(&b, "general.architecture") + 4;
    put_u64(&mut b, at, 1 << 40);
    assert!(
        parse(b)
            .unwrap_err()
            .to_string()
            .contains("general.architecture")
    );
}

#[test]
fn absurd_offsets_are_refused() {
    for (offset, expect) in [
        (u64::MAX - 31, "data of tensor"),
        (1 << 20, "data of tensor"),
        (16, "multiple of the alignment"),
    ] {
        let mut b = sample();
        let at = tensor_offset_pos(&b, "q8", 2);
        put_u64(&mut b, at, offset);
        let msg = parse(b).unwrap_err().to_string();
        assert!(
            msg.contains(expect) && msg.contains("\"q8\""),
            "{offset}: {msg}"
        );
    }
}

#[test]
fn bad_dims_and_types_are_refused() {
    // Row length not a multiple of the block: [32, 2] -> [16, 4].
    let mut b = sample();
    let at = after_string(&b, "q8") + 4;
    put_u64(&mut b, at, 16);
    put_u64(&mut b, at + 8, 4);
    assert!(corrupt_reason(b).contains("not a multiple of Q8_0's block of 32"));
    // Element count overflow.
    let mut b = sample();
    put_u64(&mut b, at, 1 << 40);
    put_u64(&mut b, at + 8, 1 << 40);
    assert!(corrupt_reason(b).contains("overflows"));
    // n_dims 0 and 9.
    for n in [0, 9] {
        let mut b = sample();
        let at = after_string(&b, "norm.weight");
        put_u32(&mut b, at, n);
        assert!(corrupt_reason(b).contains(&format!("{n} dimensions")));
    }
}

#[test]
fn bad_alignment_is_refused() {
    for bad in [0u32, 3, 48] {
        let mut b = sample();
        let at = after_string(&b, "general.alignment") + 4;
        put_u32(&mut b, at, bad);
        let err = parse(b).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, FormatError::WrongKeyType { .. }), "{msg}");
        assert!(
            msg.contains("general.alignment") && msg.contains(&format!("u32 {bad}")),
            "{msg}"
        );
    }
}

#[test]
fn bad_magic_and_versions_are_refused() {
    let mut b = sample();
    b[..4].copy_from_slice(b"GGML");
    let msg = parse(b).unwrap_err().to_string();
    assert!(
        msg.contains("not a GGUF file") && msg.contains("GGML"),
        "{msg}"
    );
    for version in [0u32, 1, 4, 0x0300_0000] {
        let mut b = sample();
        put_u32(&mut b, 4, version);
        let err = parse(b).unwrap_err();
        assert!(matches!(err, FormatError::UnsupportedVersion { found, .. } if found == version));
    }
    let mut b = sample();
    put_u32(&mut b, 4, 2);
    assert_eq!(parse(b).unwrap().version(), 2);
}

#[test]
fn bad_values_are_refused() {
    // bool of value 2
    assert!(corrupt_reason(one_kv("b", 7, &[2])).contains("bool of value 2"));
    // unknown value type
    assert!(corrupt_reason(one_kv("t", 13, &[0; 8])).contains("value type id 13"));
    // invalid UTF-8 in a value
    let mut payload = 2u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&[0xC3, 0x28]);
    assert!(corrupt_reason(one_kv("s", STRING, &payload)).contains("not valid UTF-8"));
    // invalid UTF-8 in a key
    let mut b = one_kv("k", 0, &[1]);
    b[32] = 0xFF;
    assert!(corrupt_reason(b).contains("not valid UTF-8"));
    // arrays nested too deep
    let mut payload = Vec::new();
    for _ in 0..6 {
        payload.extend_from_slice(&ARRAY.to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
    }
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    assert!(corrupt_reason(one_kv("deep", ARRAY, &payload)).contains("nests arrays"));
}

#[test]
fn duplicates_are_refused() {
    let mut dup_key = GgufBuilder::new();
    dup_key.set("aa", 1u8).set("bb", 2u8);
    let mut bytes = dup_key.to_bytes().unwrap();
    let at = find(&bytes, b"bb");
    bytes[at..at + 2].copy_from_slice(b"aa");
    assert!(corrupt_reason(bytes).contains("\"aa\" appears twice"));

    let mut dup = GgufBuilder::new();
    dup.add_f32("t1", &[1], &[0.0]).add_f32("t2", &[1], &[0.0]);
    let mut bytes = dup.to_bytes().unwrap();
    let at = find(&bytes, b"t2");
    bytes[at..at + 2].copy_from_slice(b"t1");
    assert!(corrupt_reason(bytes).contains("tensor name \"t1\" appears twice"));
}

#[test]
fn missing_padding_is_truncation() {
    let mut b = GgufBuilder::new();
    b.set("k", 1u8);
    let bytes = b.to_bytes().unwrap();
    assert_eq!(bytes.len() % 32, 0);
    assert!(parse(bytes.clone()).is_ok());
    let unpadded = 24 + 8 + 1 + 4 + 1;
    let err = parse(bytes[..unpadded].to_vec()).unwrap_err();
    assert!(err.to_string().contains("padding"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_mutations_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut b = sample();
        for (i, v) in &edits {
            let i = i.index(b.len());
            b[i] = *v;
        }
        if do_cut {
            b.truncate(cut.index(b.len() + 1));
        }
        if let Ok(g) = parse(b) {
            for t in g.tensors() {
                prop_assert_eq!(g.tensor_bytes(t).len() as u64, t.size_bytes);
            }
        }
    }
}
