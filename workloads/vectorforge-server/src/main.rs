//! The `vectorforge` binary: flags and env (the operator's workload contract) into a
//! server configuration, then [`vectorforge_server::server::run`] until SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use modelhub_contract::schedule::Schedule;
use vectorforge::{HnswConfig, PayloadSchemaType, Quantization, SyncPolicy};
use vectorforge_server::backup::bucket::S3Config;
use vectorforge_server::backup::{BackupSettings, RestoreConfig};
use vectorforge_server::cluster::peers::ordinal_of;
use vectorforge_server::params::{VectorParams, parse_distance};
use vectorforge_server::server::{Bootstrap, ClusterSetup, PeerDiscovery, ServerConfig};

/// vectorforge: vector database server with a Qdrant-compatible REST API and a gRPC API.
#[derive(Parser, Debug)]
#[command(name = "vectorforge", version)]
struct Cli {
    /// Where collections, WALs and snapshots live.
    #[arg(long, env = "VECTORFORGE_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
    /// Address both servers bind to.
    #[arg(
        long,
        alias = "bind",
        env = "VECTORFORGE_HOST",
        default_value = "0.0.0.0"
    )]
    host: IpAddr,
    #[arg(long, env = "VECTORFORGE_HTTP_PORT", default_value_t = 6333)]
    http_port: u16,
    #[arg(long, env = "VECTORFORGE_GRPC_PORT", default_value_t = 6334)]
    grpc_port: u16,
    /// Key every request must present (`api-key` header or `Authorization: Bearer`);
    /// health and metrics stay open. Empty: no authentication.
    #[arg(long, env = "VECTORFORGE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// When the WAL is fsynced: before every acknowledgement, or on an interval.
    #[arg(long, env = "VECTORFORGE_WAL_SYNC", default_value = "always", value_parser = ["always", "interval"])]
    wal_sync: String,
    /// Interval of `--wal-sync=interval`, e.g. `100ms`, `1s`.
    #[arg(long, env = "VECTORFORGE_WAL_SYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    wal_sync_interval: Duration,
    /// Largest REST request body in bytes (larger: 413).
    #[arg(long, env = "VECTORFORGE_MAX_REQUEST_BYTES", default_value_t = 32 << 20)]
    max_request_bytes: usize,
    /// Largest snapshot upload in bytes.
    #[arg(long, env = "VECTORFORGE_MAX_UPLOAD_BYTES", default_value_t = 64 << 30)]
    max_upload_bytes: usize,
    /// Default per-request time limit (`?timeout=` overrides it per request).
    #[arg(long, env = "VECTORFORGE_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Snapshot a collection (bounding WAL replay on restart) after this many operations.
    #[arg(long, env = "VECTORFORGE_SNAPSHOT_EVERY_OPS", default_value_t = 10_000)]
    snapshot_every_ops: u64,
    /// Collection to create at start (with --dimension and --distance) if missing.
    #[arg(long, env = "VECTORFORGE_COLLECTION")]
    collection: Option<String>,
    #[arg(long, requires = "collection")]
    dimension: Option<usize>,
    #[arg(long, default_value = "Cosine")]
    distance: String,
    /// HNSW defaults of new collections.
    #[arg(long, default_value_t = 16)]
    hnsw_m: usize,
    #[arg(long, default_value_t = 200)]
    hnsw_ef_construct: usize,
    #[arg(long, default_value_t = 128)]
    hnsw_ef: usize,
    /// Payload index of the start collection as `field=type`; repeatable.
    #[arg(long = "payload-index")]
    payload_indexes: Vec<String>,
    /// Vector quantization of the start collection: `none`, `int8` (a byte per
    /// dimension) or `binary` (a bit per dimension); searches walk the codes and
    /// rescore with the f32 vectors.
    #[arg(long, default_value = "none", value_parser = ["none", "int8", "binary"])]
    quantization: String,
    /// `int8`: the central share of values its ranges are trained on (0.5..=1);
    /// unset: min/max.
    #[arg(long)]
    quantization_quantile: Option<f32>,
    /// Distribution flags of the workload contract. With `--shards` or `--replicas`
    /// above 1, `--peer-selector` or `--peer`, the start collection is distributed:
    /// points live on the shard their id hashes to, any pod coordinates a request over
    /// all shards, the pods of a shard form a Raft group, and they find each other
    /// through the Kubernetes API (`--peer-selector`, in `$POD_NAMESPACE`; the group's
    /// size then follows the VectorCollection's `spec.replicas`) or `--peer` (the size
    /// is `--replicas`). Shard-to-shard calls and Raft use `--raft-port`.
    #[arg(long)]
    shard: Option<u32>,
    #[arg(long)]
    shards: Option<u32>,
    #[arg(long)]
    replicas: Option<u32>,
    #[arg(long)]
    raft_port: Option<u16>,
    #[arg(long)]
    peer_selector: Option<String>,
    /// A read of another shard not answered within this time also goes to a second pod
    /// of that shard (first answer wins); 0 turns hedging off.
    #[arg(long, env = "VECTORFORGE_HEDGE_AFTER", default_value = "100ms", value_parser = parse_duration)]
    hedge_after: Duration,
    /// A pod of another shard as `SHARD=HOST:PORT` (its internal port); repeatable.
    /// Instead of the Kubernetes API, for clusters run by hand and tests.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// This pod's name (downward API), so that it does not call itself.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// This pod's ordinal in its shard (its Raft node id); from the pod name's suffix
    /// when not given.
    #[arg(long)]
    ordinal: Option<u32>,
    /// The address other pods reach this one at (downward API); --host when not given.
    #[arg(long, env = "POD_IP")]
    advertise_host: Option<IpAddr>,
    /// This pod's namespace (downward API), where its peers are watched.
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// Cron schedule (5 fields, UTC; a leading seconds field is allowed) of archives of
    /// the start collection, kept as `<collection>-scheduled-<id>.snapshot`.
    #[arg(long)]
    snapshot_schedule: Option<String>,
    /// Scheduled archives kept on this pod, and backups per shard in the bucket.
    #[arg(long)]
    snapshot_retention: Option<u32>,
    /// Bucket every scheduled archive is uploaded to (by the shard's leader).
    #[command(flatten)]
    backup: BackupBucketArgs,
    /// Bucket, source collection (`NAMESPACE/NAME`) and backup id (default: the newest
    /// complete one) the start collection is restored from before the pod turns Ready.
    #[command(flatten)]
    restore: RestoreArgs,
    /// Log format: text or json.
    #[arg(long, env = "VECTORFORGE_LOG_FORMAT", default_value = "text")]
    log_format: modelhub_telemetry::LogFormat,
}

