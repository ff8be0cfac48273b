//! One breaker per key (host:port, tenant, route), created on first use and evicted
//! when it has been idle for a while (closed, or open and long past its timeout).

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::clock::{Clock, MonotonicClock, Nanos};

use super::{BreakerConfig, BreakerSnapshot, CircuitBreaker, StateChange, EVENT_CAPACITY};

/// How long a closed breaker may go unused before it may be evicted (default).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Map size at which inserting a new key first triggers an eviction sweep (default).
pub const DEFAULT_SOFT_CAPACITY: usize = 1024;

type Map<K, C> = HashMap<K, Entry<C>, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Entry<C: Clock> {
    breaker: CircuitBreaker<C>,
    /// The last sweep (or the insertion) that found the breaker in use.
    seen: Nanos,
}

#[derive(Debug)]
struct Table<K, C: Clock> {
    breakers: Map<K, C>,
    idle: Duration,
    soft_capacity: usize,
    /// Inserting when the map holds this many breakers sweeps first.
    sweep_at_len: usize,
    last_sweep: Nanos,
}

#[derive(Debug)]
struct RegistryInner<K, C: Clock> {
    config: BreakerConfig,
    clock: C,
    events: broadcast::Sender<StateChange>,
    table: RwLock<Table<K, C>>,
}

/// Keyed circuit breakers sharing one configuration, clock and event channel.
///
/// Dead keys do not accumulate: a breaker that has not been asked for a permit for
/// `idle_timeout` (default 300 s) and is referenced by nothing but the registry (no
/// clone held by a caller, no permit in flight) is dropped if it is **closed**, or if it
/// is **open** (not forced) and its open timeout ended at least `idle_timeout` ago.
/// Use is noticed by sweeps (a breaker only sets a flag when asked for a permit, to keep
/// the clock off its hot path), so a breaker is evicted between one and about two idle
/// periods after its last use. A breaker still within its open timeout, a forced-open
/// one, and a half-open one are kept, since forgetting them would let traffic through
/// to a dependency known to be down; an open breaker nobody has asked for since well
/// after its timeout would only let a probe through anyway, so a fresh one does no
/// worse. Eviction is lazy and needs no background task:
/// inserting a new key sweeps the map when it has grown to twice its size after the
/// last sweep (at least `soft_capacity`, default 1024) or when `idle_timeout` has passed
/// since the last sweep, so the cost is amortised O(1) per insert.
/// [`evict_idle`](Self::evict_idle) sweeps on demand.
///
/// Events from every key arrive on [`subscribe`](Self::subscribe), with
/// [`StateChange::key`] set to the key formatted with `Display`.
///
/// ```
/// use httpower_core::breaker::{BreakerConfig, BreakerRegistry, BreakerState};
///
/// let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
/// let breaker = registry.get("api.example.com:443");
/// breaker.try_acquire().map(|permit| permit.success()).ok();
/// let snapshot = registry.state("api.example.com:443");
/// assert_eq!(snapshot.map(|s| s.state), Some(BreakerState::Closed));
/// assert!(registry.state("elsewhere:80").is_none());
/// ```
pub struct BreakerRegistry<K, C: Clock = MonotonicClock> {
    inner: Arc<RegistryInner<K, C>>,
}

impl<K, C: Clock> Clone for BreakerRegistry<K, C> {
    fn clone(&self) -> Self {
        BreakerRegistry {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: fmt::Debug, C: Clock> fmt::Debug for BreakerRegistry<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("config", &self.inner.config)
            .field("len", &self.inner.table.read().breakers.len())
            .finish_non_exhaustive()
    }
}

impl<K> BreakerRegistry<K, MonotonicClock>
where
    K: Eq + Hash + Clone + fmt::Display,
{
    /// A registry on the process's monotonic clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, MonotonicClock)
    }
}

