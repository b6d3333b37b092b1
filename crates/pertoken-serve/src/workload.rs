//! Seeded workloads: prompts of random tokens with input and output lengths fixed or drawn from
//! a range, arriving all at once (a concurrency limit) or as a Poisson process (a rate).

use pertoken_reference::random::uniform_f32_in;

use crate::{Result, ServeError};

/// A length: fixed, or drawn uniformly from `lo ..= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lengths {
    /// Every request the same.
    Fixed(usize),
    /// Each request its own, uniform in `lo ..= hi`.
    Uniform {
        /// Shortest.
        lo: usize,
        /// Longest.
        hi: usize,
    },
}

impl Lengths {
    /// `"128"` or `"64-192"` (uniform, both ends included).
    pub fn parse(s: &str) -> Result<Lengths> {
        let bad = || {
            ServeError::Invalid(format!(
                "length {s:?}: give a number of tokens (128) or a range (64-192), at least 1"
            ))
        };
        let n = |t: &str| t.trim().parse::<usize>().ok().filter(|&v| v > 0);
        match s.split_once('-') {
            None => n(s).map(Lengths::Fixed).ok_or_else(bad),
            Some((a, b)) => match (n(a), n(b)) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(Lengths::Uniform { lo, hi }),
                _ => Err(bad()),
            },
        }
    }

    /// The longest a request may get.
    pub fn max(&self) -> usize {
        match *self {
            Lengths::Fixed(n) => n,
            Lengths::Uniform { hi, .. } => hi,
        }
    }

    /// The mean over requests.
    pub fn mean(&self) -> f64 {
        match *self {
            Lengths::Fixed(n) => n as f64,
            Lengths::Uniform { lo, hi } => (lo + hi) as f64 / 2.0,
        }
    }

    fn draw(&self, u: f32) -> usize {
        match *self {
            Lengths::Fixed(n) => n,
            Lengths::Uniform { lo, hi } => (lo + (u * (hi - lo + 1) as f32) as usize).min(hi),
        }
    }
}

impl std::fmt::Display for Lengths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lengths::Fixed(n) => write!(f, "{n}"),
            Lengths::Uniform { lo, hi } => write!(f, "{lo}-{hi}"),
        }
    }
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// All at once, at most this many in flight (vLLM's `--max-concurrency`).
    Concurrency(usize),
    /// A seeded Poisson process of this many requests per second.
    Rate(f64),
}

/// A seeded workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Prompt tokens per request.
    pub isl: Lengths,
    /// Output tokens per request (generated whatever the tokens are, as vLLM's `ignore_eos`).
    pub osl: Lengths,
    /// Requests.
    pub requests: usize,
    /// How they arrive.
    pub arrival: Arrival,
    /// Seed of the lengths, the prompts' tokens and the arrival times.
    pub seed: u64,
}

/// One request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Its index in the workload.
    pub id: usize,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Tokens to generate.
    pub max_new: usize,
    /// Seconds after the run's start when it arrives.
    pub arrival: f64,
}

impl Workload {
    /// The requests, with prompts of token ids below `vocab`.
    pub fn make(&self, vocab: u32) -> Result<Vec<Request>> {
        if self.requests == 0 {
            return Err(ServeError::Invalid(
                "a workload of 0 requests measures nothing: give --requests of at least 1".into(),
            ));
        }
        match self.arrival {
            Arrival::Concurrency(0) => {
                return Err(ServeError::Invalid(
                    "a concurrency of 0 runs nothing: give at least 1".into(),
                ));
            }
            Arrival::Rate(r) if !(r.is_finite() && r > 0.0) => {
                return Err(ServeError::Invalid(format!(
                    "a rate of {r} requests/s: give a positive number"
                )));
            }
            _ => {}
        }
        let n = self.requests;
        let isl = uniform_f32_in(self.seed, n, 0.0, 1.0);
        let osl = uniform_f32_in(self.seed + 1, n, 0.0, 1.0);
        let gaps = uniform_f32_in(self.seed + 2, n, 0.0, 1.0);
        let mut t = 0.0;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let len = self.isl.draw(isl[i]);
            let prompt = uniform_f32_in(self.seed + 3 + i as u64, len, 0.0, vocab as f32)
                .into_iter()
                .map(|v| (v as u32).min(vocab - 1))
                .collect();
            let arrival = match self.arrival {
                Arrival::Concurrency(_) => 0.0,
                Arrival::Rate(r) => {
                    // Exponential gaps; the first request arrives at 0.
                    if i > 0 {
                        t += -(1.0 - f64::from(gaps[i])).max(1e-12).ln() / r;
                    }
                    t
                }
            };
            out.push(Request {
                id: i,
                prompt,
                max_new: self.osl.draw(osl[i]),
                arrival,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_and_draw_within_their_range() {
        assert_eq!(Lengths::parse("128").unwrap(), Lengths::Fixed(128));
        let u = Lengths::parse("4-9").unwrap();
        assert_eq!(u, Lengths::Uniform { lo: 4, hi: 9 });
        for bad in ["0", "-3", "9-4", "x", "4-", ""] {
            assert!(Lengths::parse(bad).is_err(), "{bad}");
        }
        let w = Workload {
            isl: u,
            osl: Lengths::Fixed(3),
            requests: 200,
            arrival: Arrival::Rate(10.0),
            seed: 5,
        };
        let r = w.make(50).unwrap();
        assert!(r.iter().all(|q| (4..=9).contains(&q.prompt.len())));
        assert!(r.iter().any(|q| q.prompt.len() == 4) && r.iter().any(|q| q.prompt.len() == 9));
        assert!(r.iter().all(|q| q.prompt.iter().all(|&t| t < 50)));
        assert!(r.windows(2).all(|p| p[0].arrival <= p[1].arrival));
        // 200 arrivals at 10/s span about 20 s.
        let span = r.last().unwrap().arrival;
        assert!((12.0..30.0).contains(&span), "{span}");
        assert_eq!(r, w.make(50).unwrap(), "seeded");
    }
}