#[derive(clap::Args, Debug, Default)]
struct BackupBucketArgs {
    /// S3-compatible server URL (unset: AWS S3).
    #[arg(long)]
    backup_s3_endpoint: Option<String>,
    #[arg(long)]
    backup_s3_bucket: Option<String>,
    /// Key prefix in the bucket.
    #[arg(long)]
    backup_s3_prefix: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    backup_s3_region: String,
    #[arg(
        long,
        env = "VECTORFORGE_BACKUP_S3_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    backup_s3_access_key_id: Option<String>,
    #[arg(
        long,
        env = "VECTORFORGE_BACKUP_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    backup_s3_secret_access_key: Option<String>,
}

#[derive(clap::Args, Debug, Default)]
struct RestoreArgs {
    #[arg(long)]
    restore_s3_endpoint: Option<String>,
    #[arg(long)]
    restore_s3_bucket: Option<String>,
    #[arg(long)]
    restore_s3_prefix: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    restore_s3_region: String,
    #[arg(
        long,
        env = "VECTORFORGE_RESTORE_S3_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    restore_s3_access_key_id: Option<String>,
    #[arg(
        long,
        env = "VECTORFORGE_RESTORE_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    restore_s3_secret_access_key: Option<String>,
    /// `NAMESPACE/NAME` of the VectorCollection the backup was taken of.
    #[arg(long)]
    restore_source: Option<String>,
    #[arg(long)]
    restore_backup: Option<String>,
}

