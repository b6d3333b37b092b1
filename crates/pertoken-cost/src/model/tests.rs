//! Shapes and counts against published figures and hand calculations.
use super::*;
use crate::Catalog;

fn model(name: &str) -> Model {
    Catalog::builtin().model(name).expect("built in").clone()
}

#[test]
fn parameter_counts_match_the_published_ones() {
    // Published counts: the model cards' safetensors parameter totals.
    for (name, published) in [
        ("llama-3.2-1b", 1_235_814_400u64),
        ("llama-3.2-3b", 3_212_749_824),
        ("llama-3.1-8b", 8_030_261_248),
        ("llama-3.1-70b", 70_553_706_496),
        ("mistral-7b", 7_241_732_096),
        ("qwen2.5-7b", 7_615_616_512),
        ("mixtral-8x7b", 46_702_792_704),
    ] {
        assert_eq!(model(name).params().total, published, "{name}");
    }
    // Mixtral's card: 12.9B active parameters per token.
    let active = model("mixtral-8x7b").params().active as f64;
    assert!((active / 1e9 - 12.9).abs() < 0.05, "{active}");
}

#[test]
fn tiny_model_by_hand() {
    let m = model("tiny");
    // Attention: q 64·64 + k 64·32 + v 64·32 + o 64·64 = 12288. MLP: 3·64·128 = 24576.
    // Norms 2·64. Per layer 36992; two layers 73984. Embedding and head 2·1000·64 = 128000.
    // Final norm 64. Total 202048.
    assert_eq!(m.attention_params(), 12288);
    assert_eq!(m.mlp_params(), 24576);
    assert_eq!(m.params().total, 202_048);
    assert_eq!(m.params().active, 202_048);
    // KV: 2 (K and V) · 2 layers · 2 heads · 16 dims · 2 bytes = 256 bytes per token.
    assert_eq!(m.kv_bytes_per_token(2.0), 256.0);
}

#[test]
fn llama_3_1_8b_kv_cache_is_128_kib_per_token() {
    // 2 · 32 layers · 8 KV heads · 128 · 2 bytes = 131072 bytes; 8K tokens = 1 GiB in f16.
    let m = model("llama-3.1-8b");
    assert_eq!(m.kv_bytes_per_token(2.0), 131_072.0);
    assert_eq!(m.kv_bytes_per_token(2.0) * 8192.0, (1u64 << 30) as f64);
}

#[test]
fn hugging_face_configs_import() {
    let llama = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":4096,
        "intermediate_size":14336,"num_attention_heads":32,"num_hidden_layers":32,
        "num_key_value_heads":8,"vocab_size":128256,"tie_word_embeddings":false,
        "model_type":"llama","rope_theta":500000.0}"#;
    let m = Model::from_hf_config("llama-3.1-8b", llama).unwrap();
    assert_eq!(m.params().total, 8_030_261_248);
    assert_eq!(m.head_dim, 128);

    let qwen = r#"{"hidden_size":3584,"intermediate_size":18944,"num_attention_heads":28,
        "num_hidden_layers":28,"num_key_value_heads":4,"vocab_size":152064,
        "tie_word_embeddings":false,"model_type":"qwen2","sliding_window":131072,
        "use_sliding_window":false}"#;
    let m = Model::from_hf_config("qwen2.5-7b", qwen).unwrap();
    assert!(m.qkv_bias);
    assert_eq!(m.sliding_window, None);
    assert_eq!(m.params().total, 7_615_616_512);

    let mixtral = r#"{"hidden_size":4096,"intermediate_size":14336,"num_attention_heads":32,
        "num_hidden_layers":32,"num_key_value_heads":8,"vocab_size":32000,
        "num_local_experts":8,"num_experts_per_tok":2,"model_type":"mixtral",
        "sliding_window":null}"#;
    let m = Model::from_hf_config("mixtral", mixtral).unwrap();
    assert_eq!(m.params().total, 46_702_792_704);

    let err = Model::from_hf_config("broken", "{\n\"hidden_size\": 4096,\n oops }").unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
    let err = Model::from_hf_config("partial", r#"{"hidden_size": 64}"#).unwrap_err();
    assert!(err.to_string().contains("num_attention_heads"), "{err}");
}

#[test]
fn inconsistent_shapes_are_refused() {
    let mut m = model("tiny");
    m.kv_heads = 3;
    assert!(
        m.validate()
            .unwrap_err()
            .to_string()
            .contains("multiple of kv_heads")
    );
    let mut m = model("tiny");
    m.active_experts = 2;
    assert!(m.validate().is_err());
}

