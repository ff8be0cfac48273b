//! Stores: where limiter state lives.
//!
//! A [`Store`] holds the per-key state of rate limiters so that a limit can be
//! enforced by one process ([`MemoryStore`], the embedded default) or by every
//! instance of a service together (the Redis store of the `httpower-redis` crate). The
//! algorithms are the same everywhere — their exact rules are in [`crate::rate`] and in
//! the shared test vectors every store must pass (see the `conformance` feature).
//!
//! Applications rarely call a store directly. They build a [`Limiter`] — a named
//! limit on a store, with a decision `timeout` and a [`FailMode`] for when the store is
//! unreachable — and check keys against it:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use httpower_core::rate::{SlidingWindow, WindowQuota};
//! use httpower_core::store::{Limiter, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = Arc::new(MemoryStore::new());
//! let quota = WindowQuota::new(5, Duration::from_secs(900)).unwrap();
//! let login = Limiter::builder("login_ip", SlidingWindow::new(quota)).build(store);
//!
//! let verdict = login.key("203.0.113.7").check().await.unwrap();
//! assert!(verdict.decision.allowed);
//! assert_eq!(verdict.decision.remaining, 4);
//! # });
//! ```

#[cfg(feature = "conformance")]
pub mod conformance;
mod future;
mod key;
mod limiter;
mod memory;
mod slots;

use std::fmt;
use std::time::Duration;

pub use self::future::StoreFuture;
pub use self::key::{LimiterKey, LimiterKeyRef};
pub use self::limiter::{
    DecisionSource, FailMode, KeyedLimiter, Limiter, LimiterBuilder, LimiterError, Verdict,
};
pub use self::memory::MemoryStore;
pub use self::slots::{SlotLimiter, SlotLimiterBuilder, SlotPermit};

use crate::rate::{AnyAlgorithm, Decision};

/// A store could not make a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached (connection refused, reset, no primary).
    #[error("store `{store}` is unavailable: {reason}")]
    Unavailable {
        /// The store's name.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// The store did not answer in time.
    #[error("store `{store}` did not answer within {after:?}")]
    Timeout {
        /// The store's name.
        store: String,
        /// The time limit that passed.
        after: Duration,
    },
    /// The store answered something that makes no sense.
    #[error("store `{store}` answered unexpectedly: {detail}")]
    Protocol {
        /// The store's name.
        store: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The request itself was invalid (for example a cost above the limit).
    #[error("invalid store request: {detail}")]
    InvalidRequest {
        /// What was wrong.
        detail: String,
    },
}

/// One check of a composite decision.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The limiter's name (its state namespace in the store).
    pub limiter: &'a str,
    /// Its algorithm.
    pub algorithm: &'a AnyAlgorithm,
    /// The identifier checked.
    pub key: &'a str,
    /// Cells asked for.
    pub cost: u32,
}

/// How a composite check combines its limiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompositeMode {
    /// Admitted iff every limiter admits; then every limiter is charged, otherwise none.
    /// The deciding decision is the first denial (or, when admitted, the one with the
    /// fewest cells left).
    #[default]
    AllMustPass,
    /// Admitted iff at least one limiter admits; only the first admitting limiter is
    /// charged. The deciding decision is the charged one (or, when all deny, the one
    /// that frees up first).
    AnyMustPass,
    /// Admitted as [`AllMustPass`](CompositeMode::AllMustPass), but the deciding
    /// decision is the most restrictive one: the longest `retry_after` when denied, the
    /// fewest cells left when admitted.
    MostRestrictive,
}

/// The answer to a composite check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeDecision {
    /// Whether the request was admitted.
    pub allowed: bool,
    /// One decision per check, in order, as each limiter sees it after the exchange
    /// (a limiter that was not charged reports its unchanged state).
    pub decisions: Vec<Decision>,
    /// Index in `decisions` of the decision that speaks for the whole (see
    /// [`CompositeMode`]).
    pub deciding: usize,
}

