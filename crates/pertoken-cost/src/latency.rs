//! Latency terms: a fixed cost per kernel launch, and tensor-parallel all-reduces as α + n/β.
//!
//! At batch 1 a decode step reads every weight once, and the bandwidth term shrinks with every
//! device added and every bit quantized away; what does not shrink is the number of kernels a
//! step launches and the number of all-reduces it waits for. These two terms decide the speed of
//! small models and of tensor-parallel groups:
//!
//! - launches: `kernels per step × seconds per launch`, where kernels per step is
//!   `layers × kernels per layer + kernels outside the layers`, properties of the software stack
//!   ([`Stack`](crate::Stack)), and the seconds per launch a property of the hardware and
//!   driver with that stack (measured by `pertoken bench`, or the stack's sourced default);
//! - all-reduces: two per layer (after attention and after the MLP), each costing
//!   `α(n) + 2·(n−1)/n · bytes / busbw`: a fixed latency plus the ring's traffic over the bus
//!   bandwidth nccl-tests reports, per interconnect ([`Interconnect`], with sources).

use serde::Deserialize;

use crate::{CostError, Figure, Model, Result};

/// Kernel launches of one step and their fixed cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Launches {
    /// Fixed seconds per kernel (launch, ramp-up and drain of a small dependent kernel).
    pub per_kernel_s: f64,
    /// Kernels each transformer layer launches per step.
    pub per_layer: f64,
    /// Kernels outside the layers per step (embedding, final norm, output head, sampling).
    pub per_step: f64,
}

impl Launches {
    /// No launch cost (a pure roofline).
    pub const NONE: Launches = Launches {
        per_kernel_s: 0.0,
        per_layer: 0.0,
        per_step: 0.0,
    };

    /// Kernels one step of `m` launches on each device.
    pub fn kernels(&self, m: &Model) -> f64 {
        m.layers as f64 * self.per_layer + self.per_step
    }

    /// Seconds one step of `m` spends on launches.
    pub fn seconds(&self, m: &Model) -> f64 {
        self.kernels(m) * self.per_kernel_s
    }
}

/// A link between devices, for all-reduces.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interconnect {
    /// Catalog name (`nvlink4`).
    pub name: String,
    /// What it is.
    pub description: String,
    /// Latency of one small all-reduce, µs, measured over `alpha_devices` devices.
    pub alpha_us: Figure,
    /// Devices the latency was measured over.
    pub alpha_devices: u64,
    /// The latency grows with the ring's length, `(n − 1)` hops (PCIe rings); otherwise it is
    /// flat in the device count (NVLink switches and one-shot algorithms).
    #[serde(default)]
    pub ring_latency: bool,
    /// Bus bandwidth of a large all-reduce, GB/s (nccl-tests' `busbw`: the per-device rate of
    /// the ring's `2·(n−1)/n` traffic).
    pub busbw_gbs: Figure,
}

impl Interconnect {
    /// Latency of one all-reduce over `devices` devices, seconds.
    pub fn alpha_s(&self, devices: u64) -> f64 {
        let alpha = self.alpha_us.value * 1e-6;
        if self.ring_latency && self.alpha_devices > 1 {
            alpha * (devices.saturating_sub(1)) as f64 / (self.alpha_devices - 1) as f64
        } else {
            alpha
        }
    }

    /// Seconds for one all-reduce of `bytes` over `devices` devices: `α(n) + 2·(n−1)/n ·
    /// bytes / busbw`; zero on one device.
    pub fn allreduce_s(&self, devices: u64, bytes: f64) -> f64 {
        if devices <= 1 {
            return 0.0;
        }
        let n = devices as f64;
        self.alpha_s(devices) + 2.0 * (n - 1.0) / n * bytes / (self.busbw_gbs.value * 1e9)
    }

    /// Seconds to pass `bytes` of activations from one device to the next (a layer split):
    /// the two-device latency plus the bytes over the bus bandwidth.
    pub fn hop_s(&self, bytes: f64) -> f64 {
        self.alpha_s(2) + bytes / (self.busbw_gbs.value * 1e9)
    }
}

/// The link `devices` devices of `hw` use in its usual platform (`interconnect` in
/// hardware.toml); `None` for one device or a part with no usual link.
pub fn usual_link(hw: &crate::Hardware, devices: u64) -> Result<Option<Interconnect>> {
    match &hw.interconnect {
        Some(l) if devices > 1 => interconnect(&l.name).map(Some),
        _ => Ok(None),
    }
}

