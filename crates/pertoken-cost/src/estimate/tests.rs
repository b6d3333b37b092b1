//! The estimate's terms against hand calculations.
use super::*;
use crate::Catalog;
use crate::account::Part;

/// One `hw` device, bf16 compute on f16 weights, default efficiencies (its datasheet bandwidth
/// times 0.8, even where the catalog has a measured one), no latency terms: the bare roofline
/// (the serving tests start from it too).
pub(crate) fn deployment(hw: &str) -> Deployment {
    let mut hardware = Catalog::builtin().hardware(hw).unwrap().clone();
    hardware.measured_bandwidth_gbs = None;
    Deployment {
        hardware,
        devices: 1,
        split: Split::Tensor,
        interconnect: None,
        compute_dtype: "bf16".into(),
        format: WeightFormat::F16,
        expert_format: None,
        kv_bytes: 2.0,
        efficiency: Efficiency::default(),
        launches: Launches::NONE,
        dequant_ops: None,
        overhead_s: 0.0,
    }
}

fn tiny() -> Model {
    Catalog::builtin().model("tiny").unwrap().clone()
}

/// Work done by shared matmuls alone.
fn matmuls(flops: f64, bytes: f64) -> Work {
    Work {
        matmuls: Part { flops, bytes },
        ..Work::default()
    }
}

#[test]
fn roofline_takes_the_slower_side() {
    let d = deployment("h100-sxm");
    let m = tiny();
    // 1e12 FLOPs at 989.5e12 · 0.5 = 2.0212 ms; 1e9 bytes at 3350e9 · 0.8 = 0.3731 ms.
    let t = d.step(&m, matmuls(1e12, 1e9), 1).unwrap();
    assert!((t.total_s - 1e12 / (989.5e12 * 0.5)).abs() < 1e-12);
    assert_eq!(t.bound(), "compute");
    let t = d.step(&m, matmuls(1e9, 1e10), 1).unwrap();
    assert!((t.total_s - 1e10 / (3350e9 * 0.8)).abs() < 1e-12);
    assert_eq!(t.bound(), "memory");
}

#[test]
fn a_measured_bandwidth_replaces_the_efficiency() {
    // The 330 W A100 streams 1700 GB/s (gpt-fast's README): 1.7e9 bytes take 1 ms whatever
    // the bandwidth efficiency.
    let mut d = deployment("a100-80gb-330w");
    d.hardware = Catalog::builtin()
        .hardware("a100-80gb-330w")
        .unwrap()
        .clone();
    d.efficiency.bandwidth = 0.3;
    let t = d.step(&tiny(), matmuls(0.0, 1.7e9), 1).unwrap();
    assert!((t.memory_s - 1e-3).abs() < 1e-12, "{}", t.memory_s);
}

#[test]
fn launches_and_dequant_add_to_the_roofline() {
    let m = tiny();
    let mut d = deployment("rtx-4090");
    d.launches = Launches {
        per_kernel_s: 5e-6,
        per_layer: 10.0,
        per_step: 4.0,
    };
    d.format = WeightFormat::Q4_0;
    // No unpacking figure: an upper bound, said so.
    assert!(d.upper_bound_reason().unwrap().contains("upper bound"));
    d.dequant_ops = Some(3.0);
    assert_eq!(d.upper_bound_reason(), None);
    // Memory: 1e9 bytes at 1008e9 · 0.8. Launches: (2 · 10 + 4) · 5 µs = 120 µs.
    // Dequant: tiny's weights touched by one token (73984 + 64000 + 64 + 64 = 138112
    // weights) · 3 ops / 82.6e12.
    let t = d.step(&m, matmuls(0.0, 1e9), 1).unwrap();
    let memory = 1e9 / (1008e9 * 0.8);
    let dequant = 138_112.0 * 3.0 / 82.6e12;
    assert!((t.launch_s - 120e-6).abs() < 1e-15);
    assert!((t.dequant_s - dequant).abs() < 1e-18, "{}", t.dequant_s);
    assert!((t.total_s - (memory + 120e-6 + dequant)).abs() < 1e-12);
}

