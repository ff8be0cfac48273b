//! [`RedisStore`]: the [`Store`] trait on Redis.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use httpower_core::clock::{Clock, MonotonicClock};
use httpower_core::rate::{Algorithm, AnyAlgorithm, Decision};
use httpower_core::store::{
    deciding_index, Check, CompositeDecision, CompositeMode, LeaseId, SlotGrant, Store, StoreError,
    StoreFuture, StoreHealth,
};
use parking_lot::Mutex;
use redis::cluster_routing::Slot;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind, Value};

use crate::builder::{RedisStoreBuilder, Settings, Topology};
use crate::connection::Connection;
use crate::deny_cache::DenyCache;
use crate::key::KeySpace;
use crate::script::{self, Op};

/// Tests only: the time the scripts use instead of the server's `TIME`.
#[cfg(feature = "conformance")]
#[derive(Debug, Clone, Default)]
pub struct ManualServerTime(pub(crate) Arc<AtomicU64>);

#[cfg(feature = "conformance")]
impl ManualServerTime {
    /// A time source starting at zero.
    pub fn new() -> ManualServerTime {
        ManualServerTime::default()
    }

    /// Moves the time to `to` (microsecond precision).
    pub fn set(&self, to: httpower_core::clock::Nanos) {
        self.0.store(to.as_u64() / 1000, Ordering::Relaxed);
    }
}

/// Counters of what the store did, for tests, benchmarks and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStoreStats {
    /// Script calls sent to Redis.
    pub round_trips: u64,
    /// Denials answered by the local deny cache instead.
    pub deny_cache_hits: u64,
    /// Over-limit keys the deny cache holds now.
    pub deny_cache_len: usize,
}

/// Limiter state on Redis, shared by every instance of a service.
///
/// Each decision is one `EVALSHA` of an atomic script (loaded again with `EVAL` when
/// the server answers `NOSCRIPT`), using the server's `TIME`; keys are
/// `prefix:{limiter:identifier}` and every key carries a TTL, so identifiers that stop
/// calling leave nothing behind. Clones share the connection and the deny cache.
///
/// ```no_run
/// use std::sync::Arc;
/// use httpower_core::rate::{Gcra, Quota};
/// use httpower_core::store::{FailMode, Limiter};
/// use httpower_redis::RedisStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379").key_prefix("shop").build()?;
/// let quota = Quota::per_second(std::num::NonZeroU32::new(100).unwrap());
/// let api = Limiter::builder("api", Gcra::new(quota))
///     .fail_mode(FailMode::Open)
///     .build(Arc::new(store));
/// let verdict = api.key("customer-42").check().await?;
/// println!("allowed: {}", verdict.decision.allowed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    conn: Connection,
    keys: KeySpace,
    sha: String,
    deny: DenyCache,
    clock: MonotonicClock,
    manual_time: Option<Arc<AtomicU64>>,
    round_trips: AtomicU64,
    cache_hits: AtomicU64,
    health_task: AtomicBool,
    last_health: Mutex<Option<StoreHealth>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.inner.settings.name)
            .field("topology", &self.inner.settings.topology.name())
            .field("key_prefix", &self.inner.settings.key_prefix)
            .finish()
    }
}

