//! Where the other pods answer: per shard, the internal addresses of its ready pods
//! (what a coordinator calls), and the address of each pod by ordinal, ready or not
//! (what Raft connects to: a pod joins its group before it is Ready). In a pod they
//! come from the Kubernetes API (a watch on the collection's pods: `--peer-selector`
//! without its `modelhub.io/shard` term, each pod's shard from that label, its
//! ordinal from its StatefulSet name suffix, its address from `status.podIP` and the
//! internal port); tests and hand-run clusters name them with
//! `--peer SHARD[/ORDINAL]=HOST:PORT` instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use parking_lot::RwLock;

/// Label of a vectorforge pod with its shard index (set by the operator).
pub const SHARD_LABEL: &str = "modelhub.io/shard";

/// One pod of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Pod name (or the address, for static peers).
    pub name: String,
    pub addr: SocketAddr,
    /// Its ordinal in the shard's StatefulSet (its Raft node id), when known.
    pub ordinal: Option<u32>,
}

/// The pods of each shard, as far as this pod knows now.
pub trait PeerSource: Send + Sync + 'static {
    /// The Ready pods of `shard`.
    fn ready(&self, shard: u32) -> Vec<Peer>;
    /// The address of pod `ordinal` of `shard`, Ready or not.
    fn member(&self, shard: u32, ordinal: u32) -> Option<SocketAddr>;
}

/// Peers named on the command line (`--peer 1=127.0.0.1:7335` or, with the pod's
/// ordinal, `--peer 1/2=127.0.0.1:7335`; repeatable). They count as Ready.
#[derive(Debug, Default)]
pub struct StaticPeers(BTreeMap<u32, Vec<Peer>>);

impl StaticPeers {
    /// Parses `SHARD[/ORDINAL]=HOST:PORT` items.
    pub fn parse(items: &[String]) -> Result<StaticPeers, String> {
        let mut map: BTreeMap<u32, Vec<Peer>> = BTreeMap::new();
        for item in items {
            let (place, addr) = item
                .split_once('=')
                .ok_or_else(|| format!("--peer={item}: expected SHARD[/ORDINAL]=HOST:PORT"))?;
            let (shard, ordinal) = match place.split_once('/') {
                Some((s, o)) => (s, Some(o)),
                None => (place, None),
            };
            let shard: u32 = shard
                .trim()
                .parse()
                .map_err(|_| format!("--peer={item}: {shard:?} is not a shard index"))?;
            let ordinal = ordinal
                .map(|o| {
                    o.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("--peer={item}: {o:?} is not a pod ordinal"))
                })
                .transpose()?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|e| format!("--peer={item}: {addr:?}: {e}"))?;
            map.entry(shard).or_default().push(Peer {
                name: addr.to_string(),
                addr,
                ordinal,
            });
        }
        Ok(StaticPeers(map))
    }

    pub fn shards(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }
}

impl PeerSource for StaticPeers {
    fn ready(&self, shard: u32) -> Vec<Peer> {
        self.0.get(&shard).cloned().unwrap_or_default()
    }

    fn member(&self, shard: u32, ordinal: u32) -> Option<SocketAddr> {
        self.0
            .get(&shard)?
            .iter()
            .find(|p| p.ordinal == Some(ordinal))
            .map(|p| p.addr)
    }
}

/// A StatefulSet pod's ordinal: the number after its name's last `-`.
pub fn ordinal_of(pod_name: &str) -> Option<u32> {
    pod_name.rsplit_once('-')?.1.parse().ok()
}

/// The collection-wide selector: the shard selector without its shard term.
pub fn collection_selector(peer_selector: &str) -> String {
    peer_selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with(&format!("{SHARD_LABEL}=")))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PodPeer {
    shard: u32,
    ready: bool,
    peer: Peer,
}

/// A pod with an address, labelled with its shard and not being deleted; `ready` when
/// its Ready condition is true.
fn pod_peer(pod: &Pod, port: u16) -> Option<(String, PodPeer)> {
    let name = pod.metadata.name.clone()?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let shard = pod
        .metadata
        .labels
        .as_ref()?
        .get(SHARD_LABEL)?
        .parse()
        .ok()?;
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let ip: std::net::IpAddr = status.pod_ip.as_ref()?.parse().ok()?;
    Some((
        name.clone(),
        PodPeer {
            shard,
            ready,
            peer: Peer {
                ordinal: ordinal_of(&name),
                name,
                addr: SocketAddr::new(ip, port),
            },
        },
    ))
}

