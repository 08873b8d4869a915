//! Admission of an OIP request before it is routed, shared by the REST and gRPC edges:
//! the API key (`Authorization: Bearer <key>` or `api-key: <key>`, compared in constant
//! time) when the policy has one, then the per-client token bucket when it has a rate
//! limit. The client key is the `clientHeader` value, else the presented API key when
//! auth is on, else the peer IP. The gateway's own endpoints never come here.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::bucket::retry_after_secs;
use crate::policy::Policy;

/// Header carrying the API key, as an alternative to `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "api-key";

/// Why a request is refused (never forwarded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing API key: send Authorization: Bearer <key> or an api-key header")]
    MissingKey,
    #[error("invalid API key")]
    WrongKey,
    #[error("rate limit exceeded: retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
}

impl Refusal {
    /// The `reason` label of `gateway_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingKey | Self::WrongKey => "unauthenticated",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// The key the request presents, if any (Bearer first, then `api-key`).
pub fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    let bearer = headers.get(AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes();
        let (scheme, rest) = v.split_at_checked(7)?;
        scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| rest.trim_ascii())
    });
    bearer
        .or_else(|| {
            headers
                .get(API_KEY_HEADER)
                .map(|v| v.as_bytes().trim_ascii())
        })
        .filter(|k| !k.is_empty())
}

/// Equality whose running time depends on the lengths only, not on where the bytes
/// differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    if b.is_empty() {
        return a.is_empty();
    }
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b[i % b.len()];
    }
    std::hint::black_box(diff) == 0
}

/// Checks the API key of a request against `policy` (Ok when it has none).
pub fn authenticate(policy: &Policy, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(expected) = &policy.api_key else {
        return Ok(());
    };
    let presented = presented_key(headers).ok_or(Refusal::MissingKey)?;
    if constant_time_eq(presented, expected.0.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::WrongKey)
    }
}

/// The rate-limit key of a request: kind-prefixed, so a header value cannot collide
/// with an IP.
pub fn client_key(policy: &Policy, headers: &HeaderMap, peer: Option<IpAddr>) -> String {
    let from_header = policy
        .rate_limit
        .as_ref()
        .and_then(|r| r.client_header.as_ref())
        .and_then(|h| headers.get(h))
        .map(|v| format!("h:{}", String::from_utf8_lossy(v.as_bytes())));
    if let Some(k) = from_header {
        return k;
    }
    if policy.api_key.is_some()
        && let Some(k) = presented_key(headers)
    {
        return format!("k:{}", String::from_utf8_lossy(k));
    }
    peer.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"))
}

/// Removes the credentials so the backend never sees the gateway's key.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(AUTHORIZATION);
    headers.remove(API_KEY_HEADER);
}

/// `Refusal::RateLimited` for a bucket's wait.
pub fn rate_limited(wait: std::time::Duration) -> Refusal {
    Refusal::RateLimited {
        retry_after_secs: retry_after_secs(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ApiKey, BackendSpec, PolicySpec, RateLimitSpec};

    fn policy(key: Option<&str>, client_header: Option<&str>) -> Policy {
        Policy::compile(&PolicySpec {
            backends: vec![BackendSpec {
                name: "a".into(),
                service: "a".into(),
                weight: 100,
                endpoints: vec![],
            }],
            api_key: key.map(|k| ApiKey(k.into())),
            rate_limit: Some(RateLimitSpec {
                requests_per_second: 1.0,
                burst: 1,
                client_header: client_header.map(Into::into),
            }),
            ..Default::default()
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_or_api_key_header_authenticates() {
        let p = policy(Some("s3cret"), None);
        assert_eq!(authenticate(&p, &headers(&[])), Err(Refusal::MissingKey));
        let bearer = headers(&[("authorization", "bearer s3cret")]);
        assert_eq!(authenticate(&p, &bearer), Ok(()));
        assert_eq!(authenticate(&p, &headers(&[("api-key", "s3cret")])), Ok(()));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret"] {
            let h = headers(&[("authorization", wrong)]);
            assert_ne!(authenticate(&p, &h), Ok(()), "{wrong}");
        }
        assert_eq!(
            authenticate(&p, &headers(&[("api-key", "nope")])),
            Err(Refusal::WrongKey)
        );
        assert_eq!(authenticate(&policy(None, None), &headers(&[])), Ok(()));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abcabc", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc", b""));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn client_key_prefers_the_header_then_the_api_key_then_the_ip() {
        let ip = Some(IpAddr::from([10, 0, 0, 7]));
        let with_header = policy(Some("k1"), Some("x-client"));
        let h = headers(&[("x-client", "team-a"), ("api-key", "k1")]);
        assert_eq!(client_key(&with_header, &h, ip), "h:team-a");
        let h = headers(&[("api-key", "k1")]);
        assert_eq!(client_key(&with_header, &h, ip), "k:k1");
        assert_eq!(client_key(&policy(None, None), &h, ip), "ip:10.0.0.7");
    }
}
