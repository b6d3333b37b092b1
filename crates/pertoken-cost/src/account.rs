//! FLOPs and bytes: a decode step, a prefill, and whether it all fits in memory.
//!
//! Conventions: one multiply-add is 2 FLOPs; element-wise work (norms, activations, softmax) is
//! ignored next to the matmuls; a decode step reads every weight it touches once, whatever the
//! batch, and each sequence's KV cache once; bytes are the minimum a kernel must move. Work is
//! kept apart by the kind of kernel that does it (shared matmuls, experts, attention), because
//! each kind meets its own roofline.

use crate::{CostError, Model, Result};

/// How weights are stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightFormat {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (f16 or bf16).
    F16,
    /// 8-bit floats.
    Fp8,
    /// ggml Q8_0: 8-bit values with an f16 scale per 32 (8.5 bits).
    Q8_0,
    /// ggml Q4_0: 4-bit values with an f16 scale per 32 (4.5 bits).
    Q4_0,
    /// ggml Q4_1: 4-bit values with an f16 scale and minimum per 32 (5 bits).
    Q4_1,
    /// ggml Q5_0: 5-bit values with an f16 scale per 32 (5.5 bits).
    Q5_0,
    /// ggml Q5_1: 5-bit values with an f16 scale and minimum per 32 (6 bits).
    Q5_1,
    /// ggml Q5_K: 5-bit values in super-blocks of 256 (176 bytes: 5.5 bits).
    Q5K,
    /// ggml Q6_K: 6-bit values in super-blocks of 256 (210 bytes: 6.5625 bits).
    Q6K,
    /// ggml Q4_K (as in Q4_K_M files): 4-bit values in super-blocks of 256 with 6-bit
    /// sub-block scales (4.5 bits; a 70B Q4_K_M file averages 4.49: 39.59 GB for 70.6 B weights).
    Q4K,
    /// Weight-only int8 with a scale per output channel (8 bits; the scales are negligible).
    Int8,
    /// Weight-only int4 with a 16-bit scale and zero per group of 32 (5 bits).
    Int4,
    /// OCP MXFP4: 4-bit e2m1 values with an 8-bit power-of-two scale per 32 (4.25 bits); the
    /// format of gpt-oss's expert weights.
    Mxfp4,
    /// NVIDIA NVFP4: 4-bit e2m1 values with an fp8 scale per 16 (4.5 bits; the per-tensor f32
    /// scale is negligible).
    Nvfp4,
}

/// The formats of a model's weights: one for the experts of a mixture of experts, one for the
/// rest (gpt-oss ships MXFP4 experts beside bf16 attention). A single format converts into both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Formats {
    /// Everything but the routed and shared experts' MLPs.
    pub dense: WeightFormat,
    /// The experts' MLPs (the same as `dense` for a dense model).
    pub experts: WeightFormat,
}

impl Formats {
    /// The formats a checkpoint "in `f`" has: a 4-bit float format on a mixture of experts is
    /// its experts' (gpt-oss ships MXFP4 experts beside bf16 attention; NVIDIA's FP4 MoE
    /// checkpoints likewise), any other format every matmul's.
    pub fn of_checkpoint(m: &Model, f: WeightFormat) -> Formats {
        if matches!(f, WeightFormat::Mxfp4 | WeightFormat::Nvfp4) && m.experts > 1 {
            Formats {
                dense: WeightFormat::F16,
                experts: f,
            }
        } else {
            f.into()
        }
    }
}

impl From<WeightFormat> for Formats {
    fn from(f: WeightFormat) -> Formats {
        Formats {
            dense: f,
            experts: f,
        }
    }
}

impl WeightFormat {
    /// Average bits per weight, scales included.
    pub fn bits(self) -> f64 {
        match self {
            WeightFormat::F32 => 32.0,
            WeightFormat::F16 => 16.0,
            WeightFormat::Fp8 => 8.0,
            WeightFormat::Q8_0 => 8.5,
            WeightFormat::Q4_0 | WeightFormat::Q4K => 4.5,
            WeightFormat::Q4_1 => 5.0,
            WeightFormat::Q5_0 | WeightFormat::Q5K => 5.5,
            WeightFormat::Q5_1 => 6.0,
            WeightFormat::Q6K => 6.5625,
            WeightFormat::Int8 => 8.0,
            WeightFormat::Int4 => 5.0,
            WeightFormat::Mxfp4 => 4.25,
            WeightFormat::Nvfp4 => 4.5,
        }
    }

