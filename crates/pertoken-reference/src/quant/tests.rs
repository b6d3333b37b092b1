use half::f16;

use super::*;
use crate::random::uniform_f32;

#[test]
fn q8_0_layout_by_hand() {
    let mut v = [0.0f32; QK];
    v[0] = 1.27;
    v[1] = -0.635;
    v[31] = 0.01;
    let bytes = quantize(QuantFormat::Q8_0, &v).unwrap();
    assert_eq!(bytes.len(), 34);
    let d = f16::from_le_bytes([bytes[0], bytes[1]]);
    assert_eq!(d, f16::from_f32(0.01));
    assert_eq!(bytes[2] as i8, 127);
    assert_eq!(bytes[3] as i8, -64); // −0.635 / 0.01 = −63.5, rounded away from zero
    assert_eq!(bytes[33] as i8, 1);
    assert_eq!(bytes[4], 0);
}

#[test]
fn q4_0_layout_by_hand() {
    let mut v = [0.0f32; QK];
    v[0] = -0.8; // largest magnitude: d = −0.8 / −8 = 0.1, maps to nibble 0
    v[16] = 0.7; // 0.7 / 0.1 + 8.5 = 15.5 → 15
    v[1] = 0.05; // 0.5 + 8.5 = 9
    let bytes = quantize(QuantFormat::Q4_0, &v).unwrap();
    assert_eq!(bytes.len(), 18);
    assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]), f16::from_f32(0.1));
    assert_eq!(bytes[2], (15 << 4));
    assert_eq!(bytes[3], (8 << 4) | 9);
    let back = dequantize(QuantFormat::Q4_0, &bytes).unwrap();
    let d = f16::from_f32(0.1).to_f32();
    assert_eq!(back[0], -8.0 * d);
    assert_eq!(back[16], 7.0 * d);
    assert_eq!(back[1], d);
    assert_eq!(back[17], 0.0);
}

#[test]
fn q4_1_layout_by_hand() {
    let mut v = [0.25f32; QK];
    v[0] = -0.5; // the minimum: nibble 0
    v[16] = 1.0; // the maximum: d = 1.5 / 15 = 0.1, nibble 15
    v[1] = 0.26; // (0.26 + 0.5) / 0.1 + 0.5 = 8.1 → 8
    let bytes = quantize(QuantFormat::Q4_1, &v).unwrap();
    assert_eq!(bytes.len(), 20);
    assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]), f16::from_f32(0.1));
    assert_eq!(
        f16::from_le_bytes([bytes[2], bytes[3]]),
        f16::from_f32(-0.5)
    );
    assert_eq!(bytes[4], 15 << 4);
    assert_eq!(bytes[5], (8 << 4) | 8);
    let back = dequantize(QuantFormat::Q4_1, &bytes).unwrap();
    let (d, m) = (f16::from_f32(0.1).to_f32(), f16::from_f32(-0.5).to_f32());
    assert_eq!(back[0], m);
    assert_eq!(back[16], 15.0 * d + m);
    assert_eq!(back[1], 8.0 * d + m);
}

#[test]
fn q5_0_layout_by_hand() {
    let mut v = [0.0f32; QK];
    v[0] = -1.6; // largest magnitude: d = −1.6 / −16 = 0.1, maps to 0
    v[17] = 1.5; // 15 + 16.5 = 31.5 → 31: nibble 15 in byte 1's high half, bit 17 of qh
    v[2] = 0.05; // 0.5 + 16.5 = 17: nibble 1, bit 2 of qh
    let bytes = quantize(QuantFormat::Q5_0, &v).unwrap();
    assert_eq!(bytes.len(), 22);
    assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]), f16::from_f32(0.1));
    let qh = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    // Every other value is 0 → 16: its fifth bit set.
    assert_eq!(qh, !1u32);
    assert_eq!(bytes[6], 0);
    assert_eq!(bytes[7], 15 << 4);
    assert_eq!(bytes[8], 1);
    let back = dequantize(QuantFormat::Q5_0, &bytes).unwrap();
    let d = f16::from_f32(0.1).to_f32();
    assert_eq!(back[0], -16.0 * d);
    assert_eq!(back[17], 15.0 * d);
    assert_eq!(back[2], d);
    assert_eq!(back[3], 0.0);
}

