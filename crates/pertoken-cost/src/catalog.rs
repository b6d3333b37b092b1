//! The hardware and model catalogs: built in, and extended by user files.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{CostError, Model, Result};

/// One sourced figure.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// The value, in the unit the field names.
    pub value: f64,
    /// Where it comes from.
    pub source: String,
    /// When that source said so (`YYYY-MM`).
    pub date: String,
}

/// One sourced peak rate.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peak {
    /// TFLOP/s (TOP/s for integer types), per device.
    pub value: f64,
    /// Without structured sparsity.
    pub dense: bool,
    /// Where it comes from.
    pub source: String,
    /// When that source said so.
    pub date: String,
}

/// One accelerator.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Catalog name (`h100-sxm`).
    pub name: String,
    /// What it is.
    pub description: String,
    /// Device memory, GB (10⁹ bytes).
    pub memory_gb: Figure,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbs: Figure,
    /// Bandwidth a streaming kernel was measured to reach on this part, GB/s, where a source
    /// states one. When present the memory roofline uses it as is, instead of `bandwidth_gbs`
    /// times the stack's bandwidth efficiency.
    #[serde(default)]
    pub measured_bandwidth_gbs: Option<Figure>,
    /// Thermal design power, W, where public.
    pub tdp_w: Option<Figure>,
    /// On-demand price per device-hour, USD, where public.
    pub price_per_hour: Option<Figure>,
    /// Purchase price per device, USD, where public.
    pub purchase_usd: Option<Figure>,
    /// Peak rate per dtype name (`fp32`, `bf16`, `fp16`, `fp8`, `int8`).
    pub peak_tflops: BTreeMap<String, Peak>,
    /// The link between devices of this part in its usual multi-device platform (a name from
    /// `data/interconnects.toml`), used when a deployment of several names none.
    #[serde(default)]
    pub interconnect: Option<DefaultLink>,
    /// Prices besides the on-demand one: committed terms, capacity blocks, spot, each labelled.
    #[serde(default)]
    pub prices: Vec<Price>,
    /// The most devices one model instance spans in the part's usual platform (a server, an
    /// NVLink domain, a pod slice): the upper end of the configuration search.
    #[serde(default)]
    pub max_devices: Option<Count>,
    /// The serving stack this part usually runs (a name from `data/stacks.toml`).
    #[serde(default)]
    pub stack: Option<DefaultLink>,
}

/// A labelled price per device-hour.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// `on-demand`, `1-year`, `3-year`, `reserved` (a committed term the source does not
    /// state), `capacity-block`, `spot` or `market` (a third-party cloud's rental rate).
    pub kind: String,
    /// USD per device-hour.
    pub value: f64,
    /// Where it comes from (and how a per-instance price was divided).
    pub source: String,
    /// When that source said so.
    pub date: String,
}

/// The kinds a [`Price`] may have.
pub const PRICE_KINDS: &[&str] = &[
    "on-demand",
    "1-year",
    "3-year",
    "reserved",
    "capacity-block",
    "spot",
    "market",
];

/// A sourced whole number.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    /// The number.
    pub value: u64,
    /// Where it comes from.
    pub source: String,
}

/// A hardware entry's usual interconnect, with where that comes from.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultLink {
    /// An interconnect's catalog name (`nvlink4`).
    pub name: String,
    /// Why this part uses it.
    pub source: String,
}

impl Hardware {
    /// Bytes per second a step's weight and KV reads achieve at bandwidth efficiency `eta`: the
    /// measured streaming bandwidth where the catalog has one, else the datasheet's times `eta`.
    pub fn achieved_bandwidth(&self, eta: f64) -> f64 {
        match &self.measured_bandwidth_gbs {
            Some(m) => m.value * 1e9,
            None => self.bandwidth_gbs.value * 1e9 * eta,
        }
    }

