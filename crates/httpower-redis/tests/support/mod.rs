//! Real Redis processes on free loopback ports for the integration tests: a single
//! server, a six-node cluster and a master/replica pair watched by three sentinels.
//!
//! Everything here is blocking (plain `std` and synchronous `redis` connections) so it
//! works from `#[test]` and `#[tokio::test]` alike; every wait polls with short sleeps
//! and is bounded. Each process logs to a file in its own temporary directory; a wait
//! that times out panics with the tail of the relevant logs. Every process is killed on
//! `Drop`, also when a test panics; set `HTTPOWER_REDIS_KEEP_DIRS=1` to keep the directories.
#![allow(dead_code, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Sleep between two polls of an external process.
const POLL: Duration = Duration::from_millis(25);
/// Bound on a single process becoming ready (answering PING).
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Number of hash slots of a Redis Cluster.
pub(crate) const CLUSTER_SLOTS: u16 = 16384;
/// Message when the Redis binaries are not installed.
pub(crate) const MISSING_REDIS: &str =
    "redis-server not found; scripts/test installs it with apt-get (apt-get install redis-server redis-tools)";

/// Whether `redis-server` and `redis-cli` can be run (sentinels run as `redis-server --sentinel`).
pub(crate) fn redis_binaries_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        ["redis-server", "redis-cli"].iter().all(|bin| {
            Command::new(bin)
                .arg("--version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    })
}

/// Panics with [`MISSING_REDIS`] unless the Redis binaries are available.
pub(crate) fn require_redis_binaries() {
    if !redis_binaries_available() {
        panic!("{MISSING_REDIS}");
    }
}

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

fn pick_port(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let port = addr.port();
        let bus = if with_bus {
            // The cluster bus listens on port + 10000; it must exist and be free too.
            let Some(bus) = port.checked_add(10000) else {
                continue;
            };
            if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_err() {
                continue;
            }
            Some(bus)
        } else {
            None
        };
        drop(listener);
        let mut taken = handed_out().lock().unwrap_or_else(PoisonError::into_inner);
        if taken.contains(&port) || bus.is_some_and(|bus| taken.contains(&bus)) {
            continue;
        }
        taken.insert(port);
        taken.extend(bus);
        return port;
    }
    panic!("no free loopback port found after 1000 attempts");
}

/// A free loopback port, never handed out twice in this test process.
pub(crate) fn free_port() -> u16 {
    pick_port(false)
}

/// A free loopback port whose cluster bus port (port + 10000) is free as well.
pub(crate) fn free_cluster_port() -> u16 {
    pick_port(true)
}

/// `redis://127.0.0.1:{port}`.
pub(crate) fn url_for(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// Runs one command against the server on `port` over a fresh connection (short timeouts).
pub(crate) fn query<T: redis::FromRedisValue>(
    port: u16,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let client = redis::Client::open(url_for(port))?;
    let mut con = client.get_connection_with_timeout(Duration::from_millis(300))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    con.set_write_timeout(Some(Duration::from_secs(2)))?;
    cmd.query(&mut con)
}

fn pings(port: u16) -> bool {
    query::<String>(port, &redis::cmd("PING")).is_ok_and(|reply| reply == "PONG")
}

fn info(port: u16, section: &str) -> Option<String> {
    query::<String>(port, redis::cmd("INFO").arg(section)).ok()
}

/// Polls `check` every few milliseconds until it returns `Ok`, or returns the last error
/// once `timeout` has passed.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => return Err(reason),
            Err(_) => sleep(POLL),
        }
    }
}

/// Set to keep the temporary directories (data and logs) after the tests.
pub(crate) const KEEP_DIRS: &str = "HTTPOWER_REDIS_KEEP_DIRS";

/// A temporary directory, removed on drop unless [`KEEP_DIRS`] is set.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("httpower-redis-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        Self { path }
    }

    fn sub(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DIRS).is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// One child process listening on `port`, logging to `log`.