impl CompositeDecision {
    /// The decision that speaks for the whole.
    pub fn decision(&self) -> Option<&Decision> {
        self.decisions.get(self.deciding)
    }
}

/// Proof of a concurrency slot held in a store, to hand back on release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub u64);

/// The answer to a concurrency slot request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrant {
    /// Admitted or not, with the slots left.
    pub decision: Decision,
    /// The lease to release, when admitted.
    pub lease: Option<LeaseId>,
}

/// Whether a store answers, and how fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// The store answered.
    pub reachable: bool,
    /// How long the probe took.
    pub latency: Duration,
    /// Why it is unreachable, when it is.
    pub detail: Option<String>,
}

/// Where limiter state lives. Implemented by [`MemoryStore`] and by the Redis store.
///
/// Every method is one atomic decision on the store's side: two instances checking the
/// same key at the same moment never both take the last cell. Time is the store's own
/// (the Redis store reads the server's `TIME`), never the caller's.
///
/// Methods return a [`StoreFuture`], which is object safe and allocation-free for
/// stores that answer at once; stores are used as `Arc<dyn Store>`.
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// A short name for logs and metrics (`"memory"`, `"redis"`).
    fn name(&self) -> &str;

    /// Charges `cost` cells to `key` of `limiter` if the algorithm admits it.
    /// Callers check `cost ≤ algorithm.limit()` first.
    fn check<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
        cost: u32,
    ) -> StoreFuture<'a, Decision>;

    /// Decides on several checks atomically, charging per `mode`: a denial by one
    /// limiter never consumes another's quota.
    fn check_composite<'a>(
        &'a self,
        checks: &'a [Check<'a>],
        mode: CompositeMode,
    ) -> StoreFuture<'a, CompositeDecision>;

    /// The state of `key` without charging anything or creating state.
    fn inspect<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
    ) -> StoreFuture<'a, Decision>;

    /// Takes one of `max` concurrency slots for `key`. In a shared store the slot is a
    /// lease that expires after `lease` unless released, so a crashed holder cannot keep
    /// it forever.
    fn acquire_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        max: u32,
        lease: Duration,
    ) -> StoreFuture<'a, SlotGrant>;

    /// Gives back a slot taken with [`acquire_slot`](Store::acquire_slot).
    fn release_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        lease: LeaseId,
    ) -> StoreFuture<'a, ()>;

    /// Forgets one key of `limiter`, or all of its keys when `key` is `None`; returns how
    /// many keys were dropped.
    fn reset<'a>(&'a self, limiter: &'a str, key: Option<&'a str>) -> StoreFuture<'a, u64>;

    /// Probes the store.
    fn health(&self) -> StoreFuture<'_, StoreHealth>;
}

/// Picks the deciding decision of a composite check; shared by every store so they all
/// report the same one.
pub fn deciding_index(mode: CompositeMode, allowed: bool, decisions: &[Decision]) -> usize {
    let indexed = decisions.iter().enumerate();
    let fewest_left = || {
        indexed
            .clone()
            .min_by_key(|(_, d)| d.remaining)
            .map_or(0, |(i, _)| i)
    };
    match (mode, allowed) {
        (CompositeMode::AllMustPass, false) => indexed
            .clone()
            .find(|(_, d)| !d.allowed)
            .map_or(0, |(i, _)| i),
        (CompositeMode::MostRestrictive, false) => indexed
            .clone()
            .filter(|(_, d)| !d.allowed)
            .max_by_key(|(_, d)| d.retry_after)
            .map_or(0, |(i, _)| i),
        (CompositeMode::AnyMustPass, true) => indexed
            .clone()
            .find(|(_, d)| d.allowed)
            .map_or(0, |(i, _)| i),
        (CompositeMode::AnyMustPass, false) => indexed
            .clone()
            .min_by_key(|(_, d)| d.retry_after)
            .map_or(0, |(i, _)| i),
        (CompositeMode::AllMustPass | CompositeMode::MostRestrictive, true) => fewest_left(),
    }
}