/// Peers from a watch on the collection's pods.
#[derive(Debug, Default)]
pub struct KubePeers {
    pods: RwLock<BTreeMap<String, PodPeer>>,
}

impl KubePeers {
    /// Starts watching the pods that `selector` picks in `namespace`; the watch
    /// re-lists after errors (with kube's backoff) for as long as the process runs.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        selector: &str,
        port: u16,
    ) -> Arc<KubePeers> {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let peers = Arc::new(KubePeers::default());
        let me = peers.clone();
        let cfg = watcher::Config::default().labels(selector);
        tokio::spawn(async move {
            let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
            let mut pending: Option<BTreeMap<String, PodPeer>> = None;
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(Event::Init) => pending = Some(BTreeMap::new()),
                    Ok(Event::InitApply(pod)) => {
                        if let (Some(p), Some((k, v))) = (pending.as_mut(), pod_peer(&pod, port)) {
                            p.insert(k, v);
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(p) = pending.take() {
                            tracing::info!(pods = p.len(), "peer pods listed");
                            *me.pods.write() = p;
                        }
                    }
                    Ok(Event::Apply(pod)) => me.apply(&pod, port),
                    Ok(Event::Delete(pod)) => {
                        if let Some(n) = &pod.metadata.name {
                            me.pods.write().remove(n);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "watching peer pods"),
                }
            }
        });
        peers
    }

    fn apply(&self, pod: &Pod, port: u16) {
        let Some(name) = pod.metadata.name.clone() else {
            return;
        };
        let mut pods = self.pods.write();
        match pod_peer(pod, port) {
            Some((k, v)) => {
                if pods.get(&k) != Some(&v) {
                    tracing::debug!(pod = k, shard = v.shard, addr = %v.peer.addr, "peer ready");
                }
                pods.insert(k, v);
            }
            None => {
                pods.remove(&name);
            }
        }
    }
}

impl PeerSource for KubePeers {
    fn ready(&self, shard: u32) -> Vec<Peer> {
        self.pods
            .read()
            .values()
            .filter(|p| p.shard == shard && p.ready)
            .map(|p| p.peer.clone())
            .collect()
    }

    fn member(&self, shard: u32, ordinal: u32) -> Option<SocketAddr> {
        self.pods
            .read()
            .values()
            .find(|p| p.shard == shard && p.peer.ordinal == Some(ordinal))
            .map(|p| p.peer.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, shard: &str, ip: Option<&str>, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(SHARD_LABEL.to_owned(), shard.to_owned())].into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            spec: None,
        }
    }

    #[test]
    fn only_ready_pods_with_an_address_are_peers() {
        let kp = KubePeers::default();
        kp.apply(&pod("docs-shard-1-0", "1", Some("10.0.0.5"), true), 6335);
        kp.apply(&pod("docs-shard-1-1", "1", Some("10.0.0.6"), false), 6335);
        kp.apply(&pod("docs-shard-2-0", "2", None, true), 6335);
        kp.apply(&pod("docs-shard-x-0", "x", Some("10.0.0.7"), true), 6335);
        let one = kp.ready(1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].addr, "10.0.0.5:6335".parse().unwrap());
        assert_eq!(one[0].ordinal, Some(0));
        assert!(kp.ready(2).is_empty());
        // Raft reaches pods before they are Ready
        assert_eq!(kp.member(1, 1), Some("10.0.0.6:6335".parse().unwrap()));
        assert_eq!(kp.member(2, 0), None);
        // a pod turning unready leaves the ready set, not the members
        kp.apply(&pod("docs-shard-1-0", "1", Some("10.0.0.5"), false), 6335);
        assert!(kp.ready(1).is_empty());
        assert!(kp.member(1, 0).is_some());
    }

    #[test]
    fn static_peers_and_selectors_parse() {
        let p =
            StaticPeers::parse(&["0=127.0.0.1:7001".into(), "1=127.0.0.1:7002".into()]).unwrap();
        assert_eq!(p.ready(1)[0].addr.port(), 7002);
        assert!(p.ready(2).is_empty());
        for bad in ["7001", "x=127.0.0.1:1", "0=nowhere"] {
            assert!(StaticPeers::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(
            collection_selector("app.kubernetes.io/instance=docs,modelhub.io/shard=1"),
            "app.kubernetes.io/instance=docs"
        );
    }
}
