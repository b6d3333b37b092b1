//! Every WGSL kernel of pertoken, in one index.
//!
//! Each kernel family is one `.wgsl` file under `shaders/`, embedded with `include_str!` here and
//! nowhere else. Tile and workgroup sizes are WGSL `override` constants: the kernel crates pass
//! them when they build a pipeline, and [`validate`] checks a shader with a given set of them
//! through naga, with no GPU needed. WGSL has no includes: the attention shaders share
//! `attention/params.wgsl` (and `rows.wgsl`), and the tile matmuls `matmul/tile_io.wgsl`, by
//! `concat!` here, the one template step; the same step gives a kernel with f16 inputs a second
//! prelude that binds them as f16 (`enable f16;`, for adapters with shader-f16) beside the
//! packed-u32 one that works everywhere, and the attention kernels that hold a head in registers
//! a width prelude (`attention/dim128.wgsl`, `dim256.wgsl`) that sizes their arrays.

/// One WGSL shader: its source, entry point and the override constants it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shader {
    /// Stable name, `family/kernel`; also the pipeline-cache key and the shader's label.
    pub name: &'static str,
    /// WGSL source text.
    pub source: &'static str,
    /// Compute entry point.
    pub entry_point: &'static str,
}

/// Simple f32 matmul, one invocation per output: the baseline.
pub const MATMUL_NAIVE: Shader = Shader {
    name: "matmul/naive",
    source: include_str!("../matmul/naive.wgsl"),
    entry_point: "main",
};

/// Register-blocked, workgroup-tiled f32 matmul.
pub const MATMUL_TILED: Shader = Shader {
    name: "matmul/tiled",
    source: concat!(
        include_str!("../matmul/b_packed.wgsl"),
        include_str!("../matmul/b_bytes.wgsl"),
        include_str!("../matmul/tile_io.wgsl"),
        include_str!("../matmul/tiled.wgsl"),
        include_str!("../common/kquant.wgsl"),
        include_str!("../matmul/operands.wgsl")
    ),
    entry_point: "main",
};

/// [`MATMUL_TILED`] for f16 B loaded as f16 (adapters with shader-f16).
pub const MATMUL_TILED_F16: Shader = Shader {
    name: "matmul/tiled-f16",
    source: concat!(
        include_str!("../matmul/b_f16.wgsl"),
        include_str!("../matmul/b_bytes.wgsl"),
        include_str!("../matmul/tile_io.wgsl"),
        include_str!("../matmul/tiled.wgsl"),
        include_str!("../common/kquant.wgsl"),
        include_str!("../matmul/operands.wgsl")
    ),
    entry_point: "main",
};

/// Matmul by one subgroup of 8 per workgroup, A shared through shuffles (CPU adapters).
pub const MATMUL_TEAM: Shader = Shader {
    name: "matmul/team",
    source: concat!(
        include_str!("../matmul/b_packed.wgsl"),
        include_str!("../matmul/b_bytes.wgsl"),
        include_str!("../matmul/tile_io.wgsl"),
        include_str!("../matmul/team.wgsl"),
        include_str!("../common/kquant.wgsl"),
        include_str!("../matmul/operands.wgsl")
    ),
    entry_point: "main",
};

/// Decode-path linear (GEMV for a few rows), weights of every format as 32-bit words.
pub const MATMUL_GEMV: Shader = Shader {
    name: "matmul/gemv",
    source: concat!(
        include_str!("../matmul/b_packed.wgsl"),
        include_str!("../matmul/b_bytes.wgsl"),
        include_str!("../common/kquant.wgsl"),
        include_str!("../matmul/gemv.wgsl")
    ),
    entry_point: "main",
};

