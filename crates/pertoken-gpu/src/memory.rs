//! What a [`Gpu`](crate::Gpu)'s tensors hold, against an optional limit.
//!
//! Every tensor's buffer takes a [`Lease`] from its handle's [`Ledger`] when it is made and
//! returns it when its last view drops. With a limit set ([`GpuOptions::memory_limit`],
//! `PERTOKEN_MEMORY_LIMIT`), an allocation past it is [`Error::OutOfMemory`] naming the
//! operation, before wgpu is asked: on a shared GPU that keeps one program inside its share, and
//! tests use it to reach the out-of-memory path that a real device reaches only when full.
//!
//! [`GpuOptions::memory_limit`]: crate::GpuOptions::memory_limit

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// The bytes a handle's tensors hold, and the most they may.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    limit: Option<u64>,
    live: AtomicU64,
}

/// One buffer's share of a [`Ledger`]: returned when dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    ledger: Arc<Ledger>,
    bytes: u64,
}

impl Ledger {
    pub(crate) fn new(limit: Option<u64>) -> Arc<Ledger> {
        Arc::new(Ledger {
            limit,
            live: AtomicU64::new(0),
        })
    }

    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Takes `bytes` for `op`, or says why not (the limit, what is held, what to do).
    pub(crate) fn lease(self: &Arc<Self>, op: &'static str, bytes: u64) -> Result<Lease> {
        let limit = self.limit.unwrap_or(u64::MAX);
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                live.checked_add(bytes).filter(|&total| total <= limit)
            })
            .map_err(|live| Error::OutOfMemory {
                op,
                message: format!(
                    "{bytes} more bytes would bring this handle's tensors from {live} to {} \
                     bytes, past its memory limit of {limit} bytes (GpuOptions::memory_limit, \
                     PERTOKEN_MEMORY_LIMIT); raise the limit",
                    live.saturating_add(bytes)
                ),
            })?;
        Ok(Lease {
            ledger: Arc::clone(self),
            bytes,
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ledger.live.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Parses a byte count: a number with an optional binary suffix (`K`, `M`, `G`, `T`, each with
/// or without `iB` or `B`), e.g. `512M`, `1.5GiB`, `4096`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = value * scale as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_bytes(" 2 kb "), Some(2048));
        assert_eq!(parse_bytes("3T"), Some(3 << 40));
        for bad in ["", "M", "12X", "-5", "0", "1.2.3G", "nan"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn leases_past_the_limit_are_refused_and_dropped_leases_return() {
        let ledger = Ledger::new(Some(1000));
        let a = ledger.lease("a", 600).unwrap();
        let err = ledger.lease("b", 401).unwrap_err();
        assert!(matches!(err, Error::OutOfMemory { op: "b", .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("from 600 to 1001") && msg.contains("1000"),
            "{msg}"
        );
        let b = ledger.lease("b", 400).unwrap();
        assert_eq!(ledger.live(), 1000);
        drop(a);
        assert_eq!(ledger.live(), 400);
        drop(b);
        assert_eq!(ledger.live(), 0);
        assert!(Ledger::new(None).lease("c", u64::MAX).is_ok());
    }
}
