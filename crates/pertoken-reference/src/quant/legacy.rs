//! The legacy formats: blocks of [`QK`] = 32 consecutive values with one f16 scale `d`.
//!
//! - **Q8_0**, 34 bytes: `d` (f16, little-endian), then 32 `i8` values `q`; the value is `q · d`.
//! - **Q4_0**, 18 bytes: `d`, then 16 bytes; byte `j` holds value `j` in its low nibble and
//!   value `j + 16` in its high nibble; the value is `(nibble − 8) · d`.
//! - **Q4_1**, 20 bytes: `d`, then an f16 minimum `m`, then 16 bytes of nibbles laid out as
//!   Q4_0's; the value is `nibble · d + m`.
//! - **Q5_0**, 22 bytes: `d`, then a little-endian u32 `qh` whose bit `j` is the fifth bit of
//!   value `j`, then 16 bytes of low nibbles laid out as Q4_0's; the value is `(q − 16) · d`
//!   (`dequantize_row_q5_0`, ggml-quants.c).
//! - **Q5_1**, 24 bytes: `d`, `m`, `qh`, then the nibbles; the value is `q · d + m`.
//!
//! The quantizers round as ggml's `quantize_row_*_ref`.

use half::f16;

use super::{QK, f16_at};

/// The value of largest magnitude, with its sign.
fn signed_max(block: &[f32]) -> f32 {
    block
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

fn min_max(block: &[f32]) -> (f32, f32) {
    let min = block.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    let max = block.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Packs 32 values of 0..=31 as Q5's `qh` word and 16 bytes of low nibbles.
fn pack5(q: &[u8], out: &mut Vec<u8>) {
    let qh = (0..QK).fold(0u32, |h, j| h | (u32::from(q[j] >> 4) << j));
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..QK / 2).map(|j| (q[j] & 15) | ((q[j + QK / 2] & 15) << 4)));
}

/// The 32 values 0..=31 of a Q5 block's `qh` word at `b[0..4]` and nibbles at `b[4..20]`.
fn unpack5(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    (0..QK).map(move |j| {
        let lo = (b[4 + (j % 16)] >> (4 * (j / 16))) & 15;
        f32::from(lo | ((((qh >> j) & 1) as u8) << 4))
    })
}

pub(super) fn quantize_q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(block.iter().map(|&v| ((v * id).round() as i8) as u8));
}

pub(super) fn quantize_q4_0(block: &[f32], out: &mut Vec<u8>) {
    // The value of largest magnitude, with its sign, maps to −8.
    let d = signed_max(block) / -8.0;
    let id = inverse(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..QK / 2).map(|j| q(block[j]) | (q(block[j + QK / 2]) << 4)));
}

pub(super) fn quantize_q4_1(block: &[f32], out: &mut Vec<u8>) {
    // The block's range [min, max] in 15 steps; nibble 0 is the minimum.
    let (min, max) = min_max(block);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    out.extend((0..QK / 2).map(|j| q(block[j]) | (q(block[j + QK / 2]) << 4)));
}

pub(super) fn quantize_q5_0(block: &[f32], out: &mut Vec<u8>) {
    // The value of largest magnitude, with its sign, maps to −16.
    let d = signed_max(block) / -16.0;
    let id = inverse(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q: Vec<u8> = block
        .iter()
        .map(|&v| ((v * id + 16.5) as i8).min(31) as u8)
        .collect();
    pack5(&q, out);
}

pub(super) fn quantize_q5_1(block: &[f32], out: &mut Vec<u8>) {
    // The block's range [min, max] in 31 steps; 0 is the minimum.
    let (min, max) = min_max(block);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
    let q: Vec<u8> = block
        .iter()
        .map(|&v| (((v - min) * id + 0.5) as i8).min(31) as u8)
        .collect();
    pack5(&q, out);
}

pub(super) fn dequantize_q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
}

pub(super) fn dequantize_q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let lo = b[2..].iter().map(|&q| f32::from(q & 0x0f) - 8.0);
    let hi = b[2..].iter().map(|&q| f32::from(q >> 4) - 8.0);
    out.extend(lo.chain(hi).map(|v| v * d));
}

pub(super) fn dequantize_q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let lo = b[4..].iter().map(|&q| f32::from(q & 0x0f));
    let hi = b[4..].iter().map(|&q| f32::from(q >> 4));
    out.extend(lo.chain(hi).map(|v| v * d + m));
}

pub(super) fn dequantize_q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(unpack5(&b[2..]).map(|q| (q - 16.0) * d));
}

pub(super) fn dequantize_q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    out.extend(unpack5(&b[4..]).map(|q| q * d + m));
}