#[test]
fn tensor_parallel_divides_work_and_adds_all_reduces() {
    let m = tiny();
    let mut d = deployment("h100-sxm");
    d.devices = 4;
    let w = matmuls(0.0, 4e10);
    assert!(d.step(&m, w, 1).is_err());
    d.interconnect = Some(crate::latency::interconnect("nvlink4").unwrap());
    // Memory-bound 4e10 bytes over 4 devices: 1e10 / 2680e9. All-reduces: 2 per layer · 2
    // layers, each 6 µs + 2 · 3/4 · (64 · 2 bytes) / 370e9.
    let t = d.step(&m, w, 1).unwrap();
    let ar = 6e-6 + 1.5 * 128.0 / 370e9;
    let want = 1e10 / (3350e9 * 0.8) + 4.0 * ar;
    assert!((t.total_s - want).abs() < 1e-12, "{} vs {want}", t.total_s);
    // A layer split divides nothing and adds 3 hops of 6 µs + 128 / 370e9.
    d.split = Split::Layers;
    let t = d.step(&m, w, 1).unwrap();
    let want = 4e10 / (3350e9 * 0.8) + 3.0 * (6e-6 + 128.0 / 370e9);
    assert!((t.total_s - want).abs() < 1e-12, "{} vs {want}", t.total_s);
}

#[test]
fn each_kind_of_kernel_meets_its_own_roofline() {
    // Compute-bound matmuls (1e12 FLOPs, 1e9 bytes) then memory-bound attention (1e10 FLOPs,
    // 1e10 bytes) run one after the other: 2.0212 ms + 3.7313 ms, not the 3.7313 ms + a
    // little that one roofline over their sums would give.
    let d = deployment("h100-sxm");
    let w = Work {
        matmuls: Part {
            flops: 1e12,
            bytes: 1e9,
        },
        attention: Part {
            flops: 1e10,
            bytes: 1e10,
        },
        ..Work::default()
    };
    let (flops_per_s, bytes_per_s) = (989.5e12 * 0.5, 3350e9 * 0.8);
    let t = d.step(&tiny(), w, 1).unwrap();
    let want = 1e12 / flops_per_s + 1e10 / bytes_per_s;
    assert!((t.total_s - want).abs() < 1e-15, "{} vs {want}", t.total_s);
    assert!((t.compute_s - 1.01e12 / flops_per_s).abs() < 1e-15);
    assert!((t.memory_s - 1.1e10 / bytes_per_s).abs() < 1e-15);
    assert!(t.roofline_s > t.compute_s.max(t.memory_s));
    assert!(t.roofline_s < t.compute_s + t.memory_s);
    // Split over 4 devices by tensor parallelism, every kind's work is a quarter.
    let mut tp = d.clone();
    tp.devices = 4;
    tp.interconnect = Some(crate::latency::interconnect("nvlink4").unwrap());
    let q = tp.step(&tiny(), w, 1).unwrap();
    assert!((q.roofline_s - want / 4.0).abs() < 1e-15);
}

#[test]
fn owned_pricing_by_hand() {
    let p = Pricing::Owned {
        purchase_usd: 30_000.0,
        lifetime_years: 4.0,
        power_w: 700.0,
        pue: 1.25,
        usd_per_kwh: 0.10,
        hosting_usd_per_kw_year: 1_000.0,
        utilization: 0.5,
    };
    // 30000 / 35064 h = 0.855578; 0.7 kW · 1.25 · 0.10 = 0.0875; 0.7 · 1000 / 8766 = 0.079854.
    // Sum 1.022932 per hour; at half utilization, 2.045865 per busy hour.
    let h = p.per_device_hour().unwrap();
    assert!((h - 2.045865).abs() < 1e-5, "{h}");
    assert!(
        Pricing::Rented {
            per_device_hour: 0.0
        }
        .per_device_hour()
        .is_err()
    );
    assert!(
        Pricing::Rented {
            per_device_hour: -2.0
        }
        .per_device_hour()
        .is_err()
    );
}

#[test]
fn efficiency_from_measured_rates() {
    let hw = Catalog::builtin().hardware("h100-sxm").unwrap().clone();
    let e = Efficiency::from_rates(&hw, "bf16", 494.75e12, 2680e9).unwrap();
    assert!((e.compute - 0.5).abs() < 1e-12 && (e.bandwidth - 0.8).abs() < 1e-12);
    assert!(Efficiency::from_rates(&hw, "bf16", 2e15, 1e12).is_err());
    assert!(Efficiency::from_rates(&hw, "int4", 1e12, 1e12).is_err());
}

#[test]
fn from_measured_by_hand() {
    // 1000 tokens/s at $3.60/h: 3.6e6 tokens per hour → $1 per million.
    assert!((from_measured(1000.0, 3.6).unwrap() - 1.0).abs() < 1e-12);
    assert!(from_measured(0.0, 3.6).is_err());
}