    /// The price per device-hour of `kind` (`on-demand` is `price_per_hour`), where sourced.
    pub fn price(&self, kind: &str) -> Option<Price> {
        match (kind, &self.price_per_hour) {
            ("on-demand", Some(f)) => Some(Price {
                kind: kind.to_owned(),
                value: f.value,
                source: f.source.clone(),
                date: f.date.clone(),
            }),
            _ => self.prices.iter().find(|p| p.kind == kind).cloned(),
        }
    }

    /// The dense peak for `dtype`, in FLOP/s.
    pub fn dense_peak(&self, dtype: &str) -> Option<f64> {
        self.peak_tflops
            .get(dtype)
            .filter(|p| p.dense)
            .map(|p| p.value * 1e12)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HardwareFile {
    #[serde(default)]
    hardware: Vec<Hardware>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    #[serde(default)]
    model: Vec<Model>,
}

/// Hardware and models by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Accelerators.
    pub hardware: Vec<Hardware>,
    /// Models.
    pub models: Vec<Model>,
}

/// Adapter-name words that identify a catalog entry: every word of the first list, none of the
/// second. The H100's and A100's PCIe cards are entries of their own.
pub const ADAPTER_PATTERNS: &[(&[&str], &[&str], &str)] = &[
    (&["h100"], &["pcie", "nvl"], "h100-sxm"),
    (&["h100", "pcie"], &[], "h100-pcie"),
    (&["h200"], &[], "h200"),
    (&["a100", "80gb"], &["pcie"], "a100-80gb"),
    (&["a100", "80gb", "pcie"], &[], "a100-80gb-pcie"),
    (&["a100", "40gb"], &["pcie"], "a100-40gb"),
    (&["a100", "pcie", "40gb"], &[], "a100-40gb-pcie"),
    (&["l40s"], &[], "l40s"),
    (&["rtx", "5090"], &[], "rtx-5090"),
    (&["mi325x"], &[], "mi325x"),
    (&["l4"], &[], "l4"),
    (&["rtx", "4090"], &[], "rtx-4090"),
    (&["rtx", "3090"], &[], "rtx-3090"),
    (&["mi300x"], &[], "mi300x"),
];

const HARDWARE_TOML: &str = include_str!("../data/hardware.toml");
const MODELS_TOML: &str = include_str!("../data/models.toml");

fn parse_toml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        CostError::Parse {
            file: file.to_owned(),
            line,
            message: e.message().to_owned(),
        }
    })
}

impl Catalog {
    /// The built-in catalogs.
    pub fn builtin() -> Catalog {
        // The embedded files are checked by the tests; a failure here is a build defect.
        let hardware = parse_toml::<HardwareFile>("data/hardware.toml", HARDWARE_TOML)
            .map(|f| f.hardware)
            .unwrap_or_default();
        let models = parse_toml::<ModelFile>("data/models.toml", MODELS_TOML)
            .map(|f| f.model)
            .unwrap_or_default();
        Catalog { hardware, models }
    }

    /// Adds (or replaces, by name) the hardware in a TOML file shaped like the built-in one.
    pub fn add_hardware_file(&mut self, path: &Path) -> Result<()> {
        let text = read(path)?;
        let file: HardwareFile = parse_toml(&path.display().to_string(), &text)?;
        for h in file.hardware {
            self.hardware.retain(|x| x.name != h.name);
            self.hardware.push(h);
        }
        Ok(())
    }

    /// Adds (or replaces, by name) the models in a TOML file shaped like the built-in one.
    pub fn add_model_file(&mut self, path: &Path) -> Result<()> {
        let text = read(path)?;
        let file: ModelFile = parse_toml(&path.display().to_string(), &text)?;
        for m in file.model {
            m.validate()?;
            self.models.retain(|x| x.name != m.name);
            self.models.push(m);
        }
        Ok(())
    }

