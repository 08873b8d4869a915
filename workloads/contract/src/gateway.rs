//! The command line of a gateway pod, as the operator writes it into the gateway
//! Deployment's container args (the gateway binary parses the same flags).

/// Environment variable holding the pod's namespace (downward API), where the gateway
/// finds its TrafficPolicy.
pub const NAMESPACE_ENV: &str = "POD_NAMESPACE";

/// Environment variable holding the API key clients must present (from the Secret named
/// by the TrafficPolicy's `spec.gateway.apiKeySecretRef`); unset: no authentication.
pub const API_KEY_ENV: &str = "GATEWAY_API_KEY";

/// Everything the operator tells a gateway pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayArgs {
    /// The TrafficPolicy the gateway serves (in its own namespace).
    pub policy: String,
    /// Open Inference Protocol REST port (also `/metrics`, `/healthz`, `/readyz`).
    pub http_port: i32,
    /// Open Inference Protocol gRPC port.
    pub grpc_port: i32,
}

impl GatewayArgs {
    /// The container args, `--flag=value` each.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("--policy={}", self.policy),
            format!("--http-port={}", self.http_port),
            format!("--grpc-port={}", self.grpc_port),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_the_policy_and_ports() {
        let args = GatewayArgs {
            policy: "chat".into(),
            http_port: 8080,
            grpc_port: 8081,
        };
        assert_eq!(
            args.to_args(),
            ["--policy=chat", "--http-port=8080", "--grpc-port=8081"]
        );
    }
}
