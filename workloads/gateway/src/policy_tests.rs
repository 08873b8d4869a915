//! Tests of policy parsing and validation.

use super::*;

fn backend(name: &str, weight: i32) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        service: format!("isvc-{name}"),
        weight,
        endpoints: vec![],
    }
}

fn spec() -> PolicySpec {
    PolicySpec {
        backends: vec![backend("stable", 90), backend("canary", 10)],
        ..Default::default()
    }
}

#[test]
fn spec_weights_apply_until_the_status_has_effective_weights() {
    let p = Policy::compile(&spec()).unwrap();
    assert_eq!(
        p.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [90, 10]
    );
    let mut s = spec();
    s.effective_weights = vec![BackendWeight {
        backend: "canary".into(),
        weight: 40,
    }];
    let p = Policy::compile(&s).unwrap();
    assert_eq!(
        p.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [0, 40],
        "a backend missing from effectiveWeights gets 0"
    );
}

#[test]
fn file_format_parses_and_rejects_unknown_fields() {
    let json = r#"{"backends": [{"name": "a", "service": "isvc-a", "weight": 100,
        "endpoints": [{"http": "127.0.0.1:9000", "grpc": "127.0.0.1:9001"}]}],
        "rules": [{"headers": [{"name": "X-Canary", "exact": "1"}], "backend": "a"}],
        "mirror": {"backend": "a", "percent": 5}, "stickyHeader": "x-user"}"#;
    let s: PolicySpec = serde_json::from_str(json).unwrap();
    let p = Policy::compile(&s).unwrap();
    assert_eq!(p.backends[0].endpoints[0].grpc.unwrap().port(), 9001);
    assert_eq!(p.rules[0].conditions[0].0.as_str(), "x-canary");
    assert_eq!(p.mirror, Some((0, 5)));
    assert_eq!(p.sticky_header.unwrap().as_str(), "x-user");
    let err = serde_json::from_str::<PolicySpec>(r#"{"backends": [], "weights": 1}"#);
    assert!(err.unwrap_err().to_string().contains("unknown field"));
}

#[test]
fn invalid_policies_are_rejected_with_the_reason() {
    let cases: Vec<(PolicySpec, PolicyError)> = vec![
        (PolicySpec::default(), PolicyError::NoBackends),
        (
            PolicySpec {
                backends: vec![backend("a", 50), backend("a", 50)],
                ..Default::default()
            },
            PolicyError::DuplicateBackend("a".into()),
        ),
        (
            PolicySpec {
                backends: vec![backend("a", 101)],
                ..Default::default()
            },
            PolicyError::BadWeight {
                name: "a".into(),
                weight: 101,
            },
        ),
        (
            PolicySpec {
                mirror: Some(MirrorSpec {
                    backend: "nope".into(),
                    percent: 5,
                }),
                ..spec()
            },
            PolicyError::UnknownBackend {
                what: "mirror".into(),
                backend: "nope".into(),
            },
        ),
        (
            PolicySpec {
                mirror: Some(MirrorSpec {
                    backend: "canary".into(),
                    percent: 101,
                }),
                ..spec()
            },
            PolicyError::BadMirrorPercent(101),
        ),
        (
            PolicySpec {
                sticky_header: Some("bad header".into()),
                ..spec()
            },
            PolicyError::BadStickyHeader("bad header".into()),
        ),
    ];
    for (s, want) in cases {
        assert_eq!(Policy::compile(&s).unwrap_err(), want);
    }
}

fn rule(m: HeaderMatchSpec) -> PolicySpec {
    PolicySpec {
        rules: vec![HeaderRuleSpec {
            headers: vec![m],
            backend: "canary".into(),
        }],
        ..spec()
    }
}

fn header(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> HeaderMatchSpec {
    HeaderMatchSpec {
        name: "x-user".into(),
        exact: exact.map(Into::into),
        prefix: prefix.map(Into::into),
        regex: regex.map(Into::into),
    }
}

#[test]
fn header_matches_need_exactly_one_kind_and_a_valid_regex() {
    for bad in [header(None, None, None), header(Some("a"), Some("a"), None)] {
        assert!(matches!(
            Policy::compile(&rule(bad)).unwrap_err(),
            PolicyError::AmbiguousMatch { rule: 0, .. }
        ));
    }
    assert!(matches!(
        Policy::compile(&rule(header(None, None, Some("(")))).unwrap_err(),
        PolicyError::BadRegex { rule: 0, .. }
    ));
}

#[test]
fn matchers_compare_exactly_by_prefix_and_by_whole_value_regex() {
    let m = |h| {
        Policy::compile(&rule(h)).unwrap().rules[0].conditions[0]
            .1
            .clone()
    };
    let exact = m(header(Some("beta"), None, None));
    assert!(exact.matches("beta") && !exact.matches("beta2"));
    let prefix = m(header(None, Some("be"), None));
    assert!(prefix.matches("beta") && !prefix.matches("abeta"));
    let re = m(header(None, None, Some("b[a-z]+|x")));
    assert!(re.matches("beta") && re.matches("x"));
    assert!(!re.matches("beta1"), "a regex describes the whole value");
}

#[test]
fn rate_limits_and_api_keys_are_validated() {
    let with = |rps: f64, burst: i64, header: Option<&str>| PolicySpec {
        rate_limit: Some(crate::policy::RateLimitSpec {
            requests_per_second: rps,
            burst,
            client_header: header.map(Into::into),
        }),
        ..spec()
    };
    let ok = Policy::compile(&with(0.5, 2, Some("X-User"))).unwrap();
    let rl = ok.rate_limit.unwrap();
    assert_eq!((rl.per_second, rl.burst), (0.5, 2.0));
    assert_eq!(rl.client_header.unwrap().as_str(), "x-user");
    for (rps, err) in [(0.0, "0"), (-1.0, "-1"), (f64::NAN, "NaN")] {
        let e = Policy::compile(&with(rps, 1, None)).unwrap_err();
        assert!(matches!(e, PolicyError::BadRate(_)), "{err}: {e}");
    }
    assert_eq!(
        Policy::compile(&with(1.0, 0, None)).unwrap_err(),
        PolicyError::BadBurst(0)
    );
    assert_eq!(
        Policy::compile(&with(1.0, 1, Some("bad header"))).unwrap_err(),
        PolicyError::BadClientHeader("bad header".into())
    );
    let empty_key = PolicySpec {
        api_key: Some(crate::policy::ApiKey(String::new())),
        ..spec()
    };
    assert_eq!(
        Policy::compile(&empty_key).unwrap_err(),
        PolicyError::EmptyApiKey
    );
    // The file spells the fields as the CRD does; Debug never shows the key.
    let parsed: PolicySpec = serde_json::from_value(serde_json::json!({
        "backends": [{"name": "a", "weight": 100}],
        "apiKey": "s3cret",
        "rateLimit": {"requestsPerSecond": 3, "burst": 4}
    }))
    .unwrap();
    assert_eq!(parsed.rate_limit.as_ref().map(|r| r.burst), Some(4));
    assert!(!format!("{parsed:?}").contains("s3cret"));
}
