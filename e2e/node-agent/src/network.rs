//! Pod networking, as a CNI plugin would do it: a bridge in the root namespace, one network
//! namespace per pod joined to it by a veth pair, pod addresses from a private range, and a
//! forwarder that makes the API server reachable at `127.0.0.1:<port>` inside every pod.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::error::{Error, Result};

/// Prefix of every network namespace the agent creates.
pub const NETNS_PREFIX: &str = "mhpod-";

/// Runs `ip` with `args`, failing with its stderr.
pub async fn ip(args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| Error::io("running ip", e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The pod network: the bridge and the address book of pods.
pub struct Network {
    bridge: String,
    gateway: Ipv4Addr,
    prefix_len: u8,
    apiserver_port: u16,
    /// `namespace/name` → address; an entry lives as long as the pod object.
    addresses: Mutex<HashMap<String, Ipv4Addr>>,
}

/// A pod's network namespace, addressed and wired.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    pub ip: Ipv4Addr,
    pub netns: String,
}

impl PodNetwork {
    /// Path of the namespace handle that `setns` takes.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

impl Network {
    pub fn new(config: &AgentConfig) -> Self {
        Network {
            bridge: config.bridge.clone(),
            gateway: config.gateway,
            prefix_len: config.prefix_len,
            apiserver_port: config.apiserver_port,
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the bridge (idempotent) and removes namespaces a previous run left behind.
    pub async fn init(&self) -> Result<()> {
        if ip(&["link", "show", &self.bridge]).await.is_err() {
            ip(&["link", "add", &self.bridge, "type", "bridge"]).await?;
        }
        let cidr = format!("{}/{}", self.gateway, self.prefix_len);
        ip(&["addr", "replace", &cidr, "dev", &self.bridge]).await?;
        ip(&["link", "set", &self.bridge, "up"]).await?;
        let listing = ip(&["netns", "list"]).await?;
        for line in listing.lines() {
            if let Some(name) = line.split_whitespace().next()
                && name.starts_with(NETNS_PREFIX)
            {
                tracing::info!(
                    netns = name,
                    "removing network namespace left by a previous run"
                );
                if let Err(err) = ip(&["netns", "del", name]).await {
                    tracing::warn!(netns = name, error = %err, "cannot remove stale namespace");
                }
            }
        }
        Ok(())
    }

    /// The node's address on the pod network.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Remembers an address a pod already holds (after an agent restart).
    pub fn reserve(&self, key: &str, addr: Ipv4Addr) {
        if self.contains(addr)
            && let Ok(mut map) = self.addresses.lock()
        {
            let taken = map.iter().any(|(k, a)| *a == addr && k != key);
            if !taken {
                map.insert(key.to_owned(), addr);
            }
        }
    }

    fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        u32::from(addr) & mask == u32::from(self.gateway) & mask && addr != self.gateway
    }

    /// The address of pod `key` (`namespace/name`), allocating the lowest free one.
    pub fn allocate(&self, key: &str) -> Result<Ipv4Addr> {
        let mut map = self
            .addresses
            .lock()
            .map_err(|_| Error::AddressesExhausted("address book poisoned".into()))?;
        if let Some(addr) = map.get(key) {
            return Ok(*addr);
        }
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        let base = u32::from(self.gateway) & mask;
        let size = !mask;
        let used: std::collections::HashSet<Ipv4Addr> = map.values().copied().collect();
        for host in 2..size {
            let addr = Ipv4Addr::from(base + host);
            if addr != self.gateway && !used.contains(&addr) {
                map.insert(key.to_owned(), addr);
                return Ok(addr);
            }
        }
        Err(Error::AddressesExhausted(format!(
            "{}/{}",
            self.gateway, self.prefix_len
        )))
    }

    /// Forgets the address of a pod whose object is gone.
    pub fn release(&self, key: &str) {
        if let Ok(mut map) = self.addresses.lock() {
            map.remove(key);
        }
    }

    /// Creates the namespace of a pod at `addr`, wired to the bridge (replacing a stale one).
    pub async fn setup(&self, addr: Ipv4Addr) -> Result<PodNetwork> {
        let [_, _, c, d] = addr.octets();
        let netns = format!("{NETNS_PREFIX}{c}-{d}");
        let host_if = format!("mhv{c}x{d}");
        let peer_if = format!("mhp{c}x{d}");
        let _ = ip(&["netns", "del", &netns]).await;
        let _ = ip(&["link", "del", &host_if]).await;
        ip(&["netns", "add", &netns]).await?;
        let cidr = format!("{addr}/{}", self.prefix_len);
        let gw = self.gateway.to_string();
        // A MAC derived from the address (as kubenet does) keeps neighbour caches that still
        // hold a previous pod's entry for this address correct.
        let [a, b, _, _] = addr.octets();
        let mac = format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}");
        let _ = ip(&["neigh", "del", &addr.to_string(), "dev", &self.bridge]).await;
        let steps: [Vec<&str>; 10] = [
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
            ],
            vec!["link", "set", &peer_if, "netns", &netns],
            vec!["link", "set", &host_if, "master", &self.bridge],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", &netns, "link", "set", &peer_if, "name", "eth0"],
            vec!["-n", &netns, "link", "set", "eth0", "address", &mac],
            vec!["-n", &netns, "addr", "add", &cidr, "dev", "eth0"],
            vec!["-n", &netns, "link", "set", "eth0", "up"],
            vec!["-n", &netns, "link", "set", "lo", "up"],
            vec!["-n", &netns, "route", "add", "default", "via", &gw],
        ];
        for step in &steps {
            if let Err(err) = ip(step).await {
                let _ = ip(&["netns", "del", &netns]).await;
                return Err(err);
            }
        }
        Ok(PodNetwork { ip: addr, netns })
    }

    /// Removes a pod's namespace (its veth pair goes with it).
    pub async fn teardown(&self, net: &PodNetwork) {
        if let Err(err) = ip(&["netns", "del", &net.netns]).await {
            tracing::warn!(netns = %net.netns, error = %err, "cannot remove network namespace");
        }
    }

    /// Listens on `127.0.0.1:<apiserver port>` inside the pod's namespace and forwards every
    /// connection to the API server in the root namespace, until `stop` fires.
    pub fn start_apiserver_forwarder(
        &self,
        net: &PodNetwork,
        stop: CancellationToken,
    ) -> Result<()> {
        let port = self.apiserver_port;
        let path = net.netns_path();
        let std_listener = std::thread::spawn(move || listen_in_netns(path, port))
            .join()
            .map_err(|_| Error::ContainerConfig("forwarder thread panicked".into()))??;
        let listener =
            TcpListener::from_std(std_listener).map_err(|e| Error::io("forwarder listener", e))?;
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((mut inbound, _)) => {
                            let stop = stop.clone();
                            tokio::spawn(async move {
                                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                                    return;
                                };
                                tokio::select! {
                                    _ = stop.cancelled() => {}
                                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                }
                            });
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "forwarder accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    },
                }
            }
        });
        Ok(())
    }
}

/// Runs on a throw-away thread: joins the namespace at `path`, binds there, returns the socket.
fn listen_in_netns(path: PathBuf, port: u16) -> Result<std::net::TcpListener> {
    let file = std::fs::File::open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // SAFETY: setns on a valid namespace fd only changes this (short-lived) thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(Error::io("setns", std::io::Error::last_os_error()));
    }
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| Error::io("binding the API forwarder", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("forwarder nonblocking", e))?;
    Ok(listener)
}
