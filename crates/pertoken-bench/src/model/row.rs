//! The bench's table and JSON rows.

use pertoken_gpu::DType;
use pertoken_model::{Role, WeightSource};

/// Where a generation step's time goes.
pub struct Breakdown {
    /// The whole step, submitted at once.
    pub step_seconds: f64,
    /// Each kind of kernel: launches and seconds, each launch timed alone.
    pub by_op: Vec<(&'static str, usize, f64)>,
}

/// What one token of a test moves or computes: the quantity its bound is counted in.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Bytes read per generated token (weights and KV).
    Bytes(f64),
    /// FLOPs per prompt token.
    Flops(f64),
}

/// One test of one model.
pub struct Row {
    /// The model's name.
    pub model: String,
    /// Bytes of its weights as stored.
    pub size_bytes: u64,
    /// Its parameters.
    pub params: u64,
    /// Its weights' formats (`q4_1/q8_0`).
    pub backend: String,
    /// llama-bench's name of the test (`tg128 b8 @ d512`).
    pub test: String,
    /// Tokens per second of each repetition.
    pub samples: Vec<f64>,
    /// What was checked against the reference, or why it failed; `None` when not checked.
    pub verified: Option<Result<String, String>>,
    /// Work per token.
    pub work: Work,
    /// The adapter's bound in tokens/s, where one is computed.
    pub bound: Option<f64>,
    /// Where a generation step's time goes.
    pub breakdown: Option<Breakdown>,
    /// Joules per token of each repetition NVML measured.
    pub energy: Vec<f64>,
    /// Generation rows: the test without its batch (`tg128 @ d512`) and the batch, for plots.
    pub batched: Option<(String, usize)>,
    /// Why the test could not run (memory, a limit), where it could not.
    pub failed: Option<String>,
    /// USD per 1M tokens and J per token, where a price or a power is known.
    pub cost: (Option<f64>, Option<f64>),
}

/// Mean and sample standard deviation of `v`.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

impl Row {
    /// A measured test of `source`: its samples (tokens/s), its check, its work per token and
    /// bound, and its step breakdown.
    pub fn new(
        source: &dyn WeightSource,
        test: &str,
        samples: Vec<f64>,
        verified: Option<Result<String, String>>,
        (work, bound): (Work, Option<f64>),
        breakdown: Option<Breakdown>,
    ) -> Row {
        let m = &source.spec().shape;
        let stored = stored_bytes(source);
        let size_bytes = stored.iter().map(|&(_, _, b)| b).sum();
        Row {
            model: format!("{} {}", m.name, weights_label(&stored)),
            size_bytes,
            params: m.params().total,
            backend: "wgpu".into(),
            test: test.to_owned(),
            samples,
            verified,
            work,
            bound,
            breakdown,
            energy: Vec::new(),
            batched: None,
            failed: None,
            cost: (None, None),
        }
    }

    /// A test that could not run, with the reason: printed and written in its own row, so the
    /// rows measured before and after it are kept.
    pub fn failed(source: &dyn WeightSource, test: &str, reason: String) -> Row {
        let mut row = Row::new(
            source,
            test,
            Vec::new(),
            None,
            (Work::Bytes(0.0), None),
            None,
        );
        row.failed = Some(reason);
        row
    }

    /// The row with the joules per token NVML measured in each repetition.
    pub fn with_energy(mut self, joules_per_token: Vec<f64>) -> Row {
        self.energy = joules_per_token;
        self
    }

    /// The row as one point of a series over batch sizes: `test` is the test without its
    /// batch.
    pub fn with_batch(mut self, test: String, batch: usize) -> Row {
        self.batched = Some((test, batch));
        self
    }

    /// For plots against batch size: the series (`model test`), the batch, the mean tokens/s
    /// and $ per 1M tokens where priced.
    pub fn batch_point(&self) -> Option<(String, usize, f64, Option<f64>)> {
        if self.failed.is_some() {
            return None;
        }
        let (test, batch) = self.batched.as_ref()?;
        Some((
            format!("{} {test}", self.model),
            *batch,
            mean_sd(&self.samples).0,
            self.cost.0,
        ))
    }

    /// Prices the row's mean rate (and its measured energy, where there is any).
    pub fn price(&mut self, pricing: &super::Pricing) {
        if self.failed.is_some() {
            return;
        }
        let measured = (!self.energy.is_empty()).then(|| mean_sd(&self.energy).0);
        self.cost = pricing.at(mean_sd(&self.samples).0, measured);
    }