#[test]
fn batch_trades_speed_for_cost() {
    let m = Catalog::builtin().model("llama-3.1-8b").unwrap().clone();
    let d = deployment("h100-sxm");
    let price = Pricing::Rented {
        per_device_hour: 3.0,
    };
    let es: Vec<Estimate> = [1, 8, 64, 512]
        .iter()
        .map(|&b| estimate(&m, &d, Some(&price), b, 2048, 512).unwrap())
        .collect();
    // Batch 1 is bandwidth-bound: about 16.1 GB of weights at 2680 GB/s → ~6 ms per token.
    assert!((es[0].tpot_s * 1e3 - 6.0).abs() < 0.3, "{}", es[0].tpot_s);
    for w in es.windows(2) {
        assert!(w[1].usd_per_m_output < w[0].usd_per_m_output);
        assert!(w[1].usd_per_m_output.is_some());
        assert!(w[1].tpot_s >= w[0].tpot_s);
    }
    // 512 sequences of 2048 tokens need 137 GB of KV cache: does not fit in 80 GB.
    assert!(!es[3].fits);
    let front = pareto(&es, None);
    assert_eq!(front.len(), 3);
    assert_eq!(pareto(&es, Some(0.007)).len(), 2);
    assert!(es[0].joules_per_output_token.is_some());
    // Without a price: the same speeds, no dollars.
    let free = estimate(&m, &d, None, 8, 2048, 512).unwrap();
    assert_eq!(free.tpot_s, es[1].tpot_s);
    assert!(free.usd_per_m_output.is_none() && free.usd_per_m_blended.is_none());
}

#[test]
fn expert_parallel_replicates_the_shared_weights_and_gathers_around_each_moe_layer() {
    // tiny with 4 experts, 2 per token: per layer 12288 attention, 256 router, 128 norm and
    // 4 · 24576 expert parameters; a 64000 embedding and a 64000 head (untied), a 64 final norm.
    let mut m = tiny();
    m.experts = 4;
    m.active_experts = 2;
    let mut d = deployment("h100-sxm");
    d.devices = 2;
    d.split = Split::Expert;
    d.interconnect = Some(crate::latency::interconnect("nvlink4").unwrap());
    // Held: all 350016 parameters once, plus a second copy of the 153408 that are not
    // experts (2 · 12672 + 128000 + 64), at 2 bytes.
    assert_eq!(d.weight_bytes_held(&m), (350_016.0 + 153_408.0) * 2.0);
    // Every device reads all the shared weights but half the experts and half the KV:
    // memory (4e9 + 6e10 / 2 + 2e9 / 2) bytes over 3350e9 · 0.8.
    let w = Work {
        matmuls: Part {
            flops: 0.0,
            bytes: 4e9,
        },
        experts: Part {
            flops: 0.0,
            bytes: 6e10,
        },
        attention: Part {
            flops: 0.0,
            bytes: 2e9,
        },
    };
    let t = d.step(&m, w, 1).unwrap();
    let memory = (4e9 + 3e10 + 1e9) / (3350e9 * 0.8);
    assert!(
        (t.memory_s - memory).abs() < 1e-15,
        "{} vs {memory}",
        t.memory_s
    );
    // From the model: one token touches 2 experts per layer, and the shared weights it reads
    // are 2 · 12672 + 64000 head + 64 embedding row + 64 final norm = 89472 parameters.
    let (shared, experts) = crate::account::matmul_work(&m, d.format, 1);
    assert_eq!(shared.bytes, 89_472.0 * 2.0);
    assert_eq!(experts.bytes, 2.0 * 2.0 * 24_576.0 * 2.0);
    // Per MoE layer a gather and a scatter: 2 latencies of 6 µs and one all-reduce's traffic,
    // 2 · 1/2 · 128 bytes over 370e9; 2 layers.
    let comm = 2.0 * (12e-6 + 128.0 / 370e9);
    assert!((t.comm_s - comm).abs() < 1e-15, "{} vs {comm}", t.comm_s);
    assert_eq!(d.kv_copies(&m), 1.0);
    // A dense model, or more devices than experts, cannot be split by experts.
    let e = d.step(&tiny(), w, 1).unwrap_err().to_string();
    assert!(e.contains("--split tensor"), "{e}");
    d.devices = 8;
    assert!(d.step(&m, w, 1).is_err());
}