#[test]
fn new_catalog_models_match_their_published_counts() {
    // Llama 2 13B: 40·(4·5120² + 3·5120·13824 + 2·5120) + 5120 + 2·32000·5120.
    assert_eq!(model("llama-2-13b").params().total, 13_015_864_320);
    // Qwen3 model cards (total, non-embedding), rounded as the cards print them; q/k norms
    // counted (2·128 per layer).
    for (name, total, non_embedding) in [
        ("qwen3-0.6b", 0.6, 0.44),
        ("qwen3-1.7b", 1.7, 1.4),
        ("qwen3-4b", 4.0, 3.6),
        ("qwen3-8b", 8.2, 6.95),
        ("qwen3-14b", 14.8, 13.2),
        ("qwen3-32b", 32.8, 31.2),
    ] {
        let p = model(name).params();
        // The embedding count holds the untied output head too.
        let non_emb = (p.total - p.embedding) as f64;
        let digits = if non_embedding == 0.44 || non_embedding == 6.95 {
            100.0
        } else {
            10.0
        };
        let round = |x: f64, d: f64| (x / 1e9 * d).round() / d;
        assert_eq!(round(p.total as f64, 10.0), total, "{name} {}", p.total);
        assert_eq!(round(non_emb, digits), non_embedding, "{name} {non_emb}");
    }
    assert_eq!(model("qwen3-0.6b").params().total, 596_049_920);
    // gpt-oss (arXiv:2508.10925, table 1): 116.83B and 20.91B total; active 5.13B and 3.61B
    // counting the unembedding but not the embedding. The o-projection's and the experts'
    // biases and the attention sinks are left out: under 0.1%.
    for (name, total, active) in [
        ("gpt-oss-120b", 116.83e9, 5.13e9),
        ("gpt-oss-20b", 20.91e9, 3.61e9),
    ] {
        let m = model(name);
        let p = m.params();
        assert!(
            (p.total as f64 / total - 1.0).abs() < 1e-3,
            "{name} {}",
            p.total
        );
        let a = (p.active - m.vocab * m.hidden) as f64;
        assert!((a / active - 1.0).abs() < 5e-3, "{name} {a}");
    }
    // DeepSeek-V3's main model: 671B (README_WEIGHTS.md). By hand: attention per layer
    // 7168·1536 + 1536 + 1536·128·192 (q) + 7168·576 + 512 (kv_a) + 512·128·256 (kv_b)
    // + 128·128·7168 (o) = 187107328, with norms 187121664, ·61 = 11414421504; three dense
    // MLPs 3·3·7168·18432 = 1189085184; 58 MoE layers of 257 experts of 3·7168·2048 and a router
    // 7168·256: 58·(257·44040192 + 1835008) = 656569532416; embedding and head 2·129280·7168 =
    // 1853358080; final norm 7168.
    let ds = model("deepseek-v3");
    assert_eq!(ds.attention_params(), 187_107_328);
    assert_eq!(
        ds.params().total,
        11_414_421_504 + 1_189_085_184 + 656_569_532_416 + 1_853_358_080 + 7_168
    );
    assert!((ds.params().total as f64 / 671e9 - 1.0).abs() < 1e-3);
    // Active: 37B per the model card ("671B total parameters with 37B activated").
    assert!((ds.params().active as f64 / 37e9 - 1.0).abs() < 0.02);
}

#[test]
fn mla_caches_one_latent_per_token_by_hand() {
    let ds = model("deepseek-v3");
    // (kv_lora_rank 512 + rope 64) elements per layer, 61 layers, 2 bytes: 70272 bytes per
    // token, where 128 heads of K and V at 192/128 wide would be 61·128·(192 + 128)·2 =
    // 4997120.
    assert_eq!(ds.kv_elements_per_layer(), 576);
    assert_eq!(ds.kv_bytes_per_token(2.0), 70_272.0);
    assert_eq!(ds.kv_cache_heads(), 1);
    // Decode attends in the latent: per key and layer 128 heads · 2·(2·512 + 64) = 278528
    // FLOPs; prefill over decompressed heads 128 · 2·(128 + 64 + 128) = 81920.
    assert_eq!(ds.attention_flops_per_key(true), 278_528.0);
    assert_eq!(ds.attention_flops_per_key(false), 81_920.0);
    // A dense model's two forms agree: 4 · heads · head_dim.
    let l = model("llama-3.1-8b");
    assert_eq!(l.attention_flops_per_key(true), 4.0 * 32.0 * 128.0);
    assert_eq!(l.attention_flops_per_key(false), 4.0 * 32.0 * 128.0);
}