    /// The row as the JSON report writes it (`pertoken cost --bench-report` reads it).
    pub fn json(&self) -> serde_json::Value {
        let (mean, sd) = mean_sd(&self.samples);
        let (op, bytes_per_s, flops_per_s) = match self.work {
            Work::Bytes(b) => ("model_generation", Some(b * mean), None),
            Work::Flops(f) => ("model_prompt", None, Some(f * mean)),
        };
        if let Some(why) = &self.failed {
            return serde_json::json!({
                "op": op,
                "device": "gpu",
                "model": self.model,
                "backend": self.backend,
                "test": self.test,
                "error": why,
            });
        }
        serde_json::json!({
            "op": op,
            "device": "gpu",
            "bytes_per_s": bytes_per_s,
            "flops_per_s": flops_per_s,
            "model": self.model,
            "size_bytes": self.size_bytes,
            "params": self.params,
            "backend": self.backend,
            "test": self.test,
            "tokens_per_second": mean,
            "stddev": sd,
            "samples": self.samples,
            "verified": matches!(self.verified, Some(Ok(_))),
            "checked": match &self.verified {
                None => "not checked".to_owned(),
                Some(Ok(what)) => what.clone(),
                Some(Err(why)) => format!("FAILED: {why}"),
            },
            "bound_tokens_per_second": self.bound,
            "step_seconds": self.breakdown.as_ref().map(|b| b.step_seconds),
            "launches_per_step": self
                .breakdown
                .as_ref()
                .map(|b| b.by_op.iter().map(|e| e.1).sum::<usize>()),
            "usd_per_million_tokens": self.cost.0,
            "joules_per_token": self.cost.1,
            "joules_per_token_measured": !self.energy.is_empty(),
        })
    }
}

/// The rows as CSV, one line each after a header.
pub fn csv(rows: &[Row]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let opt = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x}"));
    let mut out = String::from(
        "model,size_bytes,params,backend,test,tokens_per_second,stddev,bound_tokens_per_second,\
         usd_per_million_tokens,joules_per_token,verified,checked\n",
    );
    for r in rows {
        if let Some(why) = &r.failed {
            out.push_str(&format!(
                "{},{},{},{},{},,,,,,false,{}\n",
                quote(&r.model),
                r.size_bytes,
                r.params,
                r.backend,
                quote(&r.test),
                quote(&format!("FAILED: {why}"))
            ));
            continue;
        }
        let (mean, sd) = mean_sd(&r.samples);
        let (verified, checked) = match &r.verified {
            None => ("false", "not checked".to_owned()),
            Some(Ok(what)) => ("true", what.clone()),
            Some(Err(why)) => ("false", format!("FAILED: {why}")),
        };
        out.push_str(&format!(
            "{},{},{},{},{},{mean},{sd},{},{},{},{verified},{}\n",
            quote(&r.model),
            r.size_bytes,
            r.params,
            r.backend,
            quote(&r.test),
            opt(r.bound),
            opt(r.cost.0),
            opt(r.cost.1),
            quote(&checked)
        ));
    }
    out
}

/// Each weight the source stores: its role, its type and its bytes as stored.
fn stored_bytes(source: &dyn WeightSource) -> Vec<(Role, DType, u64)> {
    Role::all(source.spec())
        .into_iter()
        .filter_map(|r| {
            let (dtype, shape) = source.stored(r).ok().flatten()?;
            let (elems, bytes) = dtype.block();
            Some((
                r,
                dtype,
                (shape.iter().product::<usize>() / elems * bytes) as u64,
            ))
        })
        .collect()
}

/// The matrices' formats, most bytes first (`q4_1`; a K-quant mix reads `q8_0/q5_0/q4_k/q6_k`).
fn weights_label(stored: &[(Role, DType, u64)]) -> String {
    let mut bytes: Vec<(DType, u64)> = Vec::new();
    for &(role, dtype, b) in stored {
        if role.is_vector() {
            continue;
        }
        match bytes.iter_mut().find(|(d, _)| *d == dtype) {
            Some((_, total)) => *total += b,
            None => bytes.push((dtype, b)),
        }
    }
    bytes.sort_by_key(|&(_, b)| std::cmp::Reverse(b));
    let names: Vec<&str> = bytes.iter().map(|(d, _)| d.name()).collect();
    names.join("/")
}