#[derive(Debug)]
struct Proc {
    name: String,
    args: Vec<String>,
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: String, args: Vec<String>, dir: &Path, port: u16) -> Self {
        let log = dir.join(format!("{port}.log"));
        let mut proc = Self {
            name,
            args,
            dir: dir.to_path_buf(),
            log,
            port,
            child: None,
        };
        proc.start(false);
        proc
    }

    fn start(&mut self, append: bool) {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&self.log)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", self.log.display()));
        let stderr = file
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot clone log handle: {err}"));
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| {
                if err.kind() == std::io::ErrorKind::NotFound {
                    panic!("{MISSING_REDIS}");
                }
                panic!("cannot start {}: {err}", self.name)
            });
        self.child = Some(child);
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let port = self.port;
        poll(timeout, || {
            if let Some(status) = self.exited() {
                return Ok(Some(status));
            }
            if pings(port) {
                Ok(None)
            } else {
                Err(format!("no PONG on port {port} within {timeout:?}"))
            }
        })
        .and_then(|exited| match exited {
            Some(status) => Err(format!("exited early ({status})")),
            None => Ok(()),
        })
    }

    fn port_was_busy(&self) -> bool {
        fs::read_to_string(&self.log).is_ok_and(|log| log.contains("Address already in use"))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn report(&self, lines: usize) -> String {
        format!(
            "--- {} ({}) last lines ---\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, lines)
        )
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{} {what}\n{}", self.name, self.report(40))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a server on a fresh port from `make_args(port)`, retrying with another port when
/// the chosen one was taken meanwhile by someone else.
fn launch(kind: &str, dir: &Path, with_bus: bool, make_args: impl Fn(u16) -> Vec<String>) -> Proc {
    require_redis_binaries();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = pick_port(with_bus);
        let mut proc = Proc::spawn(format!("{kind} :{port}"), make_args(port), dir, port);
        match proc.wait_ready(START_TIMEOUT) {
            Ok(()) => return proc,
            Err(_) if attempt < 5 && proc.exited().is_some() && proc.port_was_busy() => {}
            Err(reason) => proc.fail(&format!("did not become ready: {reason}")),
        }
    }
}

fn server_args(port: u16, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        // Replicas sync at once instead of after the default 5 s diskless-sync delay.
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        &dir.to_string_lossy(),
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}

/// A single `redis-server` on a free loopback port, in its own temporary directory.
#[derive(Debug)]
pub(crate) struct RedisServer {
    proc: Proc,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING (at most ~5 s).
    pub(crate) fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments (they override the defaults).
    pub(crate) fn start_with_args(extra: &[&str]) -> Self {
        let dir = TempDir::new("server");
        let path = dir.path.clone();
        let proc = launch("redis-server", &path, false, |port| {
            server_args(port, &path, extra)
        });
        Self { proc, dir }
    }

    /// `redis://127.0.0.1:{port}`.
    pub(crate) fn url(&self) -> String {
        url_for(self.proc.port)
    }

    /// The port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.proc.port
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub(crate) fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts the server again on the same port and directory; waits until it answers PING.
    pub(crate) fn restart(&mut self) {
        restart_proc(&mut self.proc);
    }

    /// The tail of the server log.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.proc.log, 40)
    }
}

fn restart_proc(proc: &mut Proc) {
    proc.kill();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        proc.start(true);
        match proc.wait_ready(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => return,
            // The old socket may linger for a moment; try again on the same port.
            Err(_)
                if Instant::now() < deadline && proc.exited().is_some() && proc.port_was_busy() =>
            {
                proc.kill();
                sleep(POLL);
            }
            Err(reason) => proc.fail(&format!("did not come back on its port: {reason}")),
        }
    }
}

/// The hash slot of `key`: CRC16 (XMODEM) mod 16384 of the key, or of its `{hash tag}`
/// when the key has a non-empty one.
pub(crate) fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % CLUSTER_SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    master_id: Option<String>,
    slots: Vec<RangeInclusive<u16>>,
}

impl NodeLine {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn failed(&self) -> bool {
        self.has("fail") || self.has("fail?")
    }

    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let addr = fields[1].split(['@', ',']).next()?;
        let port = addr.rsplit(':').next()?.parse().ok()?;
        let flags = fields[2].split(',').map(str::to_owned).collect();
        let master_id = (fields[3] != "-").then(|| fields[3].to_owned());
        let mut slots = Vec::new();
        for token in &fields[8..] {
            if token.starts_with('[') {
                continue; // migrating / importing marker
            }
            let range = match token.split_once('-') {
                Some((a, b)) => a.parse().ok()?..=b.parse().ok()?,
                None => {
                    let slot = token.parse().ok()?;
                    slot..=slot
                }
            };
            slots.push(range);
        }
        Some(Self {
            id: fields[0].to_owned(),
            port,
            flags,
            master_id,
            slots,
        })
    }
}

