//! The sketch against DataSketches itself, hostile bytes, and the step tables.

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::format::{Dense, Form, HLL_PREAMBLE, MODE_HLL};
use crate::merger::Registers;
use crate::user::Repr;
use crate::*;

fn rel_err(est: f64, exact: f64) -> f64 {
    (est - exact).abs() / exact
}

#[test]
fn small_sets_are_exact() {
    let mut s = UserSketch::new();
    for i in 0..100 {
        s.insert(&format!("u{i}"));
        s.insert(&format!("u{i}"));
    }
    assert_eq!(s.estimate().round(), 100.0);
}

#[test]
fn roundtrip_keeps_estimate() {
    let mut s = UserSketch::new();
    for i in 0..50_000 {
        s.insert(&format!("user-{i}"));
    }
    let bytes = s.to_bytes();
    assert!(
        (32_768..33_500).contains(&bytes.len()),
        "HLL_4 at lgK 16 is ~32 KiB dense, got {}",
        bytes.len()
    );
    let back = UserSketch::from_bytes(&bytes).unwrap();
    assert_eq!(back.estimate(), s.estimate());
    assert!(UserSketch::from_bytes(b"garbage").is_err());
}

/// Overlapping partials merged must estimate the union, within the product's 1.5% bound.
#[test]
fn merged_partials_stay_within_error_bound() {
    let mut errors = Vec::new();
    for trial in 0..20u32 {
        let mut merger = SketchMerger::default();
        let n_files = 25;
        let mut exact = std::collections::HashSet::new();
        for f in 0..n_files {
            let mut part = UserSketch::new();
            // Each file sees a window of users overlapping its neighbours.
            for u in (f * 2_000)..(f * 2_000 + 6_000) {
                let id = format!("t{trial}-user-{u}");
                part.insert(&id);
                exact.insert(id);
            }
            let bytes = part.to_bytes();
            merger.add_bytes(&bytes).unwrap();
        }
        errors.push(rel_err(merger.estimate(), exact.len() as f64));
    }
    errors.sort_by(|a, b| a.total_cmp(b));
    let p95 = errors[(errors.len() * 95 / 100).min(errors.len() - 1)];
    assert!(p95 < 0.015, "p95 relative error {p95}");
}

fn sketch(lg_k: u8, ids: std::ops::Range<u32>, salt: u32) -> HllSketch {
    let mut s = HllSketch::new(lg_k, HllType::Hll8).unwrap();
    for i in ids {
        s.update(raw_bytes::from_str(&format!("{salt}-{i}")));
    }
    s
}

/// Serialized as the ETL stores it (HLL_4 through a union) or as HLL_8.
fn stored(s: &HllSketch, hll8: bool) -> Vec<u8> {
    let mut u = HllUnion::new(s.lg_config_k()).unwrap();
    u.update(s);
    u.to_sketch(if hll8 { HllType::Hll8 } else { HllType::Hll4 })
        .serialize()
}

