//! The configuration search on cases small enough to check by hand.
use super::*;

fn search(formats: &[WeightFormat]) -> Search {
    Search {
        isl: 1000,
        osl: 1000,
        max_tpot_s: Some(0.05),
        max_ttft_s: None,
        formats: Some(formats.to_vec()),
        price_kinds: PRICE_FALLBACK.iter().map(|s| (*s).to_owned()).collect(),
        kv_bytes: 2.0,
        stack: None,
    }
}

fn model(name: &str) -> Model {
    Catalog::builtin().model(name).unwrap().clone()
}

#[test]
fn a_model_too_big_for_one_device_wins_on_several() {
    // Llama 3.1 70B in bf16 is 141.1 GB: one 80 GB H100 cannot hold it (Memory), two can.
    let m = model("llama-3.1-70b");
    let r = compare(
        &m,
        &Catalog::builtin(),
        &["h100-sxm".into()],
        &search(&[WeightFormat::F16]),
    )
    .unwrap();
    let p = &r[0];
    let one = p.considered.iter().find(|c| c.devices == 1).unwrap();
    assert!(
        matches!(one.outcome, Outcome::Memory(_)),
        "{:?}",
        one.outcome
    );
    let best = p.best().unwrap();
    assert!(best.devices >= 2 && best.split == "tensor", "{best:?}");
    // Every other configuration that runs lost on cost, each at least the winner's.
    let w = best.usd_per_m_output.unwrap();
    for c in &p.considered {
        if let Outcome::Cost(_) = c.outcome {
            assert!(c.usd_per_m_output.unwrap() >= w);
        }
    }
    // The winner's batch is the largest under the 50 ms limit: one more sequence misses it.
    let sv = best.serving.as_ref().unwrap();
    assert!(sv.tpot_s <= 0.05);
    if sv.limited_by == "latency limit" {
        let hw = Catalog::builtin().hardware("h100-sxm").unwrap().clone();
        let link = usual_link(&hw, best.devices).unwrap();
        let d = Deployment::with_stack(
            &m,
            &hw,
            &stack("vllm").unwrap(),
            best.devices,
            Split::Tensor,
            link,
            WeightFormat::F16,
            "bf16",
            2.0,
        );
        let load = Load {
            isl: 1000,
            osl: 1000,
            batching: Batching::Continuous,
            max_batch: Some(sv.batch + 1),
            max_tpot_s: None,
            requests: None,
        };
        assert!(serve(&m, &d, &load, None).unwrap().tpot_s > 0.05);
    }
    // 8 devices' replicas: an 8-GPU server holds 8 / devices instances.
    assert_eq!(best.replicas, 8 / best.devices);
}

#[test]
fn the_same_part_at_half_the_price_costs_half_per_token() {
    // Two copies of the H100 entry, one at half the price: the same winning configuration,
    // ranked first, at exactly half the cost per token.
    let mut c = Catalog::builtin();
    let mut cheap = c.hardware("h100-sxm").unwrap().clone();
    cheap.name = "h100-half".into();
    cheap.price_per_hour.as_mut().unwrap().value /= 2.0;
    c.hardware.push(cheap);
    let m = model("llama-3.1-8b");
    let r = compare(
        &m,
        &c,
        &["h100-sxm".into(), "h100-half".into()],
        &search(&[WeightFormat::F16]),
    )
    .unwrap();
    assert_eq!(
        (r[0].hardware.as_str(), r[1].hardware.as_str()),
        ("h100-half", "h100-sxm")
    );
    let (a, b) = (r[0].best().unwrap(), r[1].best().unwrap());
    assert_eq!(
        (a.devices, a.split, &a.format),
        (b.devices, b.split, &b.format)
    );
    let ratio = a.usd_per_m_output.unwrap() / b.usd_per_m_output.unwrap();
    assert!((ratio - 0.5).abs() < 1e-12, "{ratio}");
    let why = why_the_winner_wins(&r).unwrap();
    assert!(
        why.starts_with("h100-half wins") && why.contains("2.00x cheaper"),
        "{why}"
    );
}

