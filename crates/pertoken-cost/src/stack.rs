//! Software stacks: what a serving stack launches per step and how well its kernels use the
//! hardware, as data with a source for every figure (`data/stacks.toml`).
//!
//! The same model on the same GPU runs at different speeds under llama.cpp, gpt-fast or
//! TensorRT-LLM, for reasons the roofline alone cannot see: how many kernels a layer launches,
//! whether a launch costs the host a driver call or is replayed from a CUDA graph, and how many
//! ALU operations a quantized GEMV spends unpacking each weight. A [`Stack`] holds those figures.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::account::WeightFormat;
use crate::latency::Launches;
use crate::{CostError, Figure, Result};

/// One software stack's figures.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Catalog name (`llama.cpp-cuda`).
    pub name: String,
    /// What it is, and which builds the figures describe.
    pub description: String,
    /// Fixed time per kernel launch, µs.
    pub launch_us: Figure,
    /// Kernels each transformer layer launches per decode step.
    pub kernels_per_layer: Figure,
    /// Kernels outside the layers per step.
    pub kernels_per_step: Figure,
    /// Achieved fraction of the datasheet bandwidth while streaming weights and KV.
    pub bandwidth_efficiency: Figure,
    /// Achieved fraction of the dense peak FLOP/s in large matmuls.
    pub compute_efficiency: Figure,
    /// Where a peak's matmuls reach a different fraction (by dtype name, `fp4`), that fraction.
    #[serde(default)]
    pub compute_efficiency_by_dtype: BTreeMap<String, Figure>,
    /// Vector ALU operations per weight a batch-1 GEMV issues (the multiply-add and any
    /// unpacking and conversion), by weight format name (`f16`, `q4_0`, …), at the device's
    /// FP32 rate. A format missing here makes the prediction an upper bound.
    #[serde(default)]
    pub dequant_ops: BTreeMap<String, Figure>,
    /// Weight formats the stack serves (`f16` standing for bf16 too), each sourced; the
    /// configuration search tries these.
    #[serde(default)]
    pub formats: Vec<FormatSupport>,
}

/// A weight format a stack serves.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSupport {
    /// The format's name ([`WeightFormat::parse`]).
    pub name: String,
    /// Where the stack says so.
    pub source: String,
    /// The hardware (catalog names) the stack runs it on, where it is limited to some.
    #[serde(default)]
    pub only: Option<Vec<String>>,
}

impl Stack {
    /// The stack's launches.
    pub fn launches(&self) -> Launches {
        Launches {
            per_kernel_s: self.launch_us.value * 1e-6,
            per_layer: self.kernels_per_layer.value,
            per_step: self.kernels_per_step.value,
        }
    }

    /// The fraction of the `dtype` peak its large matmuls reach.
    pub fn compute_efficiency(&self, dtype: &str) -> f64 {
        self.compute_efficiency_by_dtype
            .get(dtype)
            .unwrap_or(&self.compute_efficiency)
            .value
    }

    /// ALU operations per weight for `format`, where the stack has a sourced figure.
    pub fn dequant_ops(&self, format: WeightFormat) -> Option<f64> {
        self.dequant_ops.get(format.name()).map(|f| f.value)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StackFile {
    stack: Vec<Stack>,
}

const STACKS_TOML: &str = include_str!("../data/stacks.toml");

/// The built-in stacks.
pub fn stacks() -> Vec<Stack> {
    // Checked by the tests; a failure here is a build defect.
    toml::from_str::<StackFile>(STACKS_TOML)
        .map(|f| f.stack)
        .unwrap_or_default()
}

/// The built-in stack named `name`.
pub fn stack(name: &str) -> Result<Stack> {
    let all = stacks();
    all.iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| CostError::Unknown {
            kind: "stack",
            name: name.to_owned(),
            closest: None,
            known: all
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stack_figure_is_sourced() {
        let all = stacks();
        assert!(all.len() >= 5, "{}", all.len());
        for s in &all {
            let mut figures = vec![
                &s.launch_us,
                &s.kernels_per_layer,
                &s.kernels_per_step,
                &s.bandwidth_efficiency,
                &s.compute_efficiency,
            ];
            figures.extend(s.dequant_ops.values());
            figures.extend(s.compute_efficiency_by_dtype.values());
            for f in figures {
                assert!(
                    f.value >= 0.0 && !f.source.is_empty() && f.date.len() >= 4,
                    "{}",
                    s.name
                );
            }
            for k in s.dequant_ops.keys() {
                WeightFormat::parse(k).unwrap();
            }
            for f in &s.formats {
                WeightFormat::parse(&f.name).unwrap();
                assert!(!f.source.is_empty(), "{} {}", s.name, f.name);
            }
            assert!(s.bandwidth_efficiency.value <= 1.0 && s.compute_efficiency.value <= 1.0);
        }
        let l = stack("llama.cpp-metal").unwrap().launches();
        assert!((l.per_kernel_s - 5.16e-6).abs() < 1e-15);
        assert!(stack("nope").is_err());
    }
}
