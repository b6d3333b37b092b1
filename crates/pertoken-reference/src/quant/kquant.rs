//! The K-quants: super-blocks of [`QK_K`] = 256 values (`ggml-common.h`, `ggml-quants.c`).
//!
//! - **Q4_K**, 144 bytes: `d` and `dmin` (f16), 12 bytes holding eight 6-bit scales `sc` and
//!   eight 6-bit minimums `m` (one pair per sub-block of 32, packed as [`scale_min`] reads
//!   them), then 128 bytes of nibbles: bytes `32i .. 32i + 32` hold sub-block `2i` in their low
//!   nibbles and `2i + 1` in their high ones. Value `e` (sub-block `s = e / 32`) is
//!   `d·sc[s]·q − dmin·m[s]`.
//! - **Q5_K**, 176 bytes: as Q4_K, with 32 bytes `qh` after the scales (bit `s` of `qh[l]` is the
//!   fifth bit of value `32s + l`) before the nibbles.
//! - **Q6_K**, 210 bytes: 128 bytes `ql` of low nibbles, 64 bytes `qh` of high bit pairs, 16
//!   signed 8-bit scales (one per 16 values), then `d` (f16, may be negative). Value
//!   `e = 128h + 32k + l` is `d·scales[e / 16]·(q − 32)`, with its low nibble in
//!   `ql[64h + 32(k % 2) + l]` (the high nibble when `k ≥ 2`) and its high bits
//!   `(qh[32h + l] >> 2k) & 3`.

use half::f16;

use super::{QK_K, as_f16, f16_at};

/// Sub-block `j`'s 6-bit scale and minimum from the 12 bytes `s` (ggml's `get_scale_min_k4`):
/// bytes 0-3 hold sc0-3 in their low 6 bits and bits 4-5 of sc4-7 on top; bytes 4-7 the same for
/// the minimums; bytes 8-11 the low nibbles of sc4-7 (low) and m4-7 (high).
pub fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The inverse of [`scale_min`]: eight 6-bit scales and minimums into 12 bytes.
fn pack_scale_min(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4);
    }
    s
}

/// `v / step` rounded and clamped to `lo..=hi`; 0 where the step is 0.
fn level(v: f32, step: f32, lo: i32, hi: i32) -> i32 {
    if step == 0.0 {
        return lo.max(0).min(hi);
    }
    ((v / step).round() as i32).clamp(lo, hi)
}

/// Q4_K (`bits` 4) or Q5_K (`bits` 5): each sub-block's range from min(0, its minimum) to its
/// maximum in `2^bits − 1` steps, the steps and minimums then scaled to 6 bits by the block's
/// largest ones.
pub(super) fn quantize_qk(block: &[f32], bits: u32, out: &mut Vec<u8>) {
    let top = (1i32 << bits) - 1;
    let mut step = [0f32; 8];
    let mut neg_min = [0f32; 8];
    for (s, sub) in block.chunks_exact(32).enumerate() {
        let lo = sub.iter().fold(0f32, |m, &v| m.min(v));
        let hi = sub.iter().fold(lo, |m, &v| m.max(v));
        step[s] = (hi - lo) / top as f32;
        neg_min[s] = -lo;
    }
    let d = as_f16(step.iter().fold(0f32, |m, &v| m.max(v)) / 63.0);
    let dmin = as_f16(neg_min.iter().fold(0f32, |m, &v| m.max(v)) / 63.0);
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for s in 0..8 {
        // The scale rounds up, so the sub-block's range still fits in its levels.
        sc[s] = if d > 0.0 {
            ((step[s] / d).ceil() as i32).clamp(0, 63) as u8
        } else {
            0
        };
        m[s] = level(neg_min[s], dmin, 0, 63) as u8;
    }
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(dmin).to_le_bytes());
    out.extend_from_slice(&pack_scale_min(&sc, &m));
    let q: Vec<u8> = block
        .iter()
        .enumerate()
        .map(|(e, &v)| {
            let s = e / 32;
            let shifted = v + dmin * f32::from(m[s]);
            level(shifted, d * f32::from(sc[s]), 0, top) as u8
        })
        .collect();
    if bits == 5 {
        out.extend((0..32).map(|l| (0..8).fold(0u8, |h, s| h | ((q[32 * s + l] >> 4) << s))));
    }
    for i in 0..4 {
        out.extend((0..32).map(|l| (q[64 * i + l] & 15) | ((q[64 * i + 32 + l] & 15) << 4)));
    }
}

/// Q6_K: each group of 16 maps its value of largest magnitude, with its sign, to −32 (as ggml's
/// quantizer does, so scales come in both signs); the steps are then scaled to signed 8 bits by
/// the block's largest, whose sign `d` takes: scales and `d` of either sign, as in real files.
pub(super) fn quantize_q6_k(block: &[f32], out: &mut Vec<u8>) {
    let signed_max = |v: &[f32]| {
        v.iter()
            .fold(0f32, |m, &x| if x.abs() > m.abs() { x } else { m })
    };
    let step: Vec<f32> = block
        .chunks_exact(16)
        .map(|g| signed_max(g) / -32.0)
        .collect();
    let d = as_f16(signed_max(&step) / -128.0);
    let scales: Vec<i8> = step
        .iter()
        .map(|&s| {
            if d != 0.0 {
                (s / d).round().clamp(-128.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
    let q: Vec<u8> = block
        .iter()
        .enumerate()
        .map(|(e, &v)| (level(v, d * f32::from(scales[e / 16]), -32, 31) + 32) as u8)
        .collect();
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for (e, &v) in q.iter().enumerate() {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        ql[64 * h + 32 * (k % 2) + l] |= (v & 15) << (4 * (k / 2));
        qh[32 * h + l] |= (v >> 4) << (2 * k);
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(scales.iter().map(|&s| s as u8));
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
}

fn dequantize_qk(b: &[u8], qh: Option<&[u8]>, qs: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    for e in 0..QK_K {
        let (s, l) = (e / 32, e % 32);
        let (sc, m) = scale_min(&b[4..16], s);
        let mut q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
        if let Some(qh) = qh {
            q |= ((qh[l] >> s) & 1) << 4;
        }
        out.push(d * f32::from(sc) * f32::from(q) - dmin * f32::from(m));
    }
}

pub(super) fn dequantize_q4_k(b: &[u8], out: &mut Vec<f32>) {
    dequantize_qk(b, None, &b[16..144], out);
}

pub(super) fn dequantize_q5_k(b: &[u8], out: &mut Vec<f32>) {
    dequantize_qk(b, Some(&b[16..48]), &b[48..176], out);
}

pub(super) fn dequantize_q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for e in 0..QK_K {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let lo = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
        let hi = (qh[32 * h + l] >> (2 * k)) & 3;
        let q = i32::from(lo | (hi << 4)) - 32;
        out.push(d * f32::from(scales[e / 16] as i8) * q as f32);
    }
}