/// Schedule, retention, upload bucket and restore source from the flags.
fn backup_settings(cli: &Cli) -> anyhow::Result<Option<BackupSettings>> {
    let schedule = cli
        .snapshot_schedule
        .as_deref()
        .map(Schedule::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--snapshot-schedule: {e}"))?;
    let b = &cli.backup;
    let upload = b.backup_s3_bucket.as_ref().map(|bucket| S3Config {
        endpoint: b.backup_s3_endpoint.clone(),
        bucket: bucket.clone(),
        prefix: b.backup_s3_prefix.clone(),
        region: b.backup_s3_region.clone(),
        access_key_id: b.backup_s3_access_key_id.clone(),
        secret_access_key: b.backup_s3_secret_access_key.clone(),
    });
    if upload.is_some() && schedule.is_none() {
        anyhow::bail!(
            "--backup-s3-bucket needs --snapshot-schedule (backups are the scheduled snapshots)"
        );
    }
    let r = &cli.restore;
    let restore = match (&r.restore_s3_bucket, &r.restore_source) {
        (None, None) => None,
        (Some(bucket), Some(source)) => {
            let (namespace, collection) = source
                .split_once('/')
                .filter(|(n, c)| !n.is_empty() && !c.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("--restore-source={source}: expected NAMESPACE/NAME")
                })?;
            Some(RestoreConfig {
                s3: S3Config {
                    endpoint: r.restore_s3_endpoint.clone(),
                    bucket: bucket.clone(),
                    prefix: r.restore_s3_prefix.clone(),
                    region: r.restore_s3_region.clone(),
                    access_key_id: r.restore_s3_access_key_id.clone(),
                    secret_access_key: r.restore_s3_secret_access_key.clone(),
                },
                namespace: namespace.to_owned(),
                collection: collection.to_owned(),
                backup: r.restore_backup.clone(),
            })
        }
        _ => anyhow::bail!("a restore needs both --restore-s3-bucket and --restore-source"),
    };
    if restore.is_some() && cli.collection.is_none() {
        anyhow::bail!("a restore needs the start collection (--collection, --dimension)");
    }
    if schedule.is_none() && restore.is_none() {
        return Ok(None);
    }
    Ok(Some(BackupSettings {
        schedule,
        retention: cli.snapshot_retention.unwrap_or(3).max(1) as usize,
        upload,
        restore,
    }))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 100ms, 5s, 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    }
}