    /// The catalog entry for a wgpu adapter's name (`NVIDIA H100 80GB HBM3` is `h100-sxm`), by
    /// the chip names in [`ADAPTER_PATTERNS`]; `None` where none matches (a CPU adapter, or a
    /// card the catalog lacks).
    pub fn hardware_for_adapter(&self, adapter: &str) -> Option<&Hardware> {
        let name = adapter.to_ascii_lowercase();
        let words: Vec<&str> = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        ADAPTER_PATTERNS
            .iter()
            .find(|(all, none, _)| {
                all.iter().all(|w| words.contains(w)) && !none.iter().any(|w| words.contains(w))
            })
            .and_then(|(_, _, entry)| self.hardware.iter().find(|h| h.name == *entry))
    }

    /// The hardware named `name` (case-insensitive), or an error suggesting the closest name.
    pub fn hardware(&self, name: &str) -> Result<&Hardware> {
        let names: Vec<&str> = self.hardware.iter().map(|h| h.name.as_str()).collect();
        self.hardware
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| unknown("hardware", name, &names))
    }

    /// The model named `name` (case-insensitive), or an error suggesting the closest name.
    pub fn model(&self, name: &str) -> Result<&Model> {
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| unknown("model", name, &names))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CostError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn unknown(kind: &'static str, name: &str, names: &[&str]) -> CostError {
    // A name that contains what was typed ("h100" → "h100-sxm") beats a near miss ("h200").
    let lower = name.to_lowercase();
    let closest = names
        .iter()
        .min_by_key(|n| {
            let n = n.to_lowercase();
            (!n.contains(&lower), levenshtein(&n, &lower))
        })
        .map(|n| (*n).to_owned());
    CostError::Unknown {
        kind,
        name: name.to_owned(),
        closest,
        known: names.join(", "),
    }
}

