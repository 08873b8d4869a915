//! Tests of the routing decision.

use http::{HeaderMap, HeaderValue};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::policy::{BackendSpec, HeaderMatchSpec, HeaderRuleSpec, MirrorSpec, Policy, PolicySpec};

fn spec(weights: &[(&str, i32)]) -> PolicySpec {
    PolicySpec {
        backends: weights
            .iter()
            .map(|(n, w)| BackendSpec {
                name: (*n).into(),
                service: (*n).into(),
                weight: *w,
                endpoints: vec![],
            })
            .collect(),
        ..Default::default()
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn weighted_choice_follows_the_weights() {
    let p = Policy::compile(&spec(&[("a", 70), ("b", 20), ("c", 10)])).unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let mut counts = [0u32; 3];
    for _ in 0..20_000 {
        counts[route(&p, &HeaderMap::new(), &mut rng).unwrap().backend] += 1;
    }
    for (got, want) in counts.iter().zip([0.7, 0.2, 0.1]) {
        let share = f64::from(*got) / 20_000.0;
        assert!((share - want).abs() < 0.02, "{counts:?}");
    }
}

#[test]
fn zero_weights_never_win_and_all_zero_is_an_error() {
    let p = Policy::compile(&spec(&[("a", 0), ("b", 100)])).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    assert!((0..1000).all(|_| route(&p, &HeaderMap::new(), &mut rng).unwrap().backend == 1));
    let p = Policy::compile(&spec(&[("a", 0)])).unwrap();
    assert_eq!(route(&p, &HeaderMap::new(), &mut rng), Err(AllWeightsZero));
}

#[test]
fn first_matching_rule_wins_and_all_its_headers_must_match() {
    let mut s = spec(&[("a", 100), ("b", 0), ("c", 0)]);
    let m = |name: &str, exact: &str| HeaderMatchSpec {
        name: name.into(),
        exact: Some(exact.into()),
        prefix: None,
        regex: None,
    };
    s.rules = vec![
        HeaderRuleSpec {
            headers: vec![m("x-canary", "1"), m("x-tier", "gold")],
            backend: "b".into(),
        },
        HeaderRuleSpec {
            headers: vec![m("x-canary", "1")],
            backend: "c".into(),
        },
    ];
    let p = Policy::compile(&s).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let both = headers(&[("x-canary", "1"), ("x-tier", "gold")]);
    assert_eq!(
        route(&p, &both, &mut rng).unwrap(),
        Decision {
            backend: 1,
            reason: Reason::Rule(0)
        }
    );
    let one = headers(&[("x-canary", "1")]);
    assert_eq!(route(&p, &one, &mut rng).unwrap().backend, 2);
    let none = headers(&[("x-canary", "0")]);
    assert_eq!(route(&p, &none, &mut rng).unwrap().reason, Reason::Weighted);
}

#[test]
fn sticky_keys_stay_put_and_spread_by_weight() {
    let mut s = spec(&[("a", 75), ("b", 25)]);
    s.sticky_header = Some("x-user".into());
    let p = Policy::compile(&s).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut counts = [0u32; 2];
    for user in 0..4000 {
        let mut h = HeaderMap::new();
        h.insert(
            "x-user",
            HeaderValue::from_str(&format!("user-{user}")).unwrap(),
        );
        let first = route(&p, &h, &mut rng).unwrap();
        assert_eq!(first.reason, Reason::Sticky);
        for _ in 0..3 {
            assert_eq!(route(&p, &h, &mut rng).unwrap(), first);
        }
        counts[first.backend] += 1;
    }
    let share = f64::from(counts[0]) / 4000.0;
    assert!((share - 0.75).abs() < 0.03, "{counts:?}");
    // Without the header: weighted.
    assert_eq!(
        route(&p, &HeaderMap::new(), &mut rng).unwrap().reason,
        Reason::Weighted
    );
}

#[test]
fn a_weight_change_moves_only_keys_towards_the_backend_that_gained() {
    let with = |wa, wb| {
        let mut s = spec(&[("a", wa), ("b", wb)]);
        s.sticky_header = Some("x-user".into());
        Policy::compile(&s).unwrap()
    };
    let (before, after) = (with(90, 10), with(50, 50));
    for user in 0..2000 {
        let key = format!("u{user}");
        let (x, y) = (
            sticky(&before, key.as_bytes()).unwrap(),
            sticky(&after, key.as_bytes()).unwrap(),
        );
        assert!(x == y || (x == 0 && y == 1), "key {key} moved from b to a");
    }
}

#[test]
fn mirror_takes_its_percent_and_skips_its_own_primary() {
    let mut s = spec(&[("a", 100), ("shadow", 0)]);
    s.mirror = Some(MirrorSpec {
        backend: "shadow".into(),
        percent: 30,
    });
    let p = Policy::compile(&s).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let n = (0..10_000)
        .filter(|_| mirror(&p, 0, &mut rng).is_some())
        .count();
    assert!((2800..3200).contains(&n), "{n}");
    assert!((0..100).all(|_| mirror(&p, 1, &mut rng).is_none()));
}
