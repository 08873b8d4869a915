//! Command line: the flags of `modelhub_contract::gateway::GatewayArgs` that the
//! operator writes (`--policy`, `--http-port`, `--grpc-port`), plus local options
//! (`--policy-file` instead of the Kubernetes API, bind address, timeouts, mirror queue).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// ModelHub gateway: routes Open Inference Protocol traffic for one TrafficPolicy.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version)]
pub struct Args {
    /// TrafficPolicy to serve, in $POD_NAMESPACE (watched through the Kubernetes API).
    #[arg(long, required_unless_present = "policy_file")]
    pub policy: Option<String>,
    /// Static policy JSON with backend addresses, re-read on change (no Kubernetes API).
    #[arg(long, conflicts_with = "policy")]
    pub policy_file: Option<PathBuf>,
    /// OIP REST port (also /metrics, /stats, /healthz, /readyz).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// OIP gRPC port.
    #[arg(long, default_value_t = 8081)]
    pub grpc_port: u16,
    /// Address both listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Longest a backend request may take, in milliseconds (gRPC: or the client's deadline).
    #[arg(long, default_value_t = 60_000)]
    pub request_timeout_ms: u64,
    /// Mirror copies queued before further copies are dropped.
    #[arg(long, default_value_t = 1024)]
    pub mirror_queue: usize,
    /// Mirror copies in flight at once.
    #[arg(long, default_value_t = 64)]
    pub mirror_concurrency: usize,
    /// How often the policy file is checked for changes, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub policy_poll_ms: u64,
    /// Longest graceful shutdown waits for in-flight requests, in seconds.
    #[arg(long, default_value_t = 25)]
    pub drain_secs: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: modelhub_telemetry::LogFormat,
}

impl Args {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelhub_contract::gateway::GatewayArgs;

    #[test]
    fn parses_the_args_the_operator_writes() {
        let contract = GatewayArgs {
            policy: "chat".into(),
            http_port: 8080,
            grpc_port: 9091,
        };
        let args =
            Args::try_parse_from(std::iter::once("gateway".to_owned()).chain(contract.to_args()))
                .unwrap();
        assert_eq!(args.policy.as_deref(), Some(contract.policy.as_str()));
        assert_eq!(i32::from(args.http_port), contract.http_port);
        assert_eq!(i32::from(args.grpc_port), contract.grpc_port);
        assert!(args.policy_file.is_none());
    }

    #[test]
    fn needs_a_policy_or_a_file_but_not_both() {
        assert!(Args::try_parse_from(["gateway"]).is_err());
        assert!(Args::try_parse_from(["gateway", "--policy=a", "--policy-file=/x"]).is_err());
        let a = Args::try_parse_from(["gateway", "--policy-file=/x.json"]).unwrap();
        assert_eq!(a.policy_file.unwrap(), PathBuf::from("/x.json"));
    }
}