#[test]
fn sliding_window_layers_hold_only_their_window_by_hand() {
    // Gemma 3 27B: 62 layers, every 6th global (layers 5, 11, …, 59: 10 of them), the other 52
    // keep 1024 tokens. Per layer and token 2 · 16 KV heads · 128 = 4096 elements, 8192 bytes
    // in bf16. A 32768-token sequence: (10 · 32768 + 52 · 1024) · 8192 = 3120562176 bytes,
    // where every layer holding all of it would take 62 · 32768 · 8192 = 16642998272.
    let g = model("gemma-3-27b");
    assert_eq!((0..62).filter(|&l| g.layer_window(l).is_none()).count(), 10);
    assert_eq!(g.kv_bytes_per_sequence(32_768, 2.0), 3_120_562_176.0);
    assert_eq!(g.kv_bytes_per_token(2.0) * 32_768.0, 16_642_998_272.0);
    // Below the window every layer holds the whole sequence.
    assert_eq!(
        g.kv_bytes_per_sequence(1000, 2.0),
        g.kv_bytes_per_token(2.0) * 1000.0
    );
    // gpt-oss alternates: 18 of 36 layers keep 128 tokens.
    let o = model("gpt-oss-120b");
    let per_layer = 2.0 * 8.0 * 64.0 * 2.0;
    assert_eq!(
        o.kv_bytes_per_sequence(2000, 2.0),
        (18.0 * 2000.0 + 18.0 * 128.0) * per_layer
    );
}

#[test]
fn deepseek_and_gpt_oss_configs_import() {
    let ds = r#"{"model_type":"deepseek_v3","hidden_size":7168,"intermediate_size":18432,
        "moe_intermediate_size":2048,"num_attention_heads":128,"num_key_value_heads":128,
        "num_hidden_layers":61,"vocab_size":129280,"n_routed_experts":256,"n_shared_experts":1,
        "num_experts_per_tok":8,"first_k_dense_replace":3,"q_lora_rank":1536,"kv_lora_rank":512,
        "qk_nope_head_dim":128,"qk_rope_head_dim":64,"v_head_dim":128,"rms_norm_eps":1e-6,
        "tie_word_embeddings":false}"#;
    let m = Model::from_hf_config("deepseek-v3", ds).unwrap();
    let c = model("deepseek-v3");
    assert_eq!((m.mla, m.moe, m.params()), (c.mla, c.moe, c.params()));

    let oss = r#"{"model_type":"gpt_oss","hidden_size":2880,"intermediate_size":2880,
        "num_attention_heads":64,"num_key_value_heads":8,"head_dim":64,"num_hidden_layers":4,
        "vocab_size":201088,"num_local_experts":128,"num_experts_per_tok":4,
        "attention_bias":true,"sliding_window":128,"tie_word_embeddings":false,
        "layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"]}"#;
    let m = Model::from_hf_config("gpt-oss", oss).unwrap();
    assert_eq!(
        (m.sliding_window, m.arch.global_every),
        (Some(128), Some(2))
    );
    assert_eq!((m.layer_window(0), m.layer_window(1)), (Some(128), None));

    let gemma = r#"{"model_type":"gemma3","text_config":{"hidden_size":5376,
        "intermediate_size":21504,"num_attention_heads":32,"num_key_value_heads":16,
        "head_dim":128,"num_hidden_layers":62,"vocab_size":262208,"sliding_window":1024,
        "sliding_window_pattern":6}}"#;
    let m = Model::from_hf_config("gemma", gemma).unwrap();
    assert_eq!(
        (m.hidden, m.arch.global_every, m.layer_window(5)),
        (5376, Some(6), None)
    );

    // An MLA block with a zero rank and a dense-layer count past the model are refused.
    let mut bad = model("deepseek-v3");
    bad.mla = bad.mla.map(|a| Mla {
        kv_lora_rank: 0,
        ..a
    });
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("kv_lora_rank")
    );
    let mut bad = model("deepseek-v3");
    bad.moe.dense_layers = 61;
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("dense_layers")
    );
}