/// [`MATMUL_GEMV`] for f16 weights loaded as f16 (adapters with shader-f16).
pub const MATMUL_GEMV_F16: Shader = Shader {
    name: "matmul/gemv-f16",
    source: concat!(
        include_str!("../matmul/b_f16.wgsl"),
        include_str!("../matmul/b_bytes.wgsl"),
        include_str!("../common/kquant.wgsl"),
        include_str!("../matmul/gemv.wgsl")
    ),
    entry_point: "main",
};

/// Buffer copy: the adapter's achievable bandwidth, the ceiling for memory-bound kernels.
pub const COPY: Shader = Shader {
    name: "common/copy",
    source: include_str!("../common/copy.wgsl"),
    entry_point: "main",
};

/// Fused (flash) attention: online softmax over K/V tiles in workgroup memory.
pub const ATTENTION_FLASH: Shader = Shader {
    name: "attention/flash",
    source: concat!(
        include_str!("../attention/dim128.wgsl"),
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/flash.wgsl"),
        include_str!("../attention/rows.wgsl")
    ),
    entry_point: "main",
};

/// [`ATTENTION_FLASH`] for head dimensions over 128, up to 256 (register arrays twice as long).
pub const ATTENTION_FLASH_WIDE: Shader = Shader {
    name: "attention/flash-wide",
    source: concat!(
        include_str!("../attention/dim256.wgsl"),
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/flash.wgsl"),
        include_str!("../attention/rows.wgsl")
    ),
    entry_point: "main",
};

/// Attention by teams of invocations that split each row (decode and prefill, with subgroups);
/// q, k, v as 32-bit words.
pub const ATTENTION_TEAMS: Shader = Shader {
    name: "attention/teams",
    source: concat!(
        include_str!("../attention/dim128.wgsl"),
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/teams_packed.wgsl"),
        include_str!("../attention/teams.wgsl")
    ),
    entry_point: "main",
};

/// [`ATTENTION_TEAMS`] for f16 q, k, v loaded as f16 (adapters with shader-f16).
pub const ATTENTION_TEAMS_F16: Shader = Shader {
    name: "attention/teams-f16",
    source: concat!(
        include_str!("../attention/teams_f16.wgsl"),
        include_str!("../attention/dim128.wgsl"),
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/teams.wgsl")
    ),
    entry_point: "main",
};

/// [`ATTENTION_TEAMS`] for head dimensions over 128, up to 256.
pub const ATTENTION_TEAMS_WIDE: Shader = Shader {
    name: "attention/teams-wide",
    source: concat!(
        include_str!("../attention/dim256.wgsl"),
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/teams_packed.wgsl"),
        include_str!("../attention/teams.wgsl")
    ),
    entry_point: "main",
};

/// [`ATTENTION_TEAMS_F16`] for head dimensions over 128, up to 256.
pub const ATTENTION_TEAMS_WIDE_F16: Shader = Shader {
    name: "attention/teams-wide-f16",
    source: concat!(
        include_str!("../attention/teams_f16.wgsl"),
        include_str!("../attention/dim256.wgsl"),
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/teams.wgsl")
    ),
    entry_point: "main",
};

/// Merges flash attention's split-KV partial results.
pub const ATTENTION_COMBINE: Shader = Shader {
    name: "attention/combine",
    source: concat!(
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/combine.wgsl")
    ),
    entry_point: "main",
};

/// Attention of a step's rows (many sequences, each its own length) over a paged KV cache.
pub const ATTENTION_PAGED: Shader = Shader {
    name: "attention/paged",
    source: concat!(
        include_str!("../attention/paged_params.wgsl"),
        include_str!("../attention/paged.wgsl")
    ),
    entry_point: "main",
};

/// [`ATTENTION_PAGED`] with one invocation per (row, head) and no barriers (CPU adapters).
pub const ATTENTION_PAGED_SERIAL: Shader = Shader {
    name: "attention/paged_serial",
    source: concat!(
        include_str!("../attention/paged_params.wgsl"),
        include_str!("../attention/paged.wgsl")
    ),
    entry_point: "serial",
};