impl<K, C> BreakerRegistry<K, C>
where
    K: Eq + Hash + Clone + fmt::Display,
    C: Clock + Clone,
{
    /// A registry whose breakers read time from `clock`.
    pub fn with_clock(config: BreakerConfig, clock: C) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let now = clock.now();
        BreakerRegistry {
            inner: Arc::new(RegistryInner {
                config,
                clock,
                events,
                table: RwLock::new(Table {
                    breakers: Map::default(),
                    idle: DEFAULT_IDLE_TIMEOUT,
                    soft_capacity: DEFAULT_SOFT_CAPACITY,
                    sweep_at_len: DEFAULT_SOFT_CAPACITY,
                    last_sweep: now,
                }),
            }),
        }
    }

    /// Sets how long a closed breaker may sit unused before it may be evicted.
    pub fn idle_timeout(self, idle: Duration) -> Self {
        self.inner.table.write().idle = idle;
        self
    }

    /// Sets the map size at which inserting first triggers a sweep (at least 1).
    pub fn soft_capacity(self, capacity: usize) -> Self {
        {
            let mut table = self.inner.table.write();
            table.soft_capacity = capacity.max(1);
            table.sweep_at_len = table.soft_capacity.max(table.breakers.len() * 2);
        }
        self
    }

    /// The breaker for `key`, created on first use.
    pub fn get<Q>(&self, key: &Q) -> CircuitBreaker<C>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(entry) = self.inner.table.read().breakers.get(key) {
            return entry.breaker.clone();
        }
        // Built before the write lock, so that other keys' lookups do not wait for it;
        // if another caller inserts the key first, this one is dropped.
        let key = key.to_owned();
        let breaker = CircuitBreaker::build(
            self.inner.config.clone(),
            self.inner.clock.clone(),
            self.inner.events.clone(),
            Some(Arc::from(key.to_string())),
        );
        let now = self.inner.clock.now();
        let mut table = self.inner.table.write();
        if let Some(entry) = table.breakers.get(&key) {
            return entry.breaker.clone();
        }
        if table.breakers.len() >= table.sweep_at_len
            || now.saturating_duration_since(table.last_sweep) >= table.idle
        {
            sweep(&mut table, now);
        }
        table.breakers.insert(
            key,
            Entry {
                breaker: breaker.clone(),
                seen: now,
            },
        );
        breaker
    }

    /// A snapshot of the breaker for `key`, if there is one. Does not create it.
    pub fn state<Q>(&self, key: &Q) -> Option<BreakerSnapshot>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let breaker = self.inner.table.read().breakers.get(key)?.breaker.clone();
        Some(breaker.state())
    }

    /// Snapshots of every breaker, in no particular order.
    pub fn snapshots(&self) -> Vec<(K, BreakerSnapshot)> {
        let breakers: Vec<(K, CircuitBreaker<C>)> = self
            .inner
            .table
            .read()
            .breakers
            .iter()
            .map(|(k, e)| (k.clone(), e.breaker.clone()))
            .collect();
        breakers.into_iter().map(|(k, b)| (k, b.state())).collect()
    }

    /// Forgets the breaker for `key`. Callers still holding it keep a detached breaker.
    pub fn remove<Q>(&self, key: &Q) -> Option<CircuitBreaker<C>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .table
            .write()
            .breakers
            .remove(key)
            .map(|e| e.breaker)
    }

    /// Evicts every breaker idle for longer than the idle timeout, referenced by nothing
    /// else, and either closed or open (not forced) since at least the idle timeout past
    /// its open timeout; returns how many were evicted.
    pub fn evict_idle(&self) -> usize {
        let now = self.inner.clock.now();
        sweep(&mut self.inner.table.write(), now)
    }

    /// Number of breakers held.
    pub fn len(&self) -> usize {
        self.inner.table.read().breakers.len()
    }

    /// True when no breaker is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// State changes of every key from now on; [`StateChange::key`] says which.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.inner.events.subscribe()
    }

    /// The configuration every breaker uses.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }
}

fn sweep<K, C: Clock>(table: &mut Table<K, C>, now: Nanos) -> usize {
    let idle = table.idle;
    let before = table.breakers.len();
    table.breakers.retain(|_, entry| {
        if entry.breaker.take_touched() {
            entry.seen = now;
            return true;
        }
        let breaker = &entry.breaker;
        let idle_long_enough = now.saturating_duration_since(entry.seen) >= idle;
        let evict = idle_long_enough
            && breaker.is_unshared()
            && (breaker.is_closed() || breaker.is_abandoned_open(now, idle));
        !evict
    });
    table.last_sweep = now;
    table.sweep_at_len = table
        .soft_capacity
        .max(table.breakers.len().saturating_mul(2));
    before - table.breakers.len()
}
