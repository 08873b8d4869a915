//! Fixtures for builder unit tests: objects as the API server would hand them over.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Metadata of a stored object: name, namespace, uid and generation set.
pub fn stored_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some("ml".to_owned()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    }
}

/// Parses a spec from JSON, as the API server stores it after defaulting.
pub fn spec<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).expect("test spec must parse")
}