/// Merges [`ATTENTION_PAGED`]'s split-KV partial results.
pub const ATTENTION_PAGED_COMBINE: Shader = Shader {
    name: "attention/paged_combine",
    source: concat!(
        include_str!("../attention/paged_params.wgsl"),
        include_str!("../attention/paged_combine.wgsl")
    ),
    entry_point: "main",
};

/// Appends keys or values to a KV cache in place.
pub const ATTENTION_APPEND: Shader = Shader {
    name: "attention/append",
    source: include_str!("../attention/append.wgsl"),
    entry_point: "main",
};

/// RMSNorm of residual rows, optionally adding a layer's output into the residual first.
pub const MODEL_RMSNORM: Shader = Shader {
    name: "model/rmsnorm",
    source: include_str!("../model/rmsnorm.wgsl"),
    entry_point: "main",
};

/// RoPE on q and k (rotate-half or interleaved pairs), fused with the KV-cache append and q's
/// heads-first layout.
pub const MODEL_ROPE: Shader = Shader {
    name: "model/rope",
    source: include_str!("../model/rope.wgsl"),
    entry_point: "main",
};

/// RoPE fused with the write into a paged KV cache, every row of a step in one dispatch.
pub const MODEL_ROPE_PAGED: Shader = Shader {
    name: "model/rope_paged",
    source: include_str!("../model/rope_paged.wgsl"),
    entry_point: "main",
};

/// A gated MLP's act(gate) · up: SiLU (SwiGLU) or tanh-approximated GELU (GeGLU), by ACT.
pub const MODEL_SILU_MUL: Shader = Shader {
    name: "model/silu_mul",
    source: include_str!("../model/silu_mul.wgsl"),
    entry_point: "main",
};

/// Attention output from heads-first [heads, t, d] to tokens-first [t, heads·d].
pub const MODEL_HEADS: Shader = Shader {
    name: "model/heads",
    source: include_str!("../model/heads.wgsl"),
    entry_point: "main",
};

/// Token embedding gather from rows in any weight format (f32, f16, the legacy quants, the
/// K-quants).
pub const MODEL_EMBED: Shader = Shader {
    name: "model/embed",
    source: concat!(
        include_str!("../common/kquant.wgsl"),
        include_str!("../model/embed_table.wgsl"),
        include_str!("../model/embed.wgsl")
    ),
    entry_point: "main",
};

/// [`MODEL_EMBED`] of a step's rows, each naming its token's slot (many sequences at once).
pub const MODEL_EMBED_ROWS: Shader = Shader {
    name: "model/embed_rows",
    source: concat!(
        include_str!("../common/kquant.wgsl"),
        include_str!("../model/embed_table.wgsl"),
        include_str!("../model/embed_rows.wgsl")
    ),
    entry_point: "main",
};

/// Final logit soft-capping, cap · tanh(x / cap), in place.
pub const MODEL_SOFTCAP: Shader = Shader {
    name: "model/softcap",
    source: include_str!("../model/softcap.wgsl"),
    entry_point: "main",
};

/// Greedy sampling: argmax of a row of logits into the token buffer.
pub const MODEL_ARGMAX: Shader = Shader {
    name: "model/argmax",
    source: concat!(
        include_str!("../model/argmax_common.wgsl"),
        include_str!("../model/argmax.wgsl")
    ),
    entry_point: "main",
};

/// [`MODEL_ARGMAX`] of many rows in one dispatch, each into its own slot.
pub const MODEL_ARGMAX_ROWS: Shader = Shader {
    name: "model/argmax_rows",
    source: concat!(
        include_str!("../model/argmax_common.wgsl"),
        include_str!("../model/argmax_rows.wgsl")
    ),
    entry_point: "main",
};

/// Naive attention, first pass: materialized scores (the bench baseline).
pub const ATTENTION_NAIVE_SCORES: Shader = Shader {
    name: "attention/naive_scores",
    source: concat!(
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/naive_scores.wgsl")
    ),
    entry_point: "scores",
};