fn cluster_view(port: u16) -> Result<Vec<NodeLine>, String> {
    let text: String = query(port, redis::cmd("CLUSTER").arg("NODES"))
        .map_err(|err| format!("CLUSTER NODES on :{port}: {err}"))?;
    Ok(text.lines().filter_map(NodeLine::parse).collect())
}

/// A six-node Redis Cluster (three masters, one replica each) on free loopback ports.
#[derive(Debug)]
pub(crate) struct RedisCluster {
    nodes: Vec<Proc>,
    dir: TempDir,
}

impl RedisCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create`, and waits until every
    /// node reports `cluster_state:ok` and knows all three masters and replicas.
    pub(crate) fn start() -> Self {
        require_redis_binaries();
        let dir = TempDir::new("cluster");
        let mut nodes = Vec::with_capacity(6);
        for i in 0..6 {
            let node_dir = dir.sub(&format!("node{i}"));
            nodes.push(launch("cluster node", &node_dir, true, |port| {
                server_args(
                    port,
                    &node_dir,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                )
            }));
        }
        let mut cluster = Self { nodes, dir };
        cluster.create();
        if let Err(reason) = poll(Duration::from_secs(15), || cluster.converged(true)) {
            cluster.fail(&format!("did not converge after creation: {reason}"));
        }
        cluster
    }

    fn create(&mut self) {
        let log_path = self.dir.path.join("create.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log_path.display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot clone log handle: {err}"));
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for node in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-cli --cluster create ({err}); {MISSING_REDIS}")
            });
        let status = poll(Duration::from_secs(20), || match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("redis-cli --cluster create did not finish within 20s".to_owned()),
            Err(err) => panic!("waiting for redis-cli: {err}"),
        });
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => panic!(
                "redis-cli --cluster create failed ({status})\n{}",
                tail(&log_path, 40)
            ),
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{reason}\n{}", tail(&log_path, 40));
            }
        }
    }

    fn alive_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.alive())
            .map(|node| node.port)
            .collect()
    }

    /// Every live node says `cluster_state:ok` and sees all slots served by live,
    /// non-failed masters (and, with `full`, three healthy replicas).
    fn converged(&self, full: bool) -> Result<(), String> {
        let alive = self.alive_ports();
        for &port in &alive {
            let state: String = query(port, redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|err| format!("CLUSTER INFO on :{port}: {err}"))?;
            if !state.contains("cluster_state:ok") {
                return Err(format!("node :{port} does not report cluster_state:ok"));
            }
            let view = cluster_view(port)?;
            let mut covered = 0u32;
            for master in view
                .iter()
                .filter(|n| n.has("master") && !n.slots.is_empty())
            {
                if master.failed() || !alive.contains(&master.port) {
                    return Err(format!(
                        "node :{port} still sees :{} serving slots",
                        master.port
                    ));
                }
                covered += master
                    .slots
                    .iter()
                    .map(|r| u32::from(*r.end()) - u32::from(*r.start()) + 1)
                    .sum::<u32>();
            }
            if covered != u32::from(CLUSTER_SLOTS) {
                return Err(format!("node :{port} sees {covered} slots covered"));
            }
            if full {
                let replicas = view
                    .iter()
                    .filter(|n| n.has("slave") && !n.failed() && n.master_id.is_some())
                    .count();
                if replicas != 3 || view.len() != 6 {
                    return Err(format!(
                        "node :{port} sees {} nodes, {replicas} replicas",
                        view.len()
                    ));
                }
                let me = view.iter().find(|n| n.has("myself"));
                if me.is_some_and(|n| n.has("slave"))
                    && !info(port, "replication")
                        .is_some_and(|i| i.contains("master_link_status:up"))
                {
                    return Err(format!("replica :{port} is not in sync with its master"));
                }
            }
        }
        Ok(())
    }

    fn fail(&self, what: &str) -> ! {
        let logs: Vec<String> = self.nodes.iter().map(|node| node.report(15)).collect();
        panic!(
            "cluster {what} (dir {})\n{}",
            self.dir.path.display(),
            logs.join("\n")
        )
    }

    fn view(&self) -> Vec<NodeLine> {
        for port in self.alive_ports() {
            if let Ok(view) = cluster_view(port) {
                return view;
            }
        }
        self.fail("has no node answering CLUSTER NODES")
    }

    /// `redis://127.0.0.1:{port}` for each of the six nodes (including killed ones).
    pub(crate) fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| url_for(node.port)).collect()
    }

    /// The ports of all six nodes.
    pub(crate) fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// Live masters serving slots, with their slot ranges, ordered by first slot.
    pub(crate) fn masters(&self) -> Vec<(u16, Vec<RangeInclusive<u16>>)> {
        let mut masters: Vec<(u16, Vec<RangeInclusive<u16>>)> = self
            .view()
            .into_iter()
            .filter(|n| n.has("master") && !n.failed() && !n.slots.is_empty())
            .map(|n| (n.port, n.slots))
            .collect();
        masters.sort_by_key(|(_, slots)| slots.first().map_or(0, |r| *r.start()));
        masters
    }

    /// `(replica port, master port)` for each healthy replica.
    pub(crate) fn replicas(&self) -> Vec<(u16, u16)> {
        let view = self.view();
        view.iter()
            .filter(|n| n.has("slave") && !n.failed())
            .filter_map(|replica| {
                let master_id = replica.master_id.as_ref()?;
                let master = view.iter().find(|m| &m.id == master_id)?;
                Some((replica.port, master.port))
            })
            .collect()
    }

    /// The port of the master serving `slot`.
    pub(crate) fn master_for_slot(&self, slot: u16) -> u16 {
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(&slot)))
            .map(|(port, _)| port)
            .unwrap_or_else(|| self.fail(&format!("has no master for slot {slot}")))
    }

    /// Kills (SIGKILL) the master on `port`; panics if it is not a live master.
    pub(crate) fn kill_master(&mut self, port: u16) {
        if !self.masters().iter().any(|(p, _)| *p == port) {
            self.fail(&format!("has no live master on :{port}"));
        }
        self.kill_node(port);
    }

    /// Kills (SIGKILL) the node on `port`, whatever its role.
    pub(crate) fn kill_node(&mut self, port: u16) {
        match self.nodes.iter_mut().find(|node| node.port == port) {
            Some(node) => node.kill(),
            None => self.fail(&format!("has no node on :{port}")),
        }
    }

    /// Starts a killed node again on its port with its `nodes.conf`; waits until it answers PING.
    pub(crate) fn restart_node(&mut self, port: u16) {
        match self.nodes.iter_mut().find(|node| node.port == port) {
            Some(node) => restart_proc(node),
            None => self.fail(&format!("has no node on :{port}")),
        }
    }

    /// Waits until every live node reports `cluster_state:ok` and sees all slots served by
    /// live masters; returns how long that took. Panics with the node logs on timeout.
    pub(crate) fn wait_until_ok(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        if let Err(reason) = poll(timeout, || self.converged(false)) {
            self.fail(&format!("not ok within {timeout:?}: {reason}"));
        }
        started.elapsed()
    }
}