/// A link known only by its all-reduce bus bandwidth (`--interconnect-gbs` on a part with no
/// usual link): that bandwidth, with the PCIe 4 ring's measured latency.
pub fn given_link(busbw_gbs: f64) -> Result<Interconnect> {
    if !(busbw_gbs.is_finite() && busbw_gbs > 0.0) {
        return Err(CostError::InvalidInput {
            what: "interconnect bandwidth",
            reason: format!("{busbw_gbs} GB/s must be positive"),
        });
    }
    let mut l = interconnect("pcie4")?;
    l.name = "given".into();
    l.description = format!("a link of {busbw_gbs} GB/s bus bandwidth with pcie4's latency");
    l.busbw_gbs = Figure {
        value: busbw_gbs,
        source: "--interconnect-gbs".into(),
        date: "given".into(),
    };
    Ok(l)
}

/// Bytes of one all-reduce over `tokens` tokens' activations in 16 bits.
pub fn allreduce_bytes(m: &Model, tokens: u64) -> f64 {
    (tokens * m.hidden) as f64 * 2.0
}

/// All-reduces a tensor-parallel step waits for: two per layer.
pub fn allreduces_per_step(m: &Model) -> f64 {
    2.0 * m.layers as f64
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterconnectFile {
    interconnect: Vec<Interconnect>,
}

const INTERCONNECTS_TOML: &str = include_str!("../data/interconnects.toml");

/// The built-in interconnects (NVLink generations, PCIe, AMD xGMI), each figure sourced.
pub fn interconnects() -> Vec<Interconnect> {
    // Checked by the tests; a failure here is a build defect.
    toml::from_str::<InterconnectFile>(INTERCONNECTS_TOML)
        .map(|f| f.interconnect)
        .unwrap_or_default()
}

/// The built-in interconnect named `name`.
pub fn interconnect(name: &str) -> Result<Interconnect> {
    let all = interconnects();
    all.iter()
        .find(|i| i.name.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| CostError::Unknown {
            kind: "interconnect",
            name: name.to_owned(),
            closest: None,
            known: all
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    #[test]
    fn launches_by_hand() {
        let m = Catalog::builtin().model("tiny").unwrap().clone();
        let l = Launches {
            per_kernel_s: 5e-6,
            per_layer: 23.0,
            per_step: 4.0,
        };
        // 2 layers · 23 + 4 = 50 kernels; at 5 µs each, 250 µs.
        assert_eq!(l.kernels(&m), 50.0);
        assert!((l.seconds(&m) - 250e-6).abs() < 1e-15);
        assert_eq!(Launches::NONE.seconds(&m), 0.0);
    }

    #[test]
    fn allreduce_by_hand() {
        let nv = interconnect("nvlink4").unwrap();
        // Flat latency: 6 µs whatever the group; 8 devices, 1 MB at 370 GB/s bus bandwidth:
        // 6e-6 + 2 · 7/8 · 1e6 / 370e9 = 6e-6 + 4.7297e-6.
        let t = nv.allreduce_s(8, 1e6);
        assert!((t - (6e-6 + 1.75e6 / 370e9)).abs() < 1e-12, "{t}");
        assert_eq!(nv.allreduce_s(1, 1e6), 0.0);
        // A PCIe ring: 42.14 µs measured over 8 devices → 42.14 · 1/7 over 2.
        let pcie = interconnect("pcie4").unwrap();
        assert!((pcie.alpha_s(2) - 42.14e-6 / 7.0).abs() < 1e-12);
        assert!((pcie.alpha_s(8) - 42.14e-6).abs() < 1e-12);
        // Llama 3.1 8B, one token: 4096 · 2 bytes per all-reduce, 64 per step.
        let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
        assert_eq!(allreduce_bytes(&m, 1), 8192.0);
        assert_eq!(allreduces_per_step(&m), 64.0);
        assert!(interconnect("carrier-pigeon").is_err());
    }

    #[test]
    fn every_interconnect_is_sourced() {
        let all = interconnects();
        assert!(all.len() >= 5);
        for i in &all {
            for f in [&i.alpha_us, &i.busbw_gbs] {
                assert!(
                    f.value > 0.0 && !f.source.is_empty() && f.date.len() >= 4,
                    "{}",
                    i.name
                );
            }
            assert!(i.alpha_devices >= 2, "{}", i.name);
        }
    }
}