impl RedisStore {
    /// A store on one Redis server (`redis://`, `rediss://` for TLS, or `unix://`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::single(url)
    }

    /// A store on a Redis Cluster, reached through any of `nodes` (seed URLs).
    pub fn cluster<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::cluster(nodes)
    }

    /// A store on the primary that the Sentinels at `sentinels` know as `master`,
    /// following it through failovers.
    pub fn sentinel<I, S>(master: impl Into<String>, sentinels: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::sentinel(master, sentinels)
    }

    pub(crate) fn from_settings(
        settings: Arc<Settings>,
        manual_time: Option<Arc<AtomicU64>>,
    ) -> Result<RedisStore, RedisError> {
        let conn = Connection::new(Arc::clone(&settings))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                keys: KeySpace::new(&settings.key_prefix),
                sha: redis::Script::new(script::SOURCE).get_hash().to_owned(),
                deny: DenyCache::new(settings.deny_cache_capacity),
                settings,
                conn,
                clock: MonotonicClock,
                manual_time,
                round_trips: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                health_task: AtomicBool::new(false),
                last_health: Mutex::new(None),
            }),
        })
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.inner.settings.key_prefix
    }

    /// `single`, `sentinel` or `cluster`.
    pub fn topology(&self) -> &'static str {
        self.inner.settings.topology.name()
    }

    /// What the store did so far.
    pub fn stats(&self) -> RedisStoreStats {
        RedisStoreStats {
            round_trips: self.inner.round_trips.load(Ordering::Relaxed),
            deny_cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
            deny_cache_len: self.inner.deny.len(),
        }
    }

    /// The result of the last background health check (see
    /// [`health_check_interval`](RedisStoreBuilder::health_check_interval)).
    pub fn last_health(&self) -> Option<StoreHealth> {
        self.inner.last_health.lock().clone()
    }

    /// The identifiers `limiter` holds state for, at most `max` of them, found with
    /// `SCAN` (on every primary of a cluster).
    pub async fn identifiers(&self, limiter: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let pattern = self.inner.keys.pattern(limiter);
        let keys = self.inner.scan(&pattern, max).await?;
        Ok(keys
            .iter()
            .filter_map(|k| self.inner.keys.split(k).map(|(_, id)| id.to_owned()))
            .collect())
    }

    /// The limiter names with state under this store's prefix (escaped as stored), at
    /// most `max` keys scanned.
    pub async fn limiters(&self, max: usize) -> Result<Vec<String>, StoreError> {
        let keys = self.inner.scan(&self.inner.keys.all(), max).await?;
        let mut names: Vec<String> = keys
            .iter()
            .filter_map(|k| self.inner.keys.split(k).map(|(l, _)| l.to_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// One call of the limiter script, before encoding.
enum Call<'a> {
    /// Rate checks under an operation (`all`, `any`, `dry`, `refund`).
    Checks {
        op: Op,
        checks: &'a [(&'a AnyAlgorithm, u32)],
    },
    /// Take a concurrency lease.
    Acquire { max: u32, lease_us: u64, id: u64 },
    /// Give a lease back.
    Release { id: u64 },
}

impl Inner {
    /// Writes the script's arguments into `cmd`: integers go in as they are (no
    /// intermediate strings), since this runs for every decision.
    fn write_args(&self, cmd: &mut Cmd, call: &Call<'_>) {
        match &self.manual_time {
            Some(t) => cmd.arg(t.load(Ordering::Relaxed)),
            None => cmd.arg(""),
        };
        match call {
            Call::Checks { op, checks } => {
                cmd.arg(op.name());
                for (algorithm, cost) in *checks {
                    let (code, a, b, cost) = script::check_fields(algorithm, *cost);
                    cmd.arg(code).arg(a).arg(b).arg(cost);
                }
            }
            Call::Acquire { max, lease_us, id } => {
                cmd.arg("acquire").arg(*max).arg(*lease_us).arg(*id);
            }
            Call::Release { id } => {
                cmd.arg("release").arg(*id);
            }
        }
    }

    fn error(&self, err: &RedisError) -> StoreError {
        let store = self.settings.name.clone();
        if err.is_timeout() {
            return StoreError::Timeout {
                store,
                after: self.settings.command_timeout,
            };
        }
        let unreachable = err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || matches!(
                err.kind(),
                ErrorKind::Io
                    | ErrorKind::AuthenticationFailed
                    | ErrorKind::ClusterConnectionNotFound
                    | ErrorKind::MasterNameNotFoundBySentinel
                    | ErrorKind::EmptySentinelList
                    | ErrorKind::Server(
                        ServerErrorKind::TryAgain
                            | ServerErrorKind::ClusterDown
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::BusyLoading
                            | ServerErrorKind::ReadOnly
                            | ServerErrorKind::Moved
                            | ServerErrorKind::Ask
                    )
            );
        if unreachable {
            StoreError::Unavailable {
                store,
                reason: err.to_string(),
            }
        } else {
            // The server answered, but not what the script answers: foreign data under
            // our key, a script error, a reply we cannot read.
            StoreError::Protocol {
                store,
                detail: err.to_string(),
            }
        }
    }