/// Naive attention, second pass: each score row to probabilities, in place.
pub const ATTENTION_NAIVE_SOFTMAX: Shader = Shader {
    name: "attention/naive_softmax",
    source: concat!(
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/naive_softmax.wgsl")
    ),
    entry_point: "softmax",
};

/// Naive attention, third pass: probabilities times V.
pub const ATTENTION_NAIVE_PV: Shader = Shader {
    name: "attention/naive_pv",
    source: concat!(
        include_str!("../attention/params.wgsl"),
        include_str!("../attention/naive_pv.wgsl")
    ),
    entry_point: "softmax_pv",
};

/// Every shader in the crate.
pub const ALL: &[Shader] = &[
    MATMUL_NAIVE,
    MATMUL_TILED,
    MATMUL_TILED_F16,
    MATMUL_GEMV,
    MATMUL_GEMV_F16,
    MATMUL_TEAM,
    COPY,
    ATTENTION_FLASH,
    ATTENTION_FLASH_WIDE,
    ATTENTION_TEAMS,
    ATTENTION_TEAMS_F16,
    ATTENTION_TEAMS_WIDE,
    ATTENTION_TEAMS_WIDE_F16,
    ATTENTION_COMBINE,
    ATTENTION_APPEND,
    ATTENTION_PAGED,
    ATTENTION_PAGED_SERIAL,
    ATTENTION_PAGED_COMBINE,
    ATTENTION_NAIVE_SCORES,
    ATTENTION_NAIVE_SOFTMAX,
    ATTENTION_NAIVE_PV,
    MODEL_RMSNORM,
    MODEL_ROPE,
    MODEL_ROPE_PAGED,
    MODEL_SILU_MUL,
    MODEL_HEADS,
    MODEL_EMBED,
    MODEL_EMBED_ROWS,
    MODEL_SOFTCAP,
    MODEL_ARGMAX,
    MODEL_ARGMAX_ROWS,
];

/// Looks a shader up by [`Shader::name`].
pub fn by_name(name: &str) -> Option<&'static Shader> {
    ALL.iter().find(|s| s.name == name)
}

/// Why a shader failed to parse or validate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShaderError {
    /// The WGSL did not parse.
    #[error("shader {shader}: WGSL parse error:\n{message}")]
    Parse {
        /// Shader name.
        shader: &'static str,
        /// naga's message, with the source location.
        message: String,
    },
    /// The module parsed but failed naga's validation.
    #[error("shader {shader}: validation error: {message}")]
    Invalid {
        /// Shader name.
        shader: &'static str,
        /// naga's message.
        message: String,
    },
    /// Applying the override constants failed (unknown name, wrong type, or the module is
    /// invalid once they are substituted).
    #[error("shader {shader}: override constants {constants:?}: {message}")]
    Overrides {
        /// Shader name.
        shader: &'static str,
        /// The constants that were applied.
        constants: Vec<(String, f64)>,
        /// naga's message.
        message: String,
    },
}