fn config(cli: &Cli) -> anyhow::Result<ServerConfig> {
    let sync = match cli.wal_sync.as_str() {
        "interval" => SyncPolicy::Interval {
            millis: u64::try_from(cli.wal_sync_interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        },
        _ => SyncPolicy::Always,
    };
    let hnsw = HnswConfig {
        m: cli.hnsw_m,
        ef_construct: cli.hnsw_ef_construct,
        ef: cli.hnsw_ef,
        ..HnswConfig::default()
    };
    let quantization = match (cli.quantization.as_str(), cli.quantization_quantile) {
        ("int8", quantile) => Quantization::Int8 {
            quantile,
            always_ram: false,
            global_range: false,
        },
        (_, Some(_)) => {
            anyhow::bail!("--quantization-quantile applies to --quantization=int8 only")
        }
        ("binary", None) => Quantization::Binary { always_ram: false },
        _ => Quantization::None,
    };
    let bootstrap = match (&cli.collection, cli.dimension) {
        (Some(name), Some(size)) => {
            let distance =
                parse_distance(&cli.distance).map_err(|e| anyhow::anyhow!("--distance: {e}"))?;
            let mut payload_indexes = Vec::new();
            for spec in &cli.payload_indexes {
                let (field, kind) = spec.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("--payload-index={spec}: expected field=type")
                })?;
                let kind =
                    PayloadSchemaType::from_json(&serde_json::Value::String(kind.to_string()))
                        .map_err(|e| anyhow::anyhow!("--payload-index={spec}: {e}"))?;
                payload_indexes.push((field.to_string(), kind));
            }
            Some(Bootstrap {
                name: name.clone(),
                vector: VectorParams {
                    size,
                    distance,
                    hnsw_config: None,
                    on_disk: None,
                },
                payload_indexes,
                quantization,
            })
        }
        (Some(_), None) => anyhow::bail!("--collection needs --dimension"),
        _ => None,
    };
    let shards = cli.shards.unwrap_or(1).max(1);
    // A pod the operator runs (it names its peers by --peer-selector) is always one
    // shard pod of a distributed collection, its shard a Raft group even of one member
    // (so that growing the group later is a membership change, not a migration).
    let distributed = shards > 1
        || cli.replicas.is_some_and(|r| r > 1)
        || cli.peer_selector.is_some()
        || !cli.peers.is_empty();
    let cluster = if distributed {
        let shard = cli.shard.unwrap_or(0);
        if shard >= shards {
            anyhow::bail!("--shard={shard} is not below --shards={shards}");
        }
        if cli.collection.is_none() {
            anyhow::bail!(
                "a distributed start collection (--shards, --replicas, --peer-selector or --peer) needs --collection and --dimension"
            );
        }
        let internal_addr = SocketAddr::new(cli.host, cli.raft_port.unwrap_or(6335));
        let peers = if !cli.peers.is_empty() {
            PeerDiscovery::Static(cli.peers.clone())
        } else {
            match (&cli.peer_selector, &cli.pod_namespace) {
                (Some(selector), Some(namespace)) => PeerDiscovery::Kube {
                    namespace: namespace.clone(),
                    selector: selector.clone(),
                },
                _ => anyhow::bail!(
                    "a distributed collection's pods find each other through --peer-selector (with POD_NAMESPACE) or --peer SHARD=HOST:PORT"
                ),
            }
        };
        let replicas = cli.replicas.unwrap_or(1).max(1);
        let ordinal = match cli
            .ordinal
            .or_else(|| cli.pod_name.as_deref().and_then(ordinal_of))
        {
            Some(o) => o,
            None if replicas > 1 => anyhow::bail!(
                "--replicas above 1: the pod's ordinal comes from POD_NAME (…-<ordinal>) or --ordinal"
            ),
            None => 0,
        };
        let advertise = SocketAddr::new(
            cli.advertise_host.unwrap_or(if cli.host.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                cli.host
            }),
            internal_addr.port(),
        );
        Some(ClusterSetup {
            shard,
            shards,
            replicas,
            ordinal,
            advertise,
            internal_addr,
            self_name: cli
                .pod_name
                .clone()
                .unwrap_or_else(|| internal_addr.to_string()),
            hedge_after: Some(cli.hedge_after).filter(|d| !d.is_zero()),
            peers,
        })
    } else {
        None
    };
    let backup = backup_settings(cli)?;
    if backup.as_ref().is_some_and(|b| b.restore.is_some())
        && let Some(c) = &cluster
        && matches!(c.peers, PeerDiscovery::Static(_))
        && c.replicas > 1
    {
        // followers learn that the restore is done from the VectorCollection's status
        anyhow::bail!(
            "a restore with several replicas per shard needs the Kubernetes API (--peer-selector), not --peer"
        );
    }
    Ok(ServerConfig {
        data_dir: cli.data_dir.clone(),
        http_addr: SocketAddr::new(cli.host, cli.http_port),
        grpc_addr: SocketAddr::new(cli.host, cli.grpc_port),
        api_key: cli.api_key.clone(),
        sync,
        hnsw,
        max_body_bytes: cli.max_request_bytes,
        max_upload_bytes: cli.max_upload_bytes,
        request_timeout: cli.request_timeout,
        snapshot_every_ops: cli.snapshot_every_ops.max(1),
        bootstrap,
        backup,
        namespace: cli
            .pod_namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        cluster,
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vectorforge: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match modelhub_telemetry::init("vectorforge", cli.log_format) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("vectorforge: cannot set up telemetry: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let result = match config(&cli) {
            Ok(cfg) => vectorforge_server::server::run(cfg).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "vectorforge stopped");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distributed_start_needs_a_way_to_find_peers() {
        let parse = |extra: &[&str]| {
            let argv = [
                "vectorforge",
                "--collection=c",
                "--dimension=4",
                "--shards=3",
            ]
            .into_iter()
            .chain(extra.iter().copied());
            let mut cli = Cli::try_parse_from(argv).unwrap();
            cli.pod_namespace = None;
            config(&cli)
        };
        let err = parse(&["--shard=1"]).unwrap_err().to_string();
        assert!(err.contains("--peer-selector"), "{err}");
        let err = parse(&["--shard=3", "--peer=0=127.0.0.1:1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not below --shards=3"), "{err}");
        let cfg = parse(&[
            "--shard=2",
            "--peer=0=127.0.0.1:7001",
            "--peer=1=127.0.0.1:7002",
        ])
        .unwrap();
        let cl = cfg.cluster.unwrap();
        assert!(matches!(cl.peers, PeerDiscovery::Static(p) if p.len() == 2));
        // several replicas form a Raft group: each pod needs its ordinal
        let err = parse(&["--shard=0", "--replicas=3", "--peer=0/1=127.0.0.1:7001"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ordinal"), "{err}");
        let cl = parse(&[
            "--shard=0",
            "--replicas=3",
            "--ordinal=2",
            "--peer=0/1=127.0.0.1:7001",
        ])
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!((cl.replicas, cl.ordinal), (3, 2));
        // one shard, one replica: a plain single-node server
        let argv = ["vectorforge", "--collection=c", "--dimension=4"];
        assert!(
            config(&Cli::try_parse_from(argv).unwrap())
                .unwrap()
                .cluster
                .is_none()
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn the_operator_contract_parses() {
        // Exactly what the operator's builder renders (modelhub-contract).
        let shard = modelhub_contract::vectorforge::ShardArgs::example();
        let argv = std::iter::once("vectorforge".to_owned()).chain(shard.to_args());
        let mut cli = Cli::try_parse_from(argv).unwrap();
        // the downward API gives pods their namespace and name
        cli.pod_namespace = Some("prod".into());
        cli.pod_name = Some("docs-shard-1-0".into());
        assert_eq!(cli.shard, Some(1));
        assert_eq!((cli.shards, cli.replicas), (Some(2), None));
        assert_eq!(cli.raft_port, Some(6335));
        assert_eq!(
            cli.peer_selector.as_deref(),
            Some(shard.peer_selector.as_str())
        );
        assert_eq!(cli.snapshot_schedule, shard.snapshot_schedule);
        assert_eq!(cli.snapshot_retention, Some(3));
        assert_eq!(cli.data_dir, PathBuf::from("/data"));
        assert_eq!((cli.http_port, cli.grpc_port), (6333, 6334));
        let cfg = config(&cli).unwrap();
        assert_eq!(cfg.sync, SyncPolicy::Interval { millis: 100 });
        let cl = cfg.cluster.clone().unwrap();
        assert_eq!(
            (cl.shard, cl.shards, cl.self_name.as_str()),
            (1, 2, "docs-shard-1-0")
        );
        assert_eq!(cl.ordinal, 0, "from the pod name");
        assert_eq!(cl.internal_addr.port(), 6335);
        assert!(
            matches!(&cl.peers, PeerDiscovery::Kube { namespace, selector } if namespace == "prod" && selector == &shard.peer_selector)
        );
        let b = cfg.bootstrap.unwrap();
        assert_eq!((b.name.as_str(), b.vector.size), ("docs", 384));
        assert!(
            matches!(b.quantization, Quantization::Int8 { quantile: Some(q), .. } if (q - 0.99).abs() < 1e-6)
        );
        assert_eq!(
            b.payload_indexes,
            vec![
                ("lang".to_string(), PayloadSchemaType::Keyword),
                ("meta.views".to_string(), PayloadSchemaType::Integer)
            ]
        );
        assert_eq!(
            (cfg.hnsw.m, cfg.hnsw.ef_construct, cfg.hnsw.ef),
            (16, 128, 64)
        );
    }
}
