//! Test harness: an append-only list state machine that fsyncs each applied command and
//! its index, and a cluster of Raft nodes on 127.0.0.1 (ephemeral ports) in temp dirs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vectorforge_raft::{NodeConfig, RaftNode, Role, StateMachine, StaticResolver};

/// An append-only list of (index, command), durable per apply.
pub struct ListSm {
    dir: PathBuf,
    inner: Mutex<Inner>,
    pub installs: AtomicUsize,
}

struct Inner {
    applied: u64,
    items: Vec<(u64, Vec<u8>)>,
    file: File,
}

fn encode(items: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in items {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn decode(b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut o = 0;
    while o + 12 <= b.len() {
        let i = u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let n = u32::from_le_bytes(b[o + 8..o + 12].try_into().unwrap()) as usize;
        if o + 12 + n > b.len() {
            break; // torn tail
        }
        out.push((i, b[o + 12..o + 12 + n].to_vec()));
        o += 12 + n;
    }
    out
}

impl ListSm {
    pub fn open(dir: &Path) -> Arc<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("list.bin");
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut bytes).unwrap();
        }
        let items = decode(&bytes);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        // base index of an installed snapshot, if any
        let base: u64 = std::fs::read_to_string(dir.join("base"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let applied = items.last().map(|(i, _)| *i).unwrap_or(0).max(base);
        Arc::new(ListSm {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                applied,
                items,
                file,
            }),
            installs: AtomicUsize::new(0),
        })
    }

    pub fn items(&self) -> Vec<(u64, Vec<u8>)> {
        self.inner.lock().unwrap().items.clone()
    }

    pub fn commands(&self) -> Vec<Vec<u8>> {
        self.items().into_iter().map(|(_, c)| c).collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("list state machine: {0}")]
