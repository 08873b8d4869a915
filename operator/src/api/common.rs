//! Types shared by several ModelHub resources.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Standard condition types used by every ModelHub resource.
pub mod condition_type {
    /// The resource serves traffic as specified.
    pub const READY: &str = "Ready";
    /// The children are converging towards a new spec (rollout, scaling).
    pub const PROGRESSING: &str = "Progressing";
    /// Part of the resource is unavailable or failing.
    pub const DEGRADED: &str = "Degraded";
    /// InferenceService only: the model is loaded by at least one replica.
    pub const MODEL_LOADED: &str = "ModelLoaded";
}

/// A reference to one key of a Secret in the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_ref_uses_camel_case_wire_names() {
        let r: SecretKeyRef = serde_json::from_str(r#"{"name":"s","key":"k"}"#).unwrap();
        assert_eq!(r.name, "s");
        assert_eq!(r.key, "k");
    }
}
