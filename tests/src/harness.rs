//! Real `nats-server` processes for tests.
//!
//! The binary is found through `NATS_SERVER_BIN`, then the project's `.tools/nats-server/bin`
//! (where `deploy/dev/install-nats-server.sh` puts it), then `PATH`.
//!
//! Every server listens on 127.0.0.1 only, on ports picked at start, with its store in a temp
//! directory that is removed when the [`NatsServer`] (or [`NatsCluster`]) is dropped. A server can
//! be killed (`SIGKILL`), stopped (`SIGTERM`), paused (`SIGSTOP`/`SIGCONT`) and started again on
//! the same ports and store.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// How long a server may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the harness could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No nats-server binary anywhere we look.
    #[error(
        "nats-server not found: run ./deploy/dev/install-nats-server.sh (installs the pinned version into .tools/), \
         or set NATS_SERVER_BIN to a nats-server >= 2.12 binary"
    )]
    BinaryNotFound,
    /// An OS-level failure (spawn, temp dir, ports).
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not become healthy in time.
    #[error("nats-server {name} did not become healthy within {timeout:?}; its log:\n{log}")]
    NotHealthy {
        /// Server name.
        name: String,
        /// How long we waited.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The workspace root (the folder holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is .../tests at compile time.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Locate the nats-server binary: `NATS_SERVER_BIN`, then `.tools/nats-server/bin/nats-server`,
/// then `PATH`.
pub fn nats_server_bin() -> Result<PathBuf, HarnessError> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    let local = workspace_root().join(".tools/nats-server/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nats-server");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(HarnessError::BinaryNotFound)
}

/// A free TCP port on 127.0.0.1 for a process the tests start later.
///
/// Ports come from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), handed
/// out by a process-wide counter and checked bindable. A port taken with `bind(0)` and released
/// is *in* the ephemeral range, so between our release and the child's `bind` any outbound
/// connection (a route dialing a peer, a client reconnecting) may receive it as its source port:
/// a 3-node cluster start failed in CI with `bind: address already in use` on a route port that
/// way. Ports below the range are never given out implicitly, so only an explicit `bind` (which
/// the check catches) can take one.
pub fn free_port() -> Result<u16, HarnessError> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static RANGE: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let range = *RANGE.get_or_init(|| {
        let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())?;
        // Stay clear of well-known services: at least 2,000 ports between 10,000 and the range.
        (low >= 12_000).then_some((10_000, low))
    });
    let Some((lo, hi)) = range else {
        // Unknown or unusual port layout: fall back to the OS's choice.
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(io("binding a free port"))?;
        return Ok(l.local_addr().map_err(io("reading a bound port"))?.port());
    };
    let span = hi - lo;
    // Spread concurrent test processes over the span by their pid.
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) % span + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = lo + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::Io {
        what: "finding a free port below the ephemeral range".into(),
        source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "every port is taken"),
    })
}

/// Settings of one server.
#[derive(Debug, Clone)]
pub struct Config {
    /// `server_name`.
    pub name: String,
    /// Client port (0 = pick a free one).
    pub port: u16,
    /// HTTP monitoring port (0 = pick a free one).
    pub monitor_port: u16,
    /// `jetstream.sync_interval: always` (acked means fsync'd). Production sets it; tests of
    /// throughput may not.
    pub sync_always: bool,
    /// Extra configuration appended verbatim (accounts, authorization, ...).
    pub extra: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "n1".into(),
            port: 0,
            monitor_port: 0,
            sync_always: false,
            extra: String::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct ClusterConf {
    name: String,
    port: u16,
    routes: Vec<u16>,
}

/// One running (or stopped) nats-server process with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    config: Config,
    cluster: Option<ClusterConf>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Start a single server with JetStream on free ports and a fresh temp store, and wait until
    /// it is healthy.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(Config::default())
    }

    /// Start a single server with the given settings.
    pub fn start_with(config: Config) -> Result<Self, HarnessError> {
        let mut s = Self::prepare(config, None)?;
        s.spawn()?;
        s.wait_healthy()?;
        Ok(s)
    }

    fn prepare(mut config: Config, cluster: Option<ClusterConf>) -> Result<Self, HarnessError> {
        if config.port == 0 {
            config.port = free_port()?;
        }
        if config.monitor_port == 0 {
            config.monitor_port = free_port()?;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("shirase-nats-{}-", config.name))
            .tempdir()
            .map_err(io("creating the store dir"))?;
        Ok(Self {
            config,
            cluster,
            dir,
            child: None,
        })
    }

    fn conf_text(&self) -> String {
        let store = self.dir.path().join("store");
        let mut s = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{mport}\n\
             jetstream {{\n  store_dir: {store:?}\n{sync}}}\n",
            name = self.config.name,
            port = self.config.port,
            mport = self.config.monitor_port,
            store = store.display().to_string(),
            sync = if self.config.sync_always {
                "  sync_interval: always\n"
            } else {
                ""
            },
        );
        if let Some(c) = &self.cluster {
            let routes: Vec<String> = c
                .routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            s.push_str(&format!(
                "cluster {{\n  name: {}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                c.name,
                c.port,
                routes.join(", ")
            ));
        }
        s.push_str(&self.config.extra);
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let bin = nats_server_bin()?;
        let conf = self.dir.path().join("nats-server.conf");
        std::fs::write(&conf, self.conf_text()).map_err(io("writing nats-server.conf"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io("opening the server log"))?;
        let log2 = log.try_clone().map_err(io("cloning the log handle"))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io("spawning nats-server"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until `/healthz` answers ok (JetStream ready) or fail with the log's tail.
    pub fn wait_healthy(&self) -> Result<(), HarnessError> {
        self.wait_healthy_within(START_TIMEOUT)
    }

    fn wait_healthy_within(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.healthz() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HarnessError::NotHealthy {
            name: self.config.name.clone(),
            timeout,
            log: self.log_tail(),
        })
    }

    /// Whether the monitoring endpoint answers `/healthz` with 200.
    pub fn healthz(&self) -> bool {
        http_get(self.config.monitor_port, "/healthz").is_some_and(|(status, _)| status == 200)
    }

    /// The last 40 lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.config.port)
    }

    /// Client port.
    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// Monitoring port.
    pub fn monitor_port(&self) -> u16 {
        self.config.monitor_port
    }

    /// Server name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The store dir (JetStream data).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The server's process id while it runs (e.g. to pin it to a CPU with `taskset`).
    pub fn process_id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .map(Pid::from_raw)
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop (`SIGTERM`), waiting for the process to exit (then `SIGKILL` after 20 s).
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = signal::kill(pid, Signal::SIGTERM);
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Freeze the process (`SIGSTOP`): it keeps its sockets but answers nothing. Returns once
    /// the kernel reports every thread stopped (state `T` in `/proc/<pid>/task/*/stat`): a
    /// signal is delivered asynchronously, and on a loaded machine a thread may still run
    /// briefly.
    pub fn pause(&self) {
        let Some(pid) = self.pid() else { return };
        let _ = signal::kill(pid, Signal::SIGSTOP);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !all_threads_stopped(pid.as_raw()) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaw a paused process (`SIGCONT`).
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            let _ = signal::kill(pid, Signal::SIGCONT);
        }
    }

    /// Start again on the same ports and store (after [`kill`](Self::kill) or
    /// [`stop`](Self::stop)) and wait until healthy.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn()?;
        self.wait_healthy()
    }

    /// Start again without waiting for health (a cluster node needs its peers first).
    fn start_again_nowait(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn()
    }

    /// Graceful stop, then start again on the same ports and store.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.start_again()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET on loopback returning the status code and the body; `None` on any