pub struct SmError(#[from] std::io::Error);

impl StateMachine for ListSm {
    type Error = SmError;

    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, SmError> {
        let mut g = self.inner.lock().unwrap();
        if index <= g.applied {
            return Ok(Vec::new());
        }
        let rec = encode(&[(index, command.to_vec())]);
        g.file.write_all(&rec)?;
        g.file.sync_data()?;
        g.items.push((index, command.to_vec()));
        g.applied = index;
        Ok((g.items.len() as u64).to_le_bytes().to_vec())
    }

    fn applied_index(&self) -> u64 {
        self.inner.lock().unwrap().applied
    }

    fn build_snapshot(&self, path: &Path) -> Result<u64, SmError> {
        let g = self.inner.lock().unwrap();
        let mut f = File::create(path)?;
        f.write_all(&g.applied.to_le_bytes())?;
        f.write_all(&encode(&g.items))?;
        f.sync_all()?;
        Ok(g.applied)
    }

    fn install_snapshot(&self, path: &Path, index: u64) -> Result<(), SmError> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let items = decode(bytes.get(8..).unwrap_or_default());
        let tmp = self.dir.join("list.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(&items))?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("list.bin"))?;
        std::fs::write(self.dir.join("base"), index.to_string())?;
        File::open(&self.dir)?.sync_all()?;
        let file = OpenOptions::new()
            .append(true)
            .open(self.dir.join("list.bin"))?;
        let mut g = self.inner.lock().unwrap();
        *g = Inner {
            applied: index,
            items,
            file,
        };
        self.installs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,vectorforge_raft=info,openraft=error".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Short timeouts for tests.
pub fn test_config(id: u64, dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::new("test-group", id, dir);
    c.heartbeat = Duration::from_millis(50);
    c.election_timeout_min = Duration::from_millis(300);
    c.election_timeout_max = Duration::from_millis(600);
    c.snapshot_every = 0;
    c.keep_after_snapshot = 0;
    c.segment_bytes = 16 << 10;
    c.snapshot_chunk_bytes = 4 << 10;
    c.connect_timeout = Duration::from_millis(500);
    c.snapshot_install_timeout = Duration::from_secs(5);
    c.max_payload_entries = 32;
    c
}

/// [`test_config`] with automatic snapshots every 100 entries, keeping 10 behind.
pub fn snapshotting_config(id: u64, dir: &Path) -> NodeConfig {
    let mut c = test_config(id, dir);
    c.snapshot_every = 100;
    c.keep_after_snapshot = 10;
    c
}

pub struct TestNode {
    pub node: RaftNode,
    pub sm: Arc<ListSm>,
    pub addr: String,
    /// the tonic server this node's service was mounted into (odd ids), to stop
    mounted: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// A cluster of nodes sharing one resolver; each node's data under `root/<id>`.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub resolver: Arc<StaticResolver>,
    pub nodes: BTreeMap<u64, TestNode>,
    pub config: fn(u64, &Path) -> NodeConfig,
}

impl Cluster {
    pub fn new() -> Self {
        init_tracing();
        Cluster {
            root: tempfile::tempdir().unwrap(),
            resolver: Arc::new(StaticResolver::default()),
            nodes: BTreeMap::new(),
            config: test_config,
        }
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(id.to_string())
    }

    /// Starts (or restarts) node `id` from its directory on a fresh ephemeral port.
    pub async fn start(&mut self, id: u64) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        self.resolver.set(id, addr.clone());
        let dir = self.dir(id);
        let sm = ListSm::open(&dir.join("sm"));
        let node = RaftNode::start((self.config)(id, &dir), sm.clone(), self.resolver.clone())
            .await
            .unwrap();
        // even ids serve alone; odd ids mount the service into a tonic server of their own,
        // as the vectorforge server does beside its other services
        let mounted = if id.is_multiple_of(2) {
            node.serve_on(listener);
            None
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let routes = tonic::service::Routes::new(node.service());
            let incoming = futures::stream::unfold(listener, |l| async move {
                Some((l.accept().await.map(|(s, _)| s), l))
            });
            let h = tokio::spawn(async move {
                let stop = async {
                    let _ = rx.await;
                };
                tonic::transport::Server::builder()
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, stop)
                    .await
                    .unwrap();
            });
            Some((tx, h))
        };
        self.nodes.insert(
            id,
            TestNode {
                node,
                sm,
                addr: addr.clone(),
                mounted,
            },
        );
        addr
    }

    /// Starts node `id` with all its tasks on runtime `rt`, so that shutting that runtime
    /// down stops the node abruptly (a crash of its process, short of losing page cache).
    pub async fn start_in(&mut self, id: u64, rt: &tokio::runtime::Handle) -> String {
        let dir = self.dir(id);
        let sm = ListSm::open(&dir.join("sm"));
        let cfg = (self.config)(id, &dir);
        let resolver = self.resolver.clone();
        let sm2 = sm.clone();
        let (node, addr) = rt
            .spawn(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                resolver.set(id, addr.clone());
                let node = RaftNode::start(cfg, sm2, resolver).await.unwrap();
                node.serve_on(listener);
                (node, addr)
            })
            .await
            .unwrap();
        self.nodes.insert(
            id,
            TestNode {
                node,
                sm,
                addr: addr.clone(),
                mounted: None,
            },
        );
        addr
    }

    /// Forgets node `id` without shutting it down (its runtime is killed by the caller).
    pub fn forget(&mut self, id: u64) -> TestNode {
        self.nodes.remove(&id).unwrap()
    }

    pub fn members(&self) -> BTreeMap<u64, String> {
        self.nodes
            .iter()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Starts nodes `ids` and bootstraps them (every node calls initialize).
    pub async fn start_group(&mut self, ids: &[u64]) {
        for id in ids {
            self.start(*id).await;
        }
        let members = self.members();
        let mut boots = 0;
        for n in self.nodes.values() {
            if n.node.initialize(members.clone()).await.unwrap() {
                boots += 1;
            }
        }
        assert_eq!(boots, 1, "exactly the lowest id bootstraps");
    }

    pub async fn stop(&mut self, id: u64) -> TestNode {
        let mut n = self.nodes.remove(&id).unwrap();
        if let Some((tx, h)) = n.mounted.take() {
            let _ = tx.send(());
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), h)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        n.node.shutdown().await.unwrap();
        n
    }

    /// Waits until the running nodes agree on a leader; returns its id.
    pub async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for n in self.nodes.values() {
                let m = n.node.metrics();
                if m.role == Role::Leader
                    && self
                        .nodes
                        .values()
                        .all(|o| o.node.metrics().leader == Some(m.id))
                {
                    return m.id;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn get(&self, id: u64) -> &TestNode {
        &self.nodes[&id]
    }

    /// Waits until every running node applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) {
        for n in self.nodes.values() {
            n.node
                .raft()
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "applied")
                .await
                .unwrap_or_else(|e| panic!("node {} did not apply {index}: {e}", n.node.id()));
        }
    }

    /// Proposes `count` commands `"{tag}-{i}"` through the leader, `parallel` at a time;
    /// returns the last index.
    pub async fn propose_many(&self, leader: u64, tag: &str, count: usize, parallel: usize) -> u64 {
        let node = &self.get(leader).node;
        let mut last = 0;
        let mut i = 0;
        while i < count {
            let n = parallel.min(count - i);
            let futs = (i..i + n).map(|k| node.propose(format!("{tag}-{k}").into_bytes()));
            for r in futures::future::join_all(futs).await {
                last = last.max(r.unwrap().index);
            }
            i += n;
        }
        last
    }
}

/// [`test_config`] for another Raft group.
pub fn other_group_config(id: u64, dir: &Path) -> NodeConfig {
    let mut c = test_config(id, dir);
    c.group = "other-group".into();
    c
}
