//! W3C trace-context propagation over HTTP headers (also gRPC metadata, which is HTTP/2
//! headers underneath).
//!
//! `extract` turns incoming `traceparent` / `tracestate` headers into a parent context
//! for the request span; `inject` writes the current span's context into outgoing
//! headers. Both are no-ops unless a propagator was installed by [`crate::init`].

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes the trace context carried by `headers` (if any) the parent of `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|prop| {
        prop.extract(&HeaderExtractor(headers))
    });
    // Fails only when the span is disabled; there is nothing to attach to then.
    let _ = span.set_parent(parent);
}

/// Writes the trace context of `span` into `headers`, for an outgoing request.
pub fn inject_into_headers(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|prop| {
        prop.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injector_skips_invalid_header_values() {
        let mut headers = HeaderMap::new();
        HeaderInjector(&mut headers).set("traceparent", "00-abc".into());
        HeaderInjector(&mut headers).set("bad header", "x".into());
        assert_eq!(headers.len(), 1);
        assert_eq!(HeaderExtractor(&headers).get("traceparent"), Some("00-abc"));
    }
}
