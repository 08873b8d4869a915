//! API-key authentication: the `api-key` header (Qdrant's) or `Authorization: Bearer`,
//! compared in constant time through SHA-256 digests so that neither the key's content
//! nor its length leaks through timing.

use http::HeaderMap;
use sha2::{Digest, Sha256};

pub struct ApiKey {
    digest: [u8; 32],
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl ApiKey {
    pub fn new(key: &str) -> Self {
        ApiKey {
            digest: digest(key.as_bytes()),
        }
    }

    /// True when the presented key equals the configured one.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let d = digest(presented);
        let mut diff = 0u8;
        for (a, b) in d.iter().zip(self.digest.iter()) {
            diff |= a ^ b;
        }
        std::hint::black_box(diff) == 0
    }

    /// Checks HTTP headers (REST) or gRPC metadata rendered as headers.
    pub fn accepts(&self, h: &HeaderMap) -> bool {
        if let Some(v) = h.get("api-key") {
            return self.matches(v.as_bytes());
        }
        if let Some(v) = h.get(http::header::AUTHORIZATION)
            && let Some(token) = v.as_bytes().strip_prefix(b"Bearer ")
        {
            return self.matches(token);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_key_is_accepted() {
        let k = ApiKey::new("s3cret");
        let mut h = HeaderMap::new();
        assert!(!k.accepts(&h));
        h.insert("api-key", "s3cret".parse().unwrap());
        assert!(k.accepts(&h));
        h.insert("api-key", "s3cre".parse().unwrap());
        assert!(!k.accepts(&h));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(k.accepts(&h));
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!k.accepts(&h));
    }
}