#[test]
fn q5_1_fifth_bit_by_hand() {
    // d = 1, m = −3; value j is q_j − 3, q_j = j: qh holds bit 4 of each j.
    let mut b = vec![0u8; 24];
    b[0..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
    b[2..4].copy_from_slice(&f16::from_f32(-3.0).to_le_bytes());
    b[4..8].copy_from_slice(&0xffff_0000u32.to_le_bytes());
    for j in 0..16 {
        b[8 + j] = (j as u8) | ((j as u8) << 4);
    }
    let back = dequantize(QuantFormat::Q5_1, &b).unwrap();
    for (j, &y) in back.iter().enumerate() {
        assert_eq!(y, j as f32 - 3.0, "value {j}");
    }
}

#[test]
fn k_scales_unpack_as_get_scale_min_k4() {
    // sc_j = 10 + j + 32·(j ≥ 4), m_j = 40 + j: every bit of the 12 bytes means something.
    let sc: [u8; 8] = core::array::from_fn(|j| 10 + j as u8 + if j >= 4 { 32 } else { 0 });
    let m: [u8; 8] = core::array::from_fn(|j| 40 + j as u8);
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4);
    }
    // By hand for j = 5: sc5 = 47 = 0b10_1111 → low nibble in byte 9, bits 4-5 (0b10) atop byte 1.
    assert_eq!(s[9] & 0xf, 0b1111);
    assert_eq!(s[1] >> 6, 0b10);
    for j in 0..8 {
        assert_eq!(kquant::scale_min(&s, j), (sc[j], m[j]), "sub-block {j}");
    }
}