/// A master, one replica and three sentinels (quorum 2) monitoring them as `mymaster`.
#[derive(Debug)]
pub(crate) struct RedisSentinel {
    servers: Vec<Proc>,
    sentinels: Vec<Proc>,
    killed: Vec<u16>,
    dir: TempDir,
}

const MASTER_NAME: &str = "mymaster";

impl RedisSentinel {
    /// Starts master and replica, waits for the replica to be in sync, then starts three
    /// sentinels and waits until each knows the master, the replica and the two others.
    pub(crate) fn start() -> Self {
        require_redis_binaries();
        let dir = TempDir::new("sentinel");
        let master_dir = dir.sub("master");
        let master = launch("master", &master_dir, false, |port| {
            server_args(port, &master_dir, &[])
        });
        let master_port = master.port.to_string();
        let replica_dir = dir.sub("replica");
        let replica = launch("replica", &replica_dir, false, |port| {
            server_args(
                port,
                &replica_dir,
                &["--replicaof", "127.0.0.1", &master_port],
            )
        });
        let mut this = Self {
            servers: vec![master, replica],
            sentinels: Vec::new(),
            killed: Vec::new(),
            dir,
        };
        let (master_port, replica_port) = (this.servers[0].port, this.servers[1].port);
        let synced = poll(Duration::from_secs(10), || {
            let replica_ok = info(replica_port, "replication")
                .is_some_and(|i| i.contains("master_link_status:up"));
            let master_ok = info(master_port, "replication")
                .is_some_and(|i| i.contains("connected_slaves:1") && i.contains("state=online"));
            if replica_ok && master_ok {
                Ok(())
            } else {
                Err("replica not in sync".to_owned())
            }
        });
        if let Err(reason) = synced {
            this.fail(&reason);
        }
        for i in 0..3 {
            let sentinel_dir = this.dir.sub(&format!("sentinel{i}"));
            let sentinel = launch("sentinel", &sentinel_dir, false, |port| {
                let config = format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = sentinel_dir.display()
                );
                let path = sentinel_dir.join("sentinel.conf");
                fs::write(&path, config)
                    .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
                vec![path.to_string_lossy().into_owned(), "--sentinel".to_owned()]
            });
            this.sentinels.push(sentinel);
        }
        let ready = poll(Duration::from_secs(15), || {
            for sentinel in &this.sentinels {
                let state: HashMap<String, String> = query(
                    sentinel.port,
                    redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME),
                )
                .map_err(|err| format!("sentinel :{}: {err}", sentinel.port))?;
                let field = |name: &str| state.get(name).map_or("", String::as_str);
                if field("port") != master_port.to_string()
                    || field("flags") != "master"
                    || field("num-slaves") != "1"
                    || field("num-other-sentinels") != "2"
                {
                    return Err(format!(
                        "sentinel :{} not settled: {state:?}",
                        sentinel.port
                    ));
                }
            }
            Ok(())
        });
        if let Err(reason) = ready {
            this.fail(&reason);
        }
        this
    }

    fn fail(&self, what: &str) -> ! {
        let logs: Vec<String> = self
            .servers
            .iter()
            .chain(&self.sentinels)
            .map(|p| p.report(15))
            .collect();
        panic!(
            "sentinel setup: {what} (dir {})\n{}",
            self.dir.path.display(),
            logs.join("\n")
        )
    }

    /// `redis://127.0.0.1:{port}` of each sentinel.
    pub(crate) fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| url_for(s.port)).collect()
    }

    /// The monitored master's name, `mymaster`.
    pub(crate) fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// Ports of the master and replica processes (as started).
    pub(crate) fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.port).collect()
    }

    fn reported_master(port: u16) -> Result<u16, String> {
        let addr: Vec<String> = query(
            port,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )
        .map_err(|err| format!("sentinel :{port}: {err}"))?;
        addr.get(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("sentinel :{port} answered {addr:?}"))
    }

    /// The master's port according to the first sentinel that answers.
    pub(crate) fn master_port(&self) -> u16 {
        let mut errors = Vec::new();
        for sentinel in self.sentinels.iter().filter(|s| s.alive()) {
            match Self::reported_master(sentinel.port) {
                Ok(port) => return port,
                Err(err) => errors.push(err),
            }
        }
        self.fail(&format!("no sentinel names the master: {errors:?}"))
    }

    /// Kills (SIGKILL) the current master; returns its port.
    pub(crate) fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        match self
            .servers
            .iter_mut()
            .find(|s| s.port == port && s.alive())
        {
            Some(server) => server.kill(),
            None => self.fail(&format!(
                "the master :{port} is not a live process of this setup"
            )),
        }
        self.killed.push(port);
        port
    }

    /// Starts a killed server again on its port (sentinels then make it a replica).
    pub(crate) fn restart_server(&mut self, port: u16) {
        match self.servers.iter_mut().find(|s| s.port == port) {
            Some(server) => restart_proc(server),
            None => self.fail(&format!("has no server on :{port}")),
        }
    }

    /// Waits until every sentinel names the same master that was not killed and that
    /// master answers `ROLE` as master; returns its port. Panics with the logs on timeout.
    pub(crate) fn wait_for_new_master(&self, timeout: Duration) -> u16 {
        let result = poll(timeout, || {
            let mut named = Vec::new();
            for sentinel in self.sentinels.iter().filter(|s| s.alive()) {
                named.push(Self::reported_master(sentinel.port)?);
            }
            let Some(&port) = named.first() else {
                return Err("no live sentinel".to_owned());
            };
            if named.iter().any(|&p| p != port) || self.killed.contains(&port) {
                return Err(format!(
                    "sentinels name {named:?} (killed: {:?})",
                    self.killed
                ));
            }
            let role: Vec<redis::Value> = query(port, &redis::cmd("ROLE"))
                .map_err(|err| format!("ROLE on :{port}: {err}"))?;
            match role.first() {
                Some(redis::Value::BulkString(role)) if role.as_slice() == b"master" => Ok(port),
                other => Err(format!(":{port} answers ROLE {other:?}")),
            }
        });
        result.unwrap_or_else(|reason| {
            self.fail(&format!("no new master within {timeout:?}: {reason}"))
        })
    }
}