/// failure. Kept dependency-free because the harness polls it before any async runtime may exist.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_owned(),
    ))
}

/// A JetStream cluster of `n` servers on loopback, routes between all of them.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes; index `i` is named `n{i+1}`.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Start `n` nodes (3 or 5 for a quorum) and wait until every node is healthy, which includes
    /// a JetStream meta leader being known.
    pub fn start(n: usize) -> Result<Self, HarnessError> {
        Self::start_with(n, false)
    }

    /// Like [`start`](Self::start), with `sync_interval: always` on every node.
    pub fn start_with(n: usize, sync_always: bool) -> Result<Self, HarnessError> {
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut nodes = Vec::with_capacity(n);
        for (i, &rp) in route_ports.iter().enumerate() {
            let cfg = Config {
                name: format!("n{}", i + 1),
                sync_always,
                ..Config::default()
            };
            let routes = route_ports.iter().copied().filter(|p| *p != rp).collect();
            let cluster = ClusterConf {
                name: "shirase".into(),
                port: rp,
                routes,
            };
            let mut node = NatsServer::prepare(cfg, Some(cluster))?;
            node.spawn()?;
            nodes.push(node);
        }
        for node in &nodes {
            node.wait_healthy()?;
        }
        let cluster = Self { nodes };
        cluster.wait_meta_peers_current()?;
        Ok(cluster)
    }

    /// Wait until the JetStream meta leader reports every other node as a current peer.
    /// `/healthz` turns ok as soon as a meta leader is known, but an R3 asset created at that
    /// moment can still fail with "no suitable peers for placement, peer offline" (seen in CI
    /// when provisioning right after the cluster started).
    pub fn wait_meta_peers_current(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let others = self.nodes.len().saturating_sub(1);
        while Instant::now() < deadline {
            let ready = self.nodes.iter().any(|n| {
                let Some((200, body)) = http_get(n.config.monitor_port, "/jsz") else {
                    return false;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                    return false;
                };
                let meta = &v["meta_cluster"];
                let replicas = meta["replicas"].as_array().cloned().unwrap_or_default();
                meta["leader"].as_str() == Some(n.name())
                    && replicas.len() == others
                    && replicas
                        .iter()
                        .all(|r| r["current"].as_bool() == Some(true))
            });
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HarnessError::NotHealthy {
            name: "meta cluster (peers current)".into(),
            timeout: START_TIMEOUT,
            log: self
                .nodes
                .first()
                .map(NatsServer::log_tail)
                .unwrap_or_default(),
        })
    }

    /// Client URLs of every node, for a client that fails over between them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Index of the node named `name` (`n1`, `n2`, ...).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    /// Stop every node gracefully at once, then start them all again and wait for health.
    pub fn restart_all(&mut self) -> Result<(), HarnessError> {
        for n in &mut self.nodes {
            if let Some(pid) = n.pid() {
                let _ = signal::kill(pid, Signal::SIGTERM);
            }
        }
        for n in &mut self.nodes {
            n.stop();
        }
        for n in &mut self.nodes {
            n.start_again_nowait()?;
        }
        for n in &self.nodes {
            n.wait_healthy()?;
        }
        self.wait_meta_peers_current()
    }
}

/// Whether every thread of process `pid` is stopped (or the process is gone).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            // The state follows the command name, which is in parentheses.
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
            })
            .is_none_or(|c| matches!(c, 'T' | 't'))
    })
}