#[test]
fn q4_k_values_by_hand() {
    // d = 0.5, dmin = 0.25; sub-block s has sc = s + 1, m = 2s; value (s, l) has q = (l + s) % 16.
    let mut b = vec![0u8; 144];
    b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
    b[2..4].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
    let sc: [u8; 8] = core::array::from_fn(|s| s as u8 + 1);
    let m: [u8; 8] = core::array::from_fn(|s| 2 * s as u8);
    for j in 0..4 {
        b[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        b[8 + j] = m[j] | ((m[j + 4] >> 4) << 6);
        b[12 + j] = (sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4);
    }
    let q = |s: usize, l: usize| ((l + s) % 16) as u8;
    for i in 0..4 {
        for l in 0..32 {
            b[16 + 32 * i + l] = q(2 * i, l) | (q(2 * i + 1, l) << 4);
        }
    }
    let back = dequantize(QuantFormat::Q4_K, &b).unwrap();
    for (e, &y) in back.iter().enumerate() {
        let (s, l) = (e / 32, e % 32);
        let want = 0.5 * (s + 1) as f32 * f32::from(q(s, l)) - 0.25 * (2 * s) as f32;
        assert_eq!(y, want, "value {e}");
    }
}

#[test]
fn q6_k_signed_scales_and_negative_d_by_hand() {
    // d = −0.5 (negative, as in real files); scale g = g − 8 (signed); value e has q = e % 64.
    let mut b = vec![0u8; 210];
    for e in 0..256 {
        let v = (e % 64) as u8;
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        b[64 * h + 32 * (k % 2) + l] |= (v & 15) << (4 * (k / 2));
        b[128 + 32 * h + l] |= (v >> 4) << (2 * k);
    }
    for g in 0..16 {
        b[192 + g] = (g as i8 - 8) as u8;
    }
    b[208..210].copy_from_slice(&f16::from_f32(-0.5).to_le_bytes());
    let back = dequantize(QuantFormat::Q6_K, &b).unwrap();
    for (e, &y) in back.iter().enumerate() {
        let want = -0.5 * ((e / 16) as f32 - 8.0) * ((e % 64) as f32 - 32.0);
        assert_eq!(y, want, "value {e}");
    }
}

#[test]
fn round_trip_error_is_bounded_by_the_step_and_the_scale_rounding() {
    let v = uniform_f32(3, 256 * 8);
    for format in QuantFormat::ALL {
        let bytes = quantize(format, &v).unwrap();
        assert_eq!(
            bytes.len(),
            v.len() / format.block_elems() * format.block_bytes()
        );
        let back = dequantize(format, &bytes).unwrap();
        for (block, got) in v.chunks(QK).zip(back.chunks(QK)) {
            let amax = block.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
            // Half a step from rounding (a whole step for Q4_0 and Q5_0, whose ranges clip
            // values of the sign opposite to the largest one a step short), plus the f16
            // rounding of the scale (relative 2⁻¹¹) times the largest quantized magnitude.
            let (step, qmax, rounding) = match format {
                QuantFormat::Q8_0 => (amax / 127.0, 127.0, 0.5),
                QuantFormat::Q4_0 => (amax / 8.0, 8.0, 1.0),
                QuantFormat::Q5_0 => (amax / 16.0, 16.0, 1.0),
                // Steps of range / 15 ≤ 2·amax / 15; the minimum's f16 rounding adds
                // at most amax / 2048 (counted as one more unit of qmax).
                QuantFormat::Q4_1 => (2.0 * amax / 15.0, 16.0, 0.5),
                QuantFormat::Q5_1 => (2.0 * amax / 31.0, 32.0, 0.5),
                // The K-quants' steps are 6- or 8-bit multiples of the block's largest step,
                // rounded up: a step may grow by one unit of the largest (the block's amax ≤ 1
                // over 63·15 or 127·31), and the minimum's level by half a unit.
                QuantFormat::Q4_K => (2.0 * amax / 15.0 + 2.0 / (63.0 * 15.0), 16.0, 1.0),
                QuantFormat::Q5_K => (2.0 * amax / 31.0 + 2.0 / (63.0 * 31.0), 32.0, 1.0),
                QuantFormat::Q6_K => (amax / 31.0 + 1.0 / (127.0 * 31.0), 32.0, 1.0),
            };
            // Q4_K's and Q5_K's minimums are levels of the block's largest / 63: half a level
            // (values here lie in [−1, 1)) may clip at either end of the range.
            let min_level = match format {
                QuantFormat::Q4_K | QuantFormat::Q5_K => 0.5 / 63.0,
                _ => 0.0,
            };
            let bound = step * (rounding + qmax / 2048.0) + min_level + 1e-6;
            for (&x, &y) in block.iter().zip(got) {
                assert!(
                    (x - y).abs() <= bound,
                    "{format:?}: {x} vs {y} (bound {bound})"
                );
            }
        }
    }
}

#[test]
fn q6_k_quantizes_to_scales_of_both_signs() {
    // Kernels must sign-extend the scales and d: the quantizer gives them both signs.
    let v = uniform_f32(9, 256 * 4);
    let bytes = quantize(QuantFormat::Q6_K, &v).unwrap();
    let scales: Vec<i8> = bytes
        .chunks(210)
        .flat_map(|b| b[192..208].iter().map(|&s| s as i8))
        .collect();
    assert!(scales.iter().any(|&s| s < 0) && scales.iter().any(|&s| s > 0));
}

#[test]
fn names_round_trip() {
    for format in QuantFormat::ALL {
        assert_eq!(QuantFormat::from_name(format.name()), Some(format));
    }
    assert_eq!(QuantFormat::from_name("q3_k"), None);
}

#[test]
fn zero_blocks_and_bad_lengths() {
    for format in QuantFormat::ALL {
        let n = format.block_elems();
        let z = quantize(format, &vec![0.0; n]).unwrap();
        assert_eq!(dequantize(format, &z).unwrap(), vec![0.0; n], "{format:?}");
        assert!(matches!(
            quantize(format, &vec![1.0; n + 1]),
            Err(QuantError::Unaligned { .. })
        ));
        assert!(matches!(
            dequantize(format, &vec![0; format.block_bytes() + 1]),
            Err(QuantError::BadBytes { .. })
        ));
    }
}
