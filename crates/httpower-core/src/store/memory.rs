//! The in-memory store: the embedded default, no setup.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::key::{LimiterKey as StoreKey, LimiterKeyRef as KeyRef};
use super::{
    deciding_index, Check, CompositeDecision, CompositeMode, LeaseId, SlotGrant, Store, StoreError,
    StoreFuture, StoreHealth,
};
use crate::clock::{Clock, MonotonicClock, Nanos};
use crate::rate::keyed::{KeyedStates, Reclaim, ToOwnedKey};
use crate::rate::{Algorithm, AnyAlgorithm, AnyState, Decision, KeyedConfig};

/// Limiter state in this process's memory: a sharded map bounded by `max_keys`, with
/// idle keys dropped (see [`KeyedConfig`]). Correctness never depends on a background
/// task; [`sweep`](MemoryStore::sweep) may be called periodically to give memory back
/// sooner.
///
/// Concurrency slots are plain counters: their holders live in this process, so there is
/// nothing for a lease to outlive, and the `lease` duration is not used.
///
/// Memory: about 100 bytes per key plus the key strings (measured in
/// `docs/BENCHMARKS.md`).
pub struct MemoryStore {
    states: KeyedStates<StoreKey, MemoryState>,
    clock: Arc<dyn Clock>,
}