fn registers(s: &HllSketch) -> Vec<u8> {
    let b = {
        let mut u = HllUnion::new(s.lg_config_k()).unwrap();
        u.update(s);
        u.to_sketch(HllType::Hll8).serialize()
    };
    match Form::parse(&b).unwrap() {
        Form::Dense(Dense::Hll8 { regs, .. }) => regs.to_vec(),
        Form::Coupons(raw) => {
            let mut r = Registers::new(s.lg_config_k());
            r.add_coupons(raw);
            r.regs.to_vec()
        }
        _ => Vec::new(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Merging stored bytes gives DataSketches' own union: the same registers, the same
    /// composite estimate; a union of small sets stays the library's coupon estimate.
    #[test]
    fn merger_is_a_datasketches_union(
        parts in proptest::collection::vec(
            (proptest::sample::select(vec![12u8, 14, 16, 17]), 0u32..40_000, 1u32..20_000, proptest::bool::ANY),
            1..6,
        )
    ) {
        let mut ours = SketchMerger::default();
        let mut theirs = HllUnion::new(LG_K).unwrap();
        let mut dense = 0;
        for (i, (lg_k, start, len, hll8)) in parts.iter().enumerate() {
            let s = sketch(*lg_k, *start..start + len, i as u32 % 2);
            let bytes = stored(&s, *hll8);
            dense += usize::from(bytes[7] & 3 == MODE_HLL);
            ours.add_bytes(&bytes).unwrap();
            theirs.update(&HllSketch::deserialize(&bytes).unwrap());
        }
        // One sketch alone is the library's union of it, except a dense one larger than
        // LG_K, folded down (its own estimator no longer applies); any other dense result
        // is the library's composite estimate; a coupon result its coupon estimate.
        let their_bytes = theirs.to_sketch(HllType::Hll8).serialize();
        let alone = parts.len() == 1 && (dense == 0 || parts[0].0 <= LG_K);
        let expected = if their_bytes[7] & 3 == MODE_HLL && !alone {
            theirs.composite_estimate()
        } else {
            theirs.estimate()
        };
        let got = ours.estimate();
        proptest::prop_assert!(
            (got - expected).abs() <= expected.abs() * 1e-9,
            "ours {got} theirs {expected}"
        );
        let finished = ours.finish();
        let live = HllSketch::deserialize(&finished.to_bytes()).unwrap();
        let want = theirs.to_sketch(HllType::Hll8);
        proptest::prop_assert_eq!(live.lg_config_k(), want.lg_config_k());
        proptest::prop_assert_eq!(registers(&live), registers(&want));
    }

    /// However the inputs are grouped into partial unions, the answer is the same: what a
    /// cached partial union of a range's days or months relies on.
    #[test]
    fn grouping_does_not_change_the_answer(
        parts in proptest::collection::vec(
            (proptest::sample::select(vec![14u8, 16]), 0u32..30_000, 1u32..12_000, proptest::bool::ANY),
            1..7,
        ),
        split in 0usize..7,
    ) {
        let stored_parts: Vec<Vec<u8>> = parts
            .iter()
            .enumerate()
            .map(|(i, (lg_k, start, len, live))| {
                let s = sketch(*lg_k, *start..start + len, i as u32 % 3);
                if *live && *lg_k == LG_K {
                    // A live sketch, as the ETL holds it, through its own bytes.
                    let mut u = UserSketch::new();
                    for id in *start..start + len {
                        u.insert(&format!("{}-{id}", i as u32 % 3));
                    }
                    u.to_bytes()
                } else {
                    stored(&s, false)
                }
            })
            .collect();
        let mut direct = SketchMerger::default();
        for b in &stored_parts {
            direct.add_bytes(b).unwrap();
        }
        let split = split.min(stored_parts.len());
        let mut whole = SketchMerger::default();
        for group in [&stored_parts[..split], &stored_parts[split..]] {
            let mut g = SketchMerger::default();
            for b in group {
                g.add(&UserSketch::from_bytes(b).unwrap());
            }
            whole.add(&g.finish().into_stored());
        }
        proptest::prop_assert_eq!(whole.estimate(), direct.estimate());
        let (a, b) = (whole.finish().to_bytes(), direct.finish().to_bytes());
        let (a, b) = (HllSketch::deserialize(&a).unwrap(), HllSketch::deserialize(&b).unwrap());
        proptest::prop_assert_eq!(registers(&a), registers(&b));
    }

    /// Every suffix union it gives is the merger's union of the same sketches, byte for
    /// byte; it gives one whenever the suffix has two sketches and a dense one.
    #[test]
    fn suffix_unions_are_the_mergers(
        parts in proptest::collection::vec((0u32..30_000, 1u32..14_000), 2..7),
    ) {
        let run: Vec<UserSketch> = parts
            .iter()
            .enumerate()
            .map(|(i, (start, len))| {
                let s = sketch(LG_K, *start..start + len, i as u32 % 3);
                UserSketch::from_bytes(&stored(&s, i % 2 == 1)).unwrap()
            })
            .collect();
        let refs: Vec<&UserSketch> = run.iter().collect();
        let dense: Vec<bool> = run.iter().map(|s| s.to_bytes()[7] & 3 == MODE_HLL).collect();
        match SuffixUnions::new(&refs) {
            None => proptest::prop_assert!(!dense.contains(&true)),
            Some(su) => {
                let su = SuffixUnions::from_bytes(su.to_bytes()).unwrap();
                for lo in 0..run.len() {
                    let want = lo + 2 <= run.len() && dense[lo..].contains(&true);
                    match su.union_from(lo) {
                        Some(u) => {
                            proptest::prop_assert!(want, "lo {}", lo);
                            proptest::prop_assert_eq!(
                                u.to_bytes(),
                                SketchMerger::union_of(&run[lo..]).to_bytes()
                            );
                        }
                        None => proptest::prop_assert!(!want, "lo {}", lo),
                    }
                }
            }
        }
    }

    /// Any bytes: an error or a sketch, never a panic, whichever way they come in.
    #[test]
    fn hostile_bytes_never_panic(
        flips in proptest::collection::vec((0usize..33_000, proptest::num::u8::ANY), 0..8),
        cut in 0usize..34_000,
        raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
    ) {
        let base = stored(&sketch(16, 0..30_000, 7), false);
        let mut b = base.clone();
        for (at, v) in flips {
            if let Some(x) = b.get_mut(at) {
                *x = v;
            }
        }
        b.truncate(cut.max(1));
        for bytes in [&b, &raw] {
            let mut m = SketchMerger::default();
            m.add_bytes(&base).unwrap();
            let _ = m.add_bytes(bytes);
            let _ = m.estimate();
            if let Ok(s) = UserSketch::from_bytes(bytes) {
                let _ = s.estimate();
                let mut m = SketchMerger::default();
                m.add(&s);
                m.add(&s);
                let _ = m.finish().to_bytes();
            }
        }
    }
}

/// A step table with bytes flipped or cut is refused or, if it still reads as one,
/// answers without panicking; one with more than 15 steps in a register is not built.
#[test]
fn hostile_step_tables_never_panic() {
    let days: Vec<UserSketch> = (0..6u32)
        .map(|d| {
            UserSketch::from_bytes(&stored(&sketch(16, d * 3_000..d * 3_000 + 9_000, 1), false))
                .unwrap()
        })
        .collect();
    let refs: Vec<&UserSketch> = days.iter().collect();
    let good = SuffixUnions::new(&refs).unwrap().to_bytes().to_vec();
    assert!(good.len() < 2 * 65_536, "{} bytes", good.len());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..300 {
        let mut b = good.clone();
        for _ in 0..1 + round % 4 {
            let at = next() as usize % b.len();
            b[at] = next() as u8;
        }
        if round % 3 == 0 {
            b.truncate(next() as usize % b.len());
        }
        if let Ok(t) = SuffixUnions::from_bytes(&b) {
            for lo in 0..8 {
                let mut m = SketchMerger::default();
                t.add_union_from(lo, &mut m);
                let _ = m.estimate();
            }
        }
    }
    assert!(SuffixUnions::from_bytes(&good[..good.len() - 1]).is_err());
    assert!(SuffixUnions::from_bytes(&[]).is_err());
    // Sixteen days each one higher than the next in register 0: sixteen steps.
    let rising: Vec<UserSketch> = (0..16u8)
        .map(|d| {
            let mut r = Registers::new(LG_K);
            r.regs.fill(1);
            r.regs[0] = 20 - d;
            UserSketch {
                repr: Repr::Live(r.to_sketch().unwrap()),
            }
            .into_stored()
        })
        .collect();
    let refs: Vec<&UserSketch> = rising.iter().collect();
    assert!(SuffixUnions::new(&refs).is_none());
    assert!(SuffixUnions::new(&refs[..15]).is_some());
}

/// A stored sketch is its bytes, half a live one's memory when dense, and merges the same.
#[test]
fn stored_sketches_stay_compact_and_merge_like_live_ones() {
    let mut live = UserSketch::new();
    for i in 0..40_000 {
        live.insert(&format!("user-{i}"));
    }
    let stored = live.clone().into_stored();
    assert!(stored.heap_bytes() < 34_000, "{}", stored.heap_bytes());
    assert!(live.heap_bytes() >= 65_536);
    assert_eq!(stored.estimate(), live.estimate());
    let mut other = UserSketch::new();
    for i in 30_000..60_000 {
        other.insert(&format!("user-{i}"));
    }
    let mut a = SketchMerger::default();
    a.add(&live);
    a.add(&other);
    let mut b = SketchMerger::default();
    b.add(&stored);
    b.add(&other.clone().into_stored());
    assert_eq!(a.estimate(), b.estimate());
    assert!(rel_err(b.estimate(), 60_000.0) < 0.015, "{}", b.estimate());
    // One stored sketch alone keeps its own (HIP) estimate.
    let mut one = SketchMerger::default();
    one.add(&stored);
    assert_eq!(one.estimate(), live.estimate());
    // Inserting into a stored sketch makes it live again, with nothing lost.
    let mut grown = stored.clone();
    grown.insert("someone-new");
    assert!(grown.estimate() >= stored.estimate());
}

/// The format's extremes: the smallest and largest sketches it allows merge (at the smaller
/// size, as the library's union does), and 10 MB that only look like a sketch are refused.
#[test]
fn extreme_sketch_sizes_and_inputs() {
    let tiny = stored(&sketch(4, 0..1_000, 1), false);
    let huge = stored(&sketch(21, 0..3_000_000, 1), true);
    assert_eq!(huge.len(), HLL_PREAMBLE + (1 << 21));
    let mut m = SketchMerger::default();
    m.add_bytes(&huge).unwrap();
    assert!(
        rel_err(m.estimate(), 3_000_000.0) < 0.01,
        "{}",
        m.estimate()
    );
    m.add_bytes(&tiny).unwrap();
    let s = HllSketch::deserialize(&m.finish().to_bytes()).unwrap();
    assert_eq!(s.lg_config_k(), 4);
    let mut theirs = HllUnion::new(LG_K).unwrap();
    theirs.update(&HllSketch::deserialize(&huge).unwrap());
    theirs.update(&HllSketch::deserialize(&tiny).unwrap());
    assert_eq!(registers(&s), registers(&theirs.to_sketch(HllType::Hll8)));
    // A valid header in front of 10 MB of bytes out of range.
    let mut big = huge[..HLL_PREAMBLE].to_vec();
    big.resize(10 << 20, 0xff);
    assert!(UserSketch::from_bytes(&big).is_err());
    assert!(SketchMerger::default().add_bytes(&big).is_err());
    assert!(UserSketch::from_bytes(&vec![0u8; 10 << 20]).is_err());
}

/// A lake written at lgK 14 still answers, at lgK 14's precision, merged with new sketches.
#[test]
fn older_smaller_sketches_merge_at_their_size() {
    let old = stored(&sketch(14, 0..50_000, 1), false);
    let new = stored(&sketch(16, 25_000..75_000, 1), false);
    let mut m = SketchMerger::default();
    m.add_bytes(&old).unwrap();
    m.add_bytes(&new).unwrap();
    let s = HllSketch::deserialize(&m.finish().to_bytes()).unwrap();
    assert_eq!(s.lg_config_k(), 14);
    assert!(rel_err(s.estimate(), 75_000.0) < 0.03, "{}", s.estimate());
}