/// Parses and validates `shader` with naga, then substitutes `constants` (WGSL `override`
/// names → values, as a pipeline would) and validates the result again.
///
/// This is what a pipeline creation would check, without a GPU: tests call it for every set of
/// constants the kernel crates use.
pub fn validate(shader: &Shader, constants: &[(&str, f64)]) -> Result<(), ShaderError> {
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    let module = naga::front::wgsl::parse_str(shader.source).map_err(|e| ShaderError::Parse {
        shader: shader.name,
        message: e.emit_to_string(shader.source),
    })?;
    let mut validator = Validator::new(ValidationFlags::all(), Capabilities::all());
    let info = validator
        .validate(&module)
        .map_err(|e| ShaderError::Invalid {
            shader: shader.name,
            message: format!("{:?}", e.into_inner()),
        })?;

    let overrides_err = |message: String| ShaderError::Overrides {
        shader: shader.name,
        constants: constants.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
        message,
    };
    let declared: Vec<&str> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.as_deref())
        .collect();
    if let Some((unknown, _)) = constants.iter().find(|(k, _)| !declared.contains(k)) {
        return Err(overrides_err(format!(
            "`{unknown}` is not an override of this shader (it declares {declared:?})"
        )));
    }

    let mut map = naga::back::PipelineConstants::default();
    for &(k, v) in constants {
        map.insert(k.to_owned(), v);
    }
    let entry = Some((naga::ShaderStage::Compute, shader.entry_point));
    let (module, _info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, entry, &map)
            .map_err(|e| overrides_err(format!("{e}")))?;
    // Re-validate with the constants substituted: sizes and loop bounds are now concrete.
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .map_err(|e| overrides_err(format!("{:?}", e.into_inner())))?;
    Ok(())
}

/// The names of the `override` constants `shader` declares.
pub fn override_names(shader: &Shader) -> Result<Vec<String>, ShaderError> {
    let module = naga::front::wgsl::parse_str(shader.source).map_err(|e| ShaderError::Parse {
        shader: shader.name,
        message: e.emit_to_string(shader.source),
    })?;
    Ok(module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_validates_with_its_defaults() {
        for shader in ALL {
            validate(shader, &[]).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn decoder_shaders_validate_in_every_variant() {
        for (add, post) in [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)] {
            validate(
                &MODEL_RMSNORM,
                &[("ADD", add), ("POST", post), ("WG", 64.0)],
            )
            .unwrap();
        }
        for interleaved in [0.0, 1.0] {
            for norm in [0.0, 1.0] {
                let c = [("INTERLEAVED", interleaved), ("QK_NORM", norm)];
                validate(&MODEL_ROPE, &c).unwrap();
                for f16 in [0.0, 1.0] {
                    let c = [c[0], c[1], ("F16", f16), ("BLOCK", 32.0), ("WG", 16.0)];
                    validate(&MODEL_ROPE_PAGED, &c).unwrap();
                    validate(&ATTENTION_PAGED, &[("F16", f16), ("BLOCK", 32.0)]).unwrap();
                    validate(&ATTENTION_PAGED_SERIAL, &[("F16", f16), ("BLOCK", 32.0)]).unwrap();
                }
            }
        }
        validate(&MODEL_SOFTCAP, &[]).unwrap();
        for act in [0.0, 1.0] {
            validate(&MODEL_SILU_MUL, &[("ACT", act)]).unwrap();
        }
        for fmt in 0..10 {
            validate(&MODEL_EMBED, &[("FMT", f64::from(fmt))]).unwrap();
            validate(&MODEL_EMBED_ROWS, &[("FMT", f64::from(fmt))]).unwrap();
        }
        validate(&MODEL_ARGMAX, &[("WG", 128.0)]).unwrap();
        validate(&MODEL_ARGMAX_ROWS, &[("WG", 128.0)]).unwrap();
    }

    #[test]
    fn names_are_unique_and_found() {
        for shader in ALL {
            assert_eq!(by_name(shader.name), Some(shader));
        }
        assert!(by_name("matmul/none").is_none());
    }

    #[test]
    fn unknown_override_is_an_error() {
        let err = validate(&MATMUL_NAIVE, &[("NOT_A_CONSTANT", 1.0)]).unwrap_err();
        assert!(err.to_string().contains("NOT_A_CONSTANT"), "{err}");
    }

    #[test]
    fn overrides_are_listed() {
        let o = override_names(&MATMUL_TILED).unwrap();
        for name in [
            "BM", "BN", "BK", "TM", "TN", "WG", "A_VEC4", "B_VEC4", "B_TRANS",
        ] {
            assert!(o.iter().any(|n| n == name), "missing {name}: {o:?}");
        }
    }
}