impl ToOwnedKey<StoreKey> for KeyRef<'_> {
    fn to_owned_key(&self) -> StoreKey {
        self.to_owned_key()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoryState {
    Rate {
        state: AnyState,
        expires_at: Nanos,
        active_at: Nanos,
    },
    Slots(u32),
}

impl Default for MemoryState {
    fn default() -> Self {
        MemoryState::Rate {
            state: AnyState::Fresh,
            expires_at: Nanos::ZERO,
            active_at: Nanos::ZERO,
        }
    }
}

struct ByStoredExpiry;

impl Reclaim<MemoryState> for ByStoredExpiry {
    fn expires_at(&self, state: &MemoryState) -> Nanos {
        match state {
            MemoryState::Rate { expires_at, .. } => *expires_at,
            MemoryState::Slots(0) => Nanos::ZERO,
            MemoryState::Slots(_) => Nanos::new(u64::MAX),
        }
    }
    fn last_active(&self, state: &MemoryState) -> Nanos {
        match state {
            MemoryState::Rate { active_at, .. } => *active_at,
            MemoryState::Slots(_) => Nanos::new(u64::MAX),
        }
    }
    fn pinned(&self, state: &MemoryState) -> bool {
        matches!(state, MemoryState::Slots(held) if *held > 0)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("states", &self.states)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn rate_state(state: &MemoryState) -> AnyState {
    match state {
        MemoryState::Rate { state, .. } => *state,
        MemoryState::Slots(_) => AnyState::Fresh,
    }
}

fn charge(
    algorithm: &AnyAlgorithm,
    state: &mut MemoryState,
    now: Nanos,
    cost: u32,
) -> Result<Decision, StoreError> {
    let mut inner = rate_state(state);
    let decision =
        algorithm
            .check(&mut inner, now, cost)
            .map_err(|err| StoreError::InvalidRequest {
                detail: err.to_string(),
            })?;
    let active_at = match *state {
        MemoryState::Rate { active_at, .. } if !decision.allowed || cost == 0 => active_at,
        _ => now,
    };
    *state = MemoryState::Rate {
        state: inner,
        expires_at: algorithm.expires_at(&inner),
        active_at,
    };
    Ok(decision)
}

fn look(algorithm: &AnyAlgorithm, state: &MemoryState, now: Nanos) -> Decision {
    let mut copy = rate_state(state);
    algorithm
        .check(&mut copy, now, 0)
        .unwrap_or(Decision::allow(algorithm.limit(), 0, Duration::ZERO))
}

impl MemoryStore {
    /// A store with default bounds (100,000 keys, 300 s idle) on the monotonic clock.
    pub fn new() -> Self {
        Self::with_config(KeyedConfig::default(), MonotonicClock)
    }

    /// A store with default bounds on `clock`.
    pub fn with_clock(clock: impl Clock) -> Self {
        Self::with_config(KeyedConfig::default(), clock)
    }

    /// A store with the given bounds on `clock`.
    pub fn with_config(config: KeyedConfig, clock: impl Clock) -> Self {
        MemoryStore {
            states: KeyedStates::new(config),
            clock: Arc::new(clock),
        }
    }

    /// Keys held now (all limiters together).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys the store will ever hold.
    pub fn capacity(&self) -> usize {
        self.states.capacity()
    }

    /// Drops keys that are back to a full quota or idle; returns how many.
    pub fn sweep(&self) -> usize {
        self.states.sweep(self.clock.now(), &ByStoredExpiry)
    }

    /// The decision for one check, synchronously (what [`Store::check`] returns).
    pub fn check_now(
        &self,
        limiter: &str,
        algorithm: &AnyAlgorithm,
        key: &str,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let now = self.clock.now();
        self.states
            .with_state(&KeyRef(limiter, key), now, &ByStoredExpiry, |state| {
                charge(algorithm, state, now, cost)
            })
            .unwrap_or_else(|| Err(full(limiter)))
    }

    fn composite_now(
        &self,
        checks: &[Check<'_>],
        mode: CompositeMode,
    ) -> Result<CompositeDecision, StoreError> {
        let now = self.clock.now();
        let keys: Vec<KeyRef<'_>> = checks.iter().map(|c| KeyRef(c.limiter, c.key)).collect();
        let key_refs: Vec<&KeyRef<'_>> = keys.iter().collect();
        self.states
            .with_many(&key_refs, now, &ByStoredExpiry, |states| {
                // Decide each on a copy first; nothing is charged yet.
                let mut trial = Vec::with_capacity(checks.len());
                for (check, state) in checks.iter().zip(states.iter()) {
                    let Some(state) = state else {
                        return Err(full(check.limiter));
                    };
                    let mut copy = *state;
                    let decision = charge(check.algorithm, &mut copy, now, check.cost)?;
                    trial.push((decision, copy));
                }
                let charge_only: Option<usize> = match mode {
                    CompositeMode::AnyMustPass => trial.iter().position(|(d, _)| d.allowed),
                    CompositeMode::AllMustPass | CompositeMode::MostRestrictive => None,
                };
                let allowed = match mode {
                    CompositeMode::AnyMustPass => charge_only.is_some(),
                    _ => trial.iter().all(|(d, _)| d.allowed),
                };
                let mut decisions = Vec::with_capacity(checks.len());
                for (n, ((decision, copy), (check, state))) in trial
                    .into_iter()
                    .zip(checks.iter().zip(states.iter_mut()))
                    .enumerate()
                {
                    let charged = match mode {
                        CompositeMode::AnyMustPass => charge_only == Some(n),
                        _ => allowed,
                    };
                    if charged {
                        *state = Some(copy);
                        decisions.push(decision);
                    } else if decision.allowed {
                        // Would have been admitted but was not charged: report as is.
                        let current = state.as_ref().copied().unwrap_or_default();
                        decisions.push(look(check.algorithm, &current, now));
                    } else {
                        decisions.push(decision);
                    }
                }
                Ok(CompositeDecision {
                    allowed,
                    deciding: deciding_index(mode, allowed, &decisions),
                    decisions,
                })
            })
    }
}

fn full(limiter: &str) -> StoreError {
    StoreError::Unavailable {
        store: "memory".into(),
        reason: format!("no room for a new key of `{limiter}`: every slot holds a permit"),
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn check<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
        cost: u32,
    ) -> StoreFuture<'a, Decision> {
        StoreFuture::ready(self.check_now(limiter, algorithm, key, cost))
    }

    fn check_composite<'a>(
        &'a self,
        checks: &'a [Check<'a>],
        mode: CompositeMode,
    ) -> StoreFuture<'a, CompositeDecision> {
        StoreFuture::ready(self.composite_now(checks, mode))
    }

    fn inspect<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
    ) -> StoreFuture<'a, Decision> {
        let now = self.clock.now();
        let state = self
            .states
            .peek(&KeyRef(limiter, key), |s| *s)
            .unwrap_or_default();
        StoreFuture::ready(Ok(look(algorithm, &state, now)))
    }

    fn acquire_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        max: u32,
        _lease: Duration,
    ) -> StoreFuture<'a, SlotGrant> {
        let now = self.clock.now();
        let grant = self
            .states
            .with_state(&KeyRef(limiter, key), now, &ByStoredExpiry, |state| {
                let held = match *state {
                    MemoryState::Slots(held) => held,
                    MemoryState::Rate { .. } => 0,
                };
                if held < max {
                    *state = MemoryState::Slots(held + 1);
                    SlotGrant {
                        decision: Decision::allow(max, max - held - 1, Duration::ZERO),
                        lease: Some(LeaseId(0)),
                    }
                } else {
                    *state = MemoryState::Slots(held);
                    SlotGrant {
                        decision: Decision::deny(max, 0, Duration::ZERO, Duration::ZERO),
                        lease: None,
                    }
                }
            })
            .ok_or_else(|| full(limiter));
        StoreFuture::ready(grant)
    }

    fn release_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        _lease: LeaseId,
    ) -> StoreFuture<'a, ()> {
        self.states
            .update_or_remove(&KeyRef(limiter, key), |state| match state {
                MemoryState::Slots(held) => {
                    *held = held.saturating_sub(1);
                    *held == 0
                }
                MemoryState::Rate { .. } => false,
            });
        StoreFuture::ready(Ok(()))
    }

    fn reset<'a>(&'a self, limiter: &'a str, key: Option<&'a str>) -> StoreFuture<'a, u64> {
        let removed = match key {
            Some(key) => u64::from(self.states.remove(&KeyRef(limiter, key))),
            None => self.states.remove_where(|k, _| &*k.0 == limiter) as u64,
        };
        StoreFuture::ready(Ok(removed))
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        StoreFuture::ready(Ok(StoreHealth {
            reachable: true,
            latency: Duration::ZERO,
            detail: None,
        }))
    }
}