    /// The canonical name, as [`WeightFormat::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::Fp8 => "fp8",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q4K => "q4_k",
            WeightFormat::Q4_1 => "q4_1",
            WeightFormat::Q5_0 => "q5_0",
            WeightFormat::Q5_1 => "q5_1",
            WeightFormat::Q5K => "q5_k",
            WeightFormat::Q6K => "q6_k",
            WeightFormat::Int8 => "int8",
            WeightFormat::Int4 => "int4",
            WeightFormat::Mxfp4 => "mxfp4",
            WeightFormat::Nvfp4 => "nvfp4",
        }
    }

    /// Whether the format is unpacked to a float type before the multiply (on a part without
    /// FP4 tensor cores, MXFP4 and NVFP4 are).
    pub fn is_quantized(self) -> bool {
        !matches!(
            self,
            WeightFormat::F32 | WeightFormat::F16 | WeightFormat::Fp8
        )
    }

    /// The peak rate (catalog dtype name) a matmul on these weights runs at where the part has
    /// it natively: fp8 for fp8, fp4 for MXFP4 and NVFP4; `None` where the weights are unpacked
    /// to the activations' 16-bit type.
    pub fn native_peak(self) -> Option<&'static str> {
        match self {
            WeightFormat::Fp8 => Some("fp8"),
            WeightFormat::Mxfp4 | WeightFormat::Nvfp4 => Some("fp4"),
            WeightFormat::F32 => Some("fp32"),
            _ => None,
        }
    }

    /// Parses `f32`, `f16`/`bf16`, `fp8`, `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q4_k`/`q4_k_m`,
    /// `q5_k`, `q6_k`, `int8`, `int4`, `mxfp4`, `nvfp4`.
    pub fn parse(s: &str) -> Result<WeightFormat> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(WeightFormat::F32),
            "f16" | "fp16" | "bf16" => Ok(WeightFormat::F16),
            "fp8" | "f8" => Ok(WeightFormat::Fp8),
            "q8_0" => Ok(WeightFormat::Q8_0),
            "q4_0" => Ok(WeightFormat::Q4_0),
            "q4_k" | "q4_k_m" => Ok(WeightFormat::Q4K),
            "q4_1" => Ok(WeightFormat::Q4_1),
            "q5_0" => Ok(WeightFormat::Q5_0),
            "q5_1" => Ok(WeightFormat::Q5_1),
            "q5_k" => Ok(WeightFormat::Q5K),
            "q6_k" => Ok(WeightFormat::Q6K),
            "int8" => Ok(WeightFormat::Int8),
            "int4" => Ok(WeightFormat::Int4),
            "mxfp4" => Ok(WeightFormat::Mxfp4),
            "nvfp4" => Ok(WeightFormat::Nvfp4),
            other => Err(CostError::InvalidInput {
                what: "weight format",
                reason: format!(
                    "{other:?}; expected f32, f16, bf16, fp8, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, \
                     q5_k, q6_k, int8, int4, mxfp4 or nvfp4"
                ),
            }),
        }
    }
}

/// FLOPs and bytes of one kind of kernel.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Part {
    /// Floating-point operations.
    pub flops: f64,
    /// Bytes moved to and from memory.
    pub bytes: f64,
}