/// Edit distance, for "did you mean".
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_usual_interconnect_is_a_known_one() {
        let c = Catalog::builtin();
        let mut named = 0;
        for h in &c.hardware {
            if let Some(link) = &h.interconnect {
                crate::latency::interconnect(&link.name)
                    .unwrap_or_else(|e| panic!("{}: {e}", h.name));
                named += 1;
            }
        }
        assert!(named >= 10, "{named} entries name their usual link");
        let h100 = c.hardware("h100-sxm").unwrap();
        assert_eq!(h100.interconnect.as_ref().unwrap().name, "nvlink4");
    }

    #[test]
    fn adapter_names_match_their_catalog_entries() {
        let c = Catalog::builtin();
        let entry = |a: &str| c.hardware_for_adapter(a).map(|h| h.name.as_str());
        assert_eq!(entry("NVIDIA H100 80GB HBM3"), Some("h100-sxm"));
        assert_eq!(entry("NVIDIA H100 PCIe"), Some("h100-pcie"));
        assert_eq!(entry("NVIDIA H200"), Some("h200"));
        assert_eq!(entry("NVIDIA A100-SXM4-80GB"), Some("a100-80gb"));
        assert_eq!(entry("NVIDIA A100-SXM4-40GB"), Some("a100-40gb"));
        assert_eq!(entry("NVIDIA A100-PCIE-40GB"), Some("a100-40gb-pcie"));
        assert_eq!(entry("NVIDIA A100 80GB PCIe"), Some("a100-80gb-pcie"));
        assert_eq!(entry("NVIDIA GeForce RTX 5090"), Some("rtx-5090"));
        assert_eq!(entry("NVIDIA L4"), Some("l4"));
        assert_eq!(entry("NVIDIA L40S"), Some("l40s"));
        assert_eq!(entry("NVIDIA GeForce RTX 4090"), Some("rtx-4090"));
        assert_eq!(entry("AMD Instinct MI300X (RADV GFX942)"), Some("mi300x"));
        assert_eq!(entry("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
        for (_, _, name) in ADAPTER_PATTERNS {
            c.hardware(name)
                .expect("every pattern names a catalog entry");
        }
    }

    #[test]
    fn builtin_catalogs_parse_and_every_figure_has_a_source() {
        let hw: HardwareFile = parse_toml("hardware", HARDWARE_TOML).unwrap();
        let models: ModelFile = parse_toml("models", MODELS_TOML).unwrap();
        let c = Catalog::builtin();
        assert_eq!(c.hardware.len(), hw.hardware.len());
        assert_eq!(c.models.len(), models.model.len());
        for name in [
            "h100-sxm",
            "h200",
            "a100-80gb",
            "l4",
            "rtx-4090",
            "mi300x",
            "tpu-v5e",
            "tpu-v6e",
            "trn1",
            "trn2",
            "inf2",
            "h100-pcie",
            "a100-40gb",
            "a100-40gb-pcie",
            "a100-80gb-pcie",
            "l40s",
            "rtx-5090",
            "mi325x",
            "m2-max",
            "m3-max",
            "m4-max",
            "m2-ultra",
            "tpu-v5p",
            "tpu-v7",
            "trn3",
            "b200",
            "gb200",
            "b300",
            "mi355x",
            "gaudi3",
        ] {
            c.hardware(name).unwrap();
        }
        for h in &c.hardware {
            let mut figures = vec![&h.memory_gb, &h.bandwidth_gbs];
            figures.extend(
                h.tdp_w
                    .iter()
                    .chain(&h.price_per_hour)
                    .chain(&h.purchase_usd)
                    .chain(&h.measured_bandwidth_gbs),
            );
            for f in figures {
                assert!(
                    f.value > 0.0 && !f.source.is_empty() && f.date.len() >= 4,
                    "{}",
                    h.name
                );
            }
            assert!(!h.peak_tflops.is_empty(), "{}", h.name);
            for p in &h.prices {
                assert!(
                    PRICE_KINDS.contains(&p.kind.as_str())
                        && p.kind != "on-demand"
                        && p.value > 0.0
                        && !p.source.is_empty()
                        && p.date.len() >= 4,
                    "{} {:?}",
                    h.name,
                    p
                );
            }
            if let Some(s) = &h.stack {
                crate::stack(&s.name).unwrap_or_else(|e| panic!("{}: {e}", h.name));
            }
            assert!(
                h.max_devices
                    .as_ref()
                    .is_none_or(|n| n.value >= 1 && !n.source.is_empty())
            );
            for (dt, p) in &h.peak_tflops {
                assert!(
                    p.value > 0.0 && !p.source.is_empty() && p.date.len() >= 4,
                    "{} {dt}",
                    h.name
                );
            }
        }
        for m in &c.models {
            m.validate().unwrap();
            assert!(!m.source.is_empty());
        }
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let c = Catalog::builtin();
        let err = c.hardware("h100").unwrap_err().to_string();
        assert!(err.contains("did you mean \"h100-sxm\""), "{err}");
        let err = c.hardware("h300").unwrap_err().to_string();
        assert!(err.contains("did you mean \"h200\""), "{err}");
        let err = c.model("llama-3-8b").unwrap_err().to_string();
        assert!(err.contains("llama-3.1-8b"), "{err}");
        assert_eq!(c.model("LLAMA-3.1-8B").unwrap().name, "llama-3.1-8b");
    }

    #[test]
    fn user_files_extend_and_malformed_ones_name_the_line() {
        let dir = std::env::temp_dir().join(format!("pertoken-cost-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("hw.toml");
        std::fs::write(
            &good,
            r#"[[hardware]]
name = "my-gpu"
description = "a card of ours"
memory_gb = { value = 48, source = "our spec sheet", date = "2026-01" }
bandwidth_gbs = { value = 900, source = "our spec sheet", date = "2026-01" }
[hardware.peak_tflops]
fp16 = { value = 150, dense = true, source = "our spec sheet", date = "2026-01" }
"#,
        )
        .unwrap();
        let mut c = Catalog::builtin();
        c.add_hardware_file(&good).unwrap();
        assert_eq!(
            c.hardware("my-gpu").unwrap().dense_peak("fp16"),
            Some(150e12)
        );

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[[hardware]]\nname = \"x\"\nmemory_gb = 12\n").unwrap();
        let err = c.add_hardware_file(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("line 3"), "{err}");
        let err = c
            .add_hardware_file(&dir.join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