    fn bad_reply(&self, err: script::BadReply) -> StoreError {
        StoreError::Protocol {
            store: self.settings.name.clone(),
            detail: err.0,
        }
    }

    /// One script call: `EVALSHA`, or `EVAL` when the server does not know the script
    /// yet (first call, restart, failover to a node that never saw it).
    async fn eval(&self, keys: &[String], call: Call<'_>) -> Result<Value, StoreError> {
        let build = |verb: &str, script: &str| {
            let mut cmd = Cmd::new();
            cmd.arg(verb).arg(script).arg(keys.len()).arg(keys);
            self.write_args(&mut cmd, &call);
            cmd
        };
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match self.conn.query(&build("EVALSHA", &self.sha)).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.round_trips.fetch_add(1, Ordering::Relaxed);
                self.conn
                    .query(&build("EVAL", script::SOURCE))
                    .await
                    .map_err(|e| self.error(&e))
            }
            other => other.map_err(|e| self.error(&e)),
        }
    }

    /// Runs `op` over checks that share one slot.
    async fn run(
        &self,
        op: Op,
        keys: &[String],
        checks: &[(&AnyAlgorithm, u32)],
    ) -> Result<(bool, Vec<Decision>), StoreError> {
        let reply = self.eval(keys, Call::Checks { op, checks }).await?;
        let limits: Vec<u32> = checks.iter().map(|(a, _)| a.limit()).collect();
        script::decisions(&reply, &limits).map_err(|e| self.bad_reply(e))
    }

    async fn check(
        &self,
        limiter: &str,
        algorithm: &AnyAlgorithm,
        key: &str,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        if cost > algorithm.limit() {
            return Err(StoreError::InvalidRequest {
                detail: format!(
                    "a cost of {cost} can never be admitted by a quota of {}",
                    algorithm.limit()
                ),
            });
        }
        let redis_key = self.keys.key(limiter, key);
        // Redis decided somewhere between sending and receiving; counting the denial
        // from the send makes the cached one end no later than the real one.
        let sent = self.clock.now();
        let (_, decisions) = self
            .run(
                Op::All,
                std::slice::from_ref(&redis_key),
                &[(algorithm, cost)],
            )
            .await?;
        let decision = decisions
            .into_iter()
            .next()
            .ok_or_else(|| self.bad_reply(script::BadReply("no decision".into())))?;
        if !decision.allowed && cost > 0 {
            self.deny.remember(limiter, key, cost, decision, sent);
        }
        Ok(decision)
    }

    fn same_slot(&self, keys: &[String]) -> bool {
        if !matches!(self.settings.topology, Topology::Cluster { .. }) {
            return true;
        }
        let mut slots = keys.iter().map(Slot::for_key);
        match slots.next() {
            Some(first) => slots.all(|s| s == first),
            None => true,
        }
    }

    async fn composite(
        &self,
        checks: &[Check<'_>],
        mode: CompositeMode,
    ) -> Result<CompositeDecision, StoreError> {
        for c in checks {
            if c.cost > c.algorithm.limit() {
                return Err(StoreError::InvalidRequest {
                    detail: format!(
                        "limiter `{}`: a cost of {} can never be admitted by a quota of {}",
                        c.limiter,
                        c.cost,
                        c.algorithm.limit()
                    ),
                });
            }
        }
        let keys: Vec<String> = checks
            .iter()
            .map(|c| self.keys.key(c.limiter, c.key))
            .collect();
        let pairs: Vec<(&AnyAlgorithm, u32)> =
            checks.iter().map(|c| (c.algorithm, c.cost)).collect();
        let op = match mode {
            CompositeMode::AnyMustPass => Op::Any,
            CompositeMode::AllMustPass | CompositeMode::MostRestrictive => Op::All,
        };
        let (allowed, decisions) = if self.same_slot(&keys) {
            self.run(op, &keys, &pairs).await?
        } else {
            self.composite_across_slots(op, &keys, &pairs).await?
        };
        Ok(CompositeDecision {
            allowed,
            deciding: deciding_index(mode, allowed, &decisions),
            decisions,
        })
    }

    /// A composite check whose keys live on different Cluster slots, so no single
    /// script can see them all: charge one by one and give back what was charged when
    /// a later check denies. The result is the same as the one-script path; between
    /// the charge and the refund another caller may briefly see the quota lower.
    async fn composite_across_slots(
        &self,
        op: Op,
        keys: &[String],
        pairs: &[(&AnyAlgorithm, u32)],
    ) -> Result<(bool, Vec<Decision>), StoreError> {
        let one = |i: usize, op: Op| async move {
            let (admitted, mut d) = self
                .run(op, std::slice::from_ref(&keys[i]), &pairs[i..=i])
                .await?;
            let d = d
                .pop()
                .ok_or_else(|| self.bad_reply(script::BadReply("no decision".into())))?;
            Ok::<_, StoreError>((admitted, d))
        };
        let mut decisions: Vec<Option<Decision>> = vec![None; keys.len()];
        let mut charged = Vec::new();
        let mut admitted = op == Op::All;
        for (i, slot) in decisions.iter_mut().enumerate() {
            let (ok, d) = one(i, op).await?;
            *slot = Some(d);
            if op == Op::Any && ok {
                admitted = true;
                break;
            }
            if op == Op::All {
                if ok {
                    charged.push(i);
                } else {
                    admitted = false;
                    break;
                }
            }
        }
        if op == Op::All && !admitted {
            for &i in &charged {
                let refund = Call::Checks {
                    op: Op::Refund,
                    checks: &pairs[i..=i],
                };
                self.eval(std::slice::from_ref(&keys[i]), refund).await?;
                decisions[i] = None;
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (i, d) in decisions.into_iter().enumerate() {
            out.push(match d {
                Some(d) => d,
                None => one(i, Op::Dry).await?.1,
            });
        }
        Ok((admitted, out))
    }

    async fn scan(&self, pattern: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let nodes = self.conn.primaries().await.map_err(|e| self.error(&e))?;
        let mut found = Vec::new();
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = Cmd::new();
                cmd.arg("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = self
                    .conn
                    .query_on(node.as_ref(), &cmd)
                    .await
                    .map_err(|e| self.error(&e))?;
                let (next, keys) = parse_scan(&reply).ok_or_else(|| StoreError::Protocol {
                    store: self.settings.name.clone(),
                    detail: format!("unexpected SCAN reply {reply:?}"),
                })?;
                found.extend(keys);
                if found.len() >= max {
                    found.truncate(max);
                    return Ok(found);
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(found)
    }

    async fn reset(&self, limiter: &str, key: Option<&str>) -> Result<u64, StoreError> {
        self.deny.forget(limiter, key);
        let keys = match key {
            Some(key) => vec![self.keys.key(limiter, key)],
            None => self.scan(&self.keys.pattern(limiter), usize::MAX).await?,
        };
        let mut dropped = 0;
        for key in &keys {
            let mut cmd = Cmd::new();
            cmd.arg("DEL").arg(key);
            let reply = self.conn.query(&cmd).await.map_err(|e| self.error(&e))?;
            if let Value::Int(n) = reply {
                dropped += u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(dropped)
    }

    async fn ping(&self) -> StoreHealth {
        let started = Instant::now();
        let mut cmd = Cmd::new();
        cmd.arg("PING");
        let result =
            tokio::time::timeout(self.settings.command_timeout, self.conn.query(&cmd)).await;
        let latency = started.elapsed();
        let detail = match result {
            Ok(Ok(Value::SimpleString(s))) if s == "PONG" => None,
            Ok(Ok(other)) => Some(format!("unexpected PING reply {other:?}")),
            Ok(Err(err)) => Some(self.error(&err).to_string()),
            Err(_) => Some(format!(
                "no answer within {:?}",
                self.settings.command_timeout
            )),
        };
        StoreHealth {
            reachable: detail.is_none(),
            latency,
            detail,
        }
    }
}

fn parse_scan(reply: &Value) -> Option<(u64, Vec<String>)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let cursor = match parts.first()? {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
        Value::SimpleString(s) => s.parse().ok()?,
        Value::Int(n) => u64::try_from(*n).ok()?,
        _ => return None,
    };
    let Value::Array(items) = parts.get(1)? else {
        return None;
    };
    let keys = items
        .iter()
        .filter_map(|v| match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    Some((cursor, keys))
}

impl RedisStore {
    /// Starts the background health check on first use, when one is configured. The
    /// task holds a weak reference and ends with the store.
    fn ensure_health_task(&self) {
        let inner = &self.inner;
        let interval = inner.settings.health_check_interval;
        if interval.is_zero() || inner.health_task.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if inner.health_task.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(inner);
        runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let health = inner.ping().await;
                *inner.last_health.lock() = Some(health);
                drop(inner);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

impl Store for RedisStore {
    fn name(&self) -> &str {
        &self.inner.settings.name
    }

    fn check<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
        cost: u32,
    ) -> StoreFuture<'a, Decision> {
        let inner = &*self.inner;
        if let Some(denial) = inner.deny.lookup(limiter, key, cost, inner.clock.now()) {
            inner.cache_hits.fetch_add(1, Ordering::Relaxed);
            return StoreFuture::ready(Ok(denial));
        }
        self.ensure_health_task();
        StoreFuture::pending(inner.check(limiter, algorithm, key, cost))
    }

    fn check_composite<'a>(
        &'a self,
        checks: &'a [Check<'a>],
        mode: CompositeMode,
    ) -> StoreFuture<'a, CompositeDecision> {
        self.ensure_health_task();
        StoreFuture::pending(self.inner.composite(checks, mode))
    }

    fn inspect<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
    ) -> StoreFuture<'a, Decision> {
        StoreFuture::pending(self.inner.check(limiter, algorithm, key, 0))
    }

    fn acquire_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        max: u32,
        lease: Duration,
    ) -> StoreFuture<'a, SlotGrant> {
        self.ensure_health_task();
        let inner = &*self.inner;
        StoreFuture::pending(async move {
            let id = rand::random::<u64>();
            let call = Call::Acquire {
                max,
                lease_us: script::micros(lease).max(1),
                id,
            };
            let reply = inner.eval(&[inner.keys.key(limiter, key)], call).await?;
            let (admitted, remaining) =
                script::slot(&reply, max).map_err(|e| inner.bad_reply(e))?;
            Ok(if admitted {
                SlotGrant {
                    decision: Decision::allow(max, remaining, Duration::ZERO),
                    lease: Some(LeaseId(id)),
                }
            } else {
                SlotGrant {
                    decision: Decision::deny(max, 0, Duration::ZERO, Duration::ZERO),
                    lease: None,
                }
            })
        })
    }

    fn release_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        lease: LeaseId,
    ) -> StoreFuture<'a, ()> {
        let inner = &*self.inner;
        StoreFuture::pending(async move {
            let call = Call::Release { id: lease.0 };
            inner.eval(&[inner.keys.key(limiter, key)], call).await?;
            Ok(())
        })
    }

    fn reset<'a>(&'a self, limiter: &'a str, key: Option<&'a str>) -> StoreFuture<'a, u64> {
        StoreFuture::pending(self.inner.reset(limiter, key))
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        StoreFuture::pending(async move {
            let health = self.inner.ping().await;
            *self.inner.last_health.lock() = Some(health.clone());
            Ok(health)
        })
    }
}