#[test]
fn formats_a_part_cannot_run_are_left_out_with_the_reason() {
    // The A100 has no fp8 tensor cores: fp8 is refused there, bf16 runs.
    let m = model("llama-3.1-8b");
    let r = compare(
        &m,
        &Catalog::builtin(),
        &["a100-80gb".into()],
        &search(&[WeightFormat::F16, WeightFormat::Fp8]),
    )
    .unwrap();
    let fp8: Vec<&Config> = r[0]
        .considered
        .iter()
        .filter(|c| c.format == "fp8")
        .collect();
    assert!(!fp8.is_empty());
    for c in fp8 {
        match &c.outcome {
            Outcome::Invalid(why) => assert!(why.contains("fp8 tensor cores"), "{why}"),
            o => panic!("{o:?}"),
        }
    }
    assert_eq!(r[0].best().unwrap().format, "f16");
    // Tensor parallelism needs the heads to divide: 32 heads over 12 inf2 chips cannot.
    let r = compare(
        &m,
        &Catalog::builtin(),
        &["inf2".into()],
        &search(&[WeightFormat::F16]),
    )
    .unwrap();
    let twelve = r[0]
        .considered
        .iter()
        .find(|c| c.devices == 12 && c.split == "tensor")
        .unwrap();
    assert!(matches!(&twelve.outcome, Outcome::Invalid(w) if w.contains("heads")));
    // Its own link, unnamed by the user: NeuronLink-v2.
    let two = r[0]
        .considered
        .iter()
        .find(|c| c.devices == 2 && c.split == "tensor")
        .unwrap();
    assert_eq!(two.interconnect.as_deref(), Some("neuronlink-v2"));
}

#[test]
fn an_unpriced_part_ranks_last_and_says_so() {
    let m = model("llama-3.1-8b");
    let mut s = search(&[WeightFormat::F16]);
    s.price_kinds = vec!["on-demand".into()];
    let r = compare(
        &m,
        &Catalog::builtin(),
        &["b300".into(), "h100-sxm".into()],
        &s,
    )
    .unwrap();
    assert_eq!(r[0].hardware, "h100-sxm");
    assert!(r[1].price.is_none());
    assert!(
        r[1].price_note
            .as_ref()
            .unwrap()
            .contains("no price sourced")
    );
    // Fallbacks are named: the H200's capacity block where no on-demand is asked first.
    let mut s = search(&[WeightFormat::F16]);
    s.price_kinds = vec!["1-year".into(), "capacity-block".into()];
    let r = compare(&m, &Catalog::builtin(), &["h200".into()], &s).unwrap();
    assert_eq!(r[0].price.as_ref().unwrap().kind, "capacity-block");
    assert!(
        r[0].price_note
            .as_ref()
            .unwrap()
            .contains("no 1-year price")
    );
}

#[test]
fn the_curve_is_a_front_fastest_first() {
    let pts = front(vec![
        (10.0, 5.0),
        (20.0, 9.0),
        (15.0, 9.5),
        (5.0, 2.0),
        (5.0, 3.0),
    ]);
    assert_eq!(pts, vec![(20.0, 9.0), (10.0, 5.0), (5.0, 2.0)]);
}

#[test]
fn the_tiny_model_on_a_small_part_by_hand() {
    // A part of 1 GB at $1/h, one device or two, bf16 only. The tiny model's weights are
    // 202048 · 2 = 404096 bytes; a sequence of 16 + 16 tokens holds 32 · 256 = 8192 bytes of KV.
    // One device: (0.9e9 − 404096) / 8192 = 109813.97, so 109813 sequences fit, and with no latency limit
    // the batch is that bound. Two devices cost twice the chip-hours for the same work plus
    // their all-reduces, so one device wins.
    let mut c = Catalog::builtin();
    let mut hw = c.hardware("h100-sxm").unwrap().clone();
    hw.name = "small".into();
    hw.memory_gb.value = 1.0;
    hw.max_devices.as_mut().unwrap().value = 2;
    hw.price_per_hour.as_mut().unwrap().value = 1.0;
    c.hardware.push(hw);
    let m = model("tiny");
    let mut s = search(&[WeightFormat::F16]);
    (s.isl, s.osl, s.max_tpot_s) = (16, 16, None);
    let r = compare(&m, &c, &["small".into()], &s).unwrap();
    let p = &r[0];
    // 1 tensor; 2 tensor (4 heads split evenly); 2 layers (2 layers over 2 devices).
    assert_eq!(p.considered.len(), 3);
    let best = p.best().unwrap();
    assert_eq!((best.devices, best.split), (1, "tensor"));
    let sv = best.serving.as_ref().unwrap();
    assert_eq!((sv.batch, sv.limited_by), (109_813, "KV memory"));
    // $ per 1M output tokens: $1/h over the output rate.
    let usd = 1.0 / (sv.output_tokens_per_s * 3600.0) * 1e6;
    assert!((best.usd_per_m_output.unwrap() - usd).abs() < 1e-12);
    for c in &p.considered {
        if c.devices == 2 {
            assert!(matches!(c.outcome, Outcome::Cost(_)), "{:?}", c.outcome);
        }
    }
}
