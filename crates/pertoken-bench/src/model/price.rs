//! Turning measured tokens/s into $ per 1M tokens and joules per token.

use pertoken_cost::Catalog;

use crate::{BenchError, Result};

/// Where the price and the power come from.
pub struct Pricing {
    /// USD per hour, and what it is.
    pub per_hour: Option<(f64, String)>,
    /// Watts, and what they are.
    pub power: Option<(f64, String)>,
    /// What measures the power, where NVML does (each row's J/token is then its own).
    pub measured: Option<String>,
}

impl Pricing {
    /// `--rent` first, then `--hardware`'s catalog entry, then the entry the adapter's name
    /// matches.
    pub fn new(
        rent: Option<f64>,
        hardware: Option<&str>,
        adapter: &str,
        meter: &super::PowerMeter,
    ) -> Result<Pricing> {
        if let Some(r) = rent
            && !(r.is_finite() && r > 0.0)
        {
            return Err(BenchError::Invalid(format!(
                "--rent {r}: expected a positive price in USD per hour"
            )));
        }
        let catalog = Catalog::builtin();
        let (entry, how) = match hardware {
            Some(name) => (Some(catalog.hardware(name)?), "--hardware"),
            None => (
                catalog.hardware_for_adapter(adapter),
                "matched to the adapter's name",
            ),
        };
        let per_hour = match (rent, entry) {
            (Some(r), _) => Some((r, "--rent".to_owned())),
            (None, Some(h)) => h.price_per_hour.as_ref().map(|p| {
                (
                    p.value,
                    format!("catalog {} ({how}; {}, {})", h.name, p.source, p.date),
                )
            }),
            (None, None) => None,
        };
        // Where NVML reads nothing, the catalog's TDP, labelled as such.
        let power = entry.and_then(|h| {
            h.tdp_w.as_ref().map(|t| {
                (
                    t.value,
                    format!(
                        "TDP of catalog {} ({how}), not measured: {}",
                        h.name, meter.why_not
                    ),
                )
            })
        });
        Ok(Pricing {
            per_hour,
            power,
            measured: meter.describe(),
        })
    }

    /// A line for the report: what the costs are based on, or how to add a price.
    pub fn describe(&self) -> String {
        let price = match &self.per_hour {
            Some((usd, what)) => format!("price: ${usd:.2}/hour from {what}"),
            None => "price: none (add --rent USD_PER_HOUR, or --hardware NAME from `pertoken \
                     hardware`, for $ per 1M tokens)"
                .to_owned(),
        };
        let power = match (&self.measured, &self.power) {
            (Some(how), _) => format!("power: {how}"),
            (None, Some((w, what))) => format!("power: {w:.0} W, {what}"),
            (None, None) => {
                "power: unknown (J per token needs NVML or --hardware NAME with a TDP)".to_owned()
            }
        };
        format!("{price}; {power}")
    }

    /// USD per 1M tokens and joules per token at `tokens_per_second`; `measured` J/token
    /// (NVML) where there is one, else the catalog's TDP over the rate.
    pub fn at(&self, tokens_per_second: f64, measured: Option<f64>) -> (Option<f64>, Option<f64>) {
        (
            self.per_hour
                .as_ref()
                .map(|(usd, _)| usd / 3600.0 / tokens_per_second * 1e6),
            measured.or_else(|| {
                // A row NVML could not read stays unpriced in joules rather than mixing in TDP.
                if self.measured.is_some() {
                    return None;
                }
                self.power.as_ref().map(|(w, _)| w / tokens_per_second)
            }),
        )
    }
}
