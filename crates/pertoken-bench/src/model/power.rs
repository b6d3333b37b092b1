//! Board power measured through NVML while a test runs, where NVIDIA's driver is present.
//!
//! `nvml-wrapper` loads `libnvidia-ml` at run time, so a machine without it builds and runs;
//! there the meter says why it has no reading and the report falls back to the catalog's TDP.
//! The energy counter (Volta and later: millijoules since the driver loaded) gives a test's
//! exact energy; where it is missing, power is sampled every 20 ms and averaged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;

/// Samples between the energy counter's readings, where there is no counter.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The NVML device behind the adapter, or why there is none.
pub struct PowerMeter {
    nvml: Option<(Nvml, u32, String, bool)>,
    /// Why no reading can be made (for the report), when `nvml` is `None`.
    pub why_not: String,
}

impl PowerMeter {
    /// Opens NVML and finds the device the adapter named `adapter` is: the one of that name,
    /// else the only one.
    pub fn open(adapter: &str) -> PowerMeter {
        let none = |why: String| PowerMeter {
            nvml: None,
            why_not: why,
        };
        let nvml = match Nvml::init() {
            Ok(n) => n,
            Err(e) => return none(format!("NVML not available ({e})")),
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => return none(format!("NVML lists no devices ({e})")),
        };
        let names: Vec<(u32, String)> = (0..count)
            .filter_map(|i| {
                let name = nvml.device_by_index(i).ok()?.name().ok()?;
                Some((i, name))
            })
            .collect();
        let wanted = adapter.to_lowercase();
        let found = names
            .iter()
            .find(|(_, n)| wanted.contains(&n.to_lowercase()) || n.to_lowercase().contains(&wanted))
            .or(if names.len() == 1 {
                names.first()
            } else {
                None
            });
        let Some((index, name)) = found.cloned() else {
            return none(format!(
                "NVML's devices ({}) do not match the adapter '{adapter}'",
                names
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let (energy, power) = match nvml.device_by_index(index) {
            Ok(d) => (
                d.total_energy_consumption().is_ok(),
                d.power_usage().is_ok(),
            ),
            Err(e) => return none(format!("NVML device {index} ({name}): {e}")),
        };
        if !energy && !power {
            return none(format!(
                "NVML device {index} ({name}) reports neither energy nor power"
            ));
        }
        PowerMeter {
            nvml: Some((nvml, index, name, energy)),
            why_not: String::new(),
        }
    }

    /// A meter that reads nothing (checks, which are not priced).
    pub fn off() -> PowerMeter {
        PowerMeter {
            nvml: None,
            why_not: "not metered".into(),
        }
    }

    /// What the meter reads, for the report; `None` where it reads nothing.
    pub fn describe(&self) -> Option<String> {
        let (_, index, name, energy) = self.nvml.as_ref()?;
        Some(format!(
            "measured through NVML on device {index} ({name}, {})",
            if *energy {
                "energy counter"
            } else {
                "power sampled every 20 ms"
            }
        ))
    }

    /// Runs `f` and returns its result with the board's mean power over it in watts, where the
    /// meter reads any.
    pub fn measure<R>(&self, f: impl FnOnce() -> R) -> (R, Option<f64>) {
        let Some((nvml, index, _, energy)) = &self.nvml else {
            return (f(), None);
        };
        let Ok(device) = nvml.device_by_index(*index) else {
            return (f(), None);
        };
        if *energy {
            let before = device.total_energy_consumption().ok();
            let t0 = Instant::now();
            let r = f();
            let seconds = t0.elapsed().as_secs_f64();
            let after = device.total_energy_consumption().ok();
            let watts = match (before, after) {
                (Some(b), Some(a)) if a > b && seconds > 0.0 => {
                    Some((a - b) as f64 * 1e-3 / seconds)
                }
                _ => None,
            };
            return (r, watts);
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let mut samples = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    if let Ok(mw) = device.power_usage() {
                        samples.push(f64::from(mw) * 1e-3);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
                samples
            });
            let r = f();
            done.store(true, Ordering::Relaxed);
            let samples = sampler.join().unwrap_or_default();
            let watts =
                (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64);
            (r, watts)
        })
    }
}