impl Part {
    /// The sum of two parts.
    pub fn plus(self, o: Part) -> Part {
        Part {
            flops: self.flops + o.flops,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// Work of one phase, by the kind of kernel that does it. The kinds run as separate kernels,
/// one after another, so each meets its own roofline: at a large batch the matmuls are
/// compute-bound while attention still streams the KV caches, and one roofline over their sum
/// would let each hide the other.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Work {
    /// Matmuls over the weights every token uses (attention projections, dense MLPs, routers,
    /// the output head), with the norms' and embedding rows' bytes.
    pub matmuls: Part,
    /// Mixture-of-experts matmuls over the experts the tokens touch (empty for a dense model).
    pub experts: Part,
    /// Attention over the KV caches: QKᵀ and PV FLOPs, KV bytes read and written.
    pub attention: Part,
}

impl Work {
    /// FLOPs of every kind.
    pub fn flops(&self) -> f64 {
        self.matmuls.flops + self.experts.flops + self.attention.flops
    }

    /// Bytes of every kind.
    pub fn bytes(&self) -> f64 {
        self.matmuls.bytes + self.experts.bytes + self.attention.bytes
    }
}

/// The matmul work of `tokens` tokens: the shared matmuls and the experts', FLOPs from the
/// parameters each token multiplies, bytes from the weights the tokens touch.
pub fn matmul_work(m: &Model, format: impl Into<Formats>, tokens: u64) -> (Part, Part) {
    let f = format.into();
    let t = tokens as f64;
    let expert_params = expert_matmul_params(m);
    (
        Part {
            flops: t * 2.0 * (matmul_params(m) - expert_params),
            bytes: shared_bytes_touched(m, f.dense, tokens),
        },
        Part {
            flops: t * 2.0 * expert_params,
            bytes: expert_bytes_touched(m, f.experts, tokens),
        },
    )
}

/// Attention FLOPs (QKᵀ and PV over every layer and head) of one decode token attending to
/// `keys` keys: `4·layers·heads·head_dim` per key, or MLA's absorbed form
/// ([`Model::attention_flops_per_key`]).
pub fn attention_flops(m: &Model, keys: f64) -> f64 {
    m.layers as f64 * m.attention_flops_per_key(true) * keys
}

/// As [`attention_flops`] for a prefill token (MLA attends over decompressed heads there).
pub fn prefill_attention_flops(m: &Model, keys: f64) -> f64 {
    m.layers as f64 * m.attention_flops_per_key(false) * keys
}

/// Parameters that take part in matmuls per token: every layer's attention projections, dense
/// MLPs or shared experts, router and active experts, plus the output head (tied or not). The
/// input embedding is a lookup.
pub fn matmul_params(m: &Model) -> f64 {
    (m.layers * m.attention_params()
        + m.dense_mlp_params()
        + m.router_params()
        + m.active_expert_params()
        + m.vocab * m.hidden) as f64
}

/// Of [`matmul_params`], those in routed experts' MLPs (0 for a dense model).
pub fn expert_matmul_params(m: &Model) -> f64 {
    m.active_expert_params() as f64
}

/// Expected number of distinct experts a batch of `tokens` touches in one layer, with each token
/// routed to `k` of `e` experts uniformly: `e·(1 − (1 − k/e)^tokens)`.
pub fn experts_touched(e: u64, k: u64, tokens: u64) -> f64 {
    if e <= 1 {
        return 1.0;
    }
    let (e, k) = (e as f64, k as f64);
    e * (1.0 - (1.0 - k / e).powf(tokens as f64))
}

/// Weight bytes every step reads whatever its tokens' routing: all layers' attention, norms,
/// dense MLPs, shared experts and routers, the output head, the final norm, and one embedding
/// row per token.
fn shared_bytes_touched(m: &Model, format: WeightFormat, tokens: u64) -> f64 {
    let layers = m.layers * (m.attention_params() + m.norm_params());
    let head = m.vocab * m.hidden;
    let embedding_rows = if m.tied_embeddings {
        0
    } else {
        tokens.min(m.vocab) * m.hidden
    };
    let params =
        layers + m.dense_mlp_params() + m.router_params() + head + embedding_rows + m.hidden;
    params as f64 * format.bits() / 8.0
}

/// Weight bytes a step over `tokens` tokens reads: every shared weight, the experts those
/// tokens touch, the output head, and one embedding row per token.
pub fn weight_bytes_touched(m: &Model, format: impl Into<Formats>, tokens: u64) -> f64 {
    let f = format.into();
    shared_bytes_touched(m, f.dense, tokens) + expert_bytes_touched(m, f.experts, tokens)
}

/// Bytes of all weights in `format`.
pub fn weight_bytes(m: &Model, format: impl Into<Formats>) -> f64 {
    let f = format.into();
    let experts = expert_params_total(m);
    (m.params().total as f64 - experts) * f.dense.bits() / 8.0 + experts * f.experts.bits() / 8.0
}

/// Routed experts' parameters, every layer's every expert.
fn expert_params_total(m: &Model) -> f64 {
    (m.moe_layers() * m.experts * m.mlp_params()) as f64
}

/// Bytes of the routed experts' weights, every layer's every expert (0 for a dense model).
pub fn expert_weight_bytes(m: &Model, format: impl Into<Formats>) -> f64 {
    expert_params_total(m) * format.into().experts.bits() / 8.0
}

/// Expert weight bytes a step over `tokens` tokens reads: the routed experts those tokens touch
/// (0 for a dense model). [`weight_bytes_touched`] less this is what every token shares.
pub fn expert_bytes_touched(m: &Model, format: WeightFormat, tokens: u64) -> f64 {
    if m.experts <= 1 {
        return 0.0;
    }
    let experts = experts_touched(m.experts, m.active_experts, tokens);
    m.moe_layers() as f64 * experts * m.mlp_params() as f64 * format.bits() / 8.0
}

/// Attention of one decode step: `batch` sequences each attend to their `context` tokens and
/// the new one (or the window), reading their caches and writing the new token's keys and
/// values.
pub fn decode_attention(m: &Model, kv_bytes: f64, batch: u64, context: u64) -> Part {
    let ctx = m.attended(context + 1);
    let kv_per_token = m.kv_bytes_per_token(kv_bytes);
    let b = batch as f64;
    Part {
        flops: b * attention_flops(m, ctx),
        bytes: b * (ctx * kv_per_token + kv_per_token),
    }
}

/// One decode step: `batch` sequences each add one token after `context` tokens.
pub fn decode_step(
    m: &Model,
    format: impl Into<Formats>,
    kv_bytes: f64,
    batch: u64,
    context: u64,
) -> Work {
    let (matmuls, experts) = matmul_work(m, format, batch);
    Work {
        matmuls,
        experts,
        attention: decode_attention(m, kv_bytes, batch, context),
    }
}

/// Attention of a prefill of `prompt` tokens into an empty cache: causal, token i attending to
/// i keys (or the window), each token's keys and values written.
pub fn prefill_attention(m: &Model, kv_bytes: f64, prompt: u64) -> Part {
    let attended_sum: f64 = match m.sliding_window {
        None => (prompt * (prompt + 1) / 2) as f64,
        Some(_) => (1..=prompt).map(|i| m.attended(i)).sum(),
    };
    Part {
        flops: prefill_attention_flops(m, attended_sum),
        bytes: prompt as f64 * m.kv_bytes_per_token(kv_bytes),
    }
}

/// A prefill of `prompt` tokens into an empty cache ([`prefill_attention`]).
pub fn prefill(m: &Model, format: impl Into<Formats>, kv_bytes: f64, prompt: u64) -> Work {
    let (matmuls, experts) = matmul_work(m, format, prompt);
    Work {
        matmuls,
        experts,
        attention: prefill_attention(m, kv_bytes, prompt),
    }
}

/// The largest batch whose weights and KV caches fit in `memory` bytes less `reserve` (a
/// fraction kept for activations, workspace and fragmentation); 0 when the weights alone do not.
/// Sliding-window layers hold only their window ([`Model::kv_bytes_per_sequence`]).
pub fn max_batch(
    m: &Model,
    format: impl Into<Formats>,
    kv_bytes: f64,
    context: u64,
    memory: f64,
    reserve: f64,
) -> u64 {
    let usable = memory * (1.0 - reserve) - weight_bytes(m, format);
    let per_seq = m.kv_bytes_per_sequence(context, kv_bytes);
    if usable <= 0.0 || per_seq <= 0.0 {
        return 0;
    }
    (usable / per_seq).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn tiny() -> Model {
        Catalog::builtin().model("tiny").expect("built in").clone()
    }

    #[test]
    fn decode_step_by_hand() {
        let m = tiny();
        // Matmul params: 2 layers · (12288 + 24576) + head 1000·64 = 73728 + 64000 = 137728.
        assert_eq!(matmul_params(&m), 137_728.0);
        // Batch 3, context 9: each token attends 10 keys.
        // Attention FLOPs per token: 4 · 2 layers · 4 heads · 16 · 10 = 5120.
        // FLOPs: 3 · (2 · 137728 + 5120) = 841728.
        let w = decode_step(&m, WeightFormat::F16, 2.0, 3, 9);
        assert_eq!(w.flops(), 841_728.0);
        assert_eq!(w.attention.flops, 3.0 * 5120.0);
        // Bytes: weights touched at 2 bytes: layers 2 · (12288 + 128 + 24576) = 73984, head 64000,
        // 3 embedding rows 192, final norm 64 → 138240 params → 276480 bytes.
        // KV: 256 bytes per token; 3 sequences · (10 read + 1 written) · 256 = 8448.
        assert_eq!(w.bytes(), 276_480.0 + 8_448.0);
        assert_eq!((w.matmuls.bytes, w.attention.bytes), (276_480.0, 8_448.0));
        assert_eq!(w.experts, Part::default());
    }

    #[test]
    fn prefill_by_hand() {
        let m = tiny();
        // 5 tokens: matmul FLOPs 5 · 2 · 137728 = 1377280; causal keys 1+2+3+4+5 = 15;
        // attention 4 · 2 · 4 · 16 · 15 = 7680.
        let w = prefill(&m, WeightFormat::F32, 2.0, 5);
        assert_eq!(w.flops(), 1_377_280.0 + 7_680.0);
        assert_eq!(w.attention.flops, 7_680.0);
        // Weights at 4 bytes: (73984 + 64000 + 5·64 + 64) · 4 = 553472; KV written 5 · 256.
        assert_eq!(w.bytes(), 553_472.0 + 1_280.0);
        assert_eq!(w.attention.bytes, 1_280.0);
    }

    #[test]
    fn sliding_window_caps_attention() {
        let mut m = tiny();
        m.sliding_window = Some(4);
        // Keys per token: 1, 2, 3, 4, 4 → 14.
        let w = prefill(&m, WeightFormat::F32, 2.0, 5);
        assert_eq!(w.flops(), 1_377_280.0 + 4.0 * 2.0 * 4.0 * 16.0 * 14.0);
        let d = decode_step(&m, WeightFormat::F32, 2.0, 1, 100);
        assert_eq!(d.flops(), 2.0 * 137_728.0 + 4.0 * 2.0 * 4.0 * 16.0 * 4.0);
    }

    #[test]
    fn a_global_layer_in_the_pattern_attends_to_everything() {
        let mut m = tiny();
        m.sliding_window = Some(4);
        m.arch.global_every = Some(2);
        // Layer 0 keeps the window, layer 1 (every second) is global: at context 100 a token
        // attends (4 + 101) / 2 keys per layer on average.
        assert_eq!(m.layer_window(0), Some(4));
        assert_eq!(m.layer_window(1), None);
        let d = decode_step(&m, WeightFormat::F32, 2.0, 1, 100);
        assert_eq!(d.attention.flops, 4.0 * 2.0 * 4.0 * 16.0 * 52.5);
    }

    #[test]
    fn moe_touches_fewer_experts_at_small_batch() {
        // One token routed to 2 of 8 touches exactly 2; many tokens approach all 8.
        assert!((experts_touched(8, 2, 1) - 2.0).abs() < 1e-12);
        // Two tokens: 8 · (1 − (3/4)²) = 3.5.
        assert!((experts_touched(8, 2, 2) - 3.5).abs() < 1e-12);
        assert!(experts_touched(8, 2, 64) > 7.99);
        let mix = Catalog::builtin().model("mixtral-8x7b").unwrap().clone();
        let b1 = decode_step(&mix, WeightFormat::F16, 2.0, 1, 0).bytes();
        let b64 = decode_step(&mix, WeightFormat::F16, 2.0, 64, 0).bytes();
        // Batch 1 reads about the active parameters (12.9B → ~26 GB in f16), batch 64 about all.
        assert!((b1 / 1e9 - 25.8).abs() < 0.5, "{b1}");
        assert!(b64 > 90e9, "{b64}");
    }

    #[test]
    fn memory_fit_by_hand() {
        let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
        // f16 weights: 8030261248 · 2 = 16.06 GB. 80 GB with a 10% reserve leaves 55.94 GB;
        // at 8192 tokens a sequence's KV cache is 1 GiB = 1.0737 GB → 52 sequences.
        let b = max_batch(&m, WeightFormat::F16, 2.0, 8192, 80e9, 0.1);
        assert_eq!(b, 52);
        assert_eq!(max_batch(&m, WeightFormat::F16, 2.0, 8192, 16e9, 0.0), 0);
        let r =
            weight_bytes(&m, WeightFormat::F16) + (52 * 8192) as f64 * m.kv_bytes_per_token(2.0);
        assert!(r <= 80e9 * 0.9, "{r}");
    }

    #[test]
    fn formats_parse() {
        assert_eq!(WeightFormat::parse("BF16").unwrap(), WeightFormat::F16);
        assert_eq!(WeightFormat::parse("q4_0").unwrap().bits(), 4.5);
        assert!(
            WeightFormat::parse("int3")
                .unwrap_err()
                .to_string()
                .contains("expected")
        );
    }
}
