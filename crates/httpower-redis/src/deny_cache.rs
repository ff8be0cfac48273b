//! The local cache of keys known to be over their limit.
//!
//! When Redis denies a key, it also says when the same request could pass
//! (`retry_after`). Until then every further request for that key will be denied, so
//! asking Redis again only costs a round trip — and a hot abusive key is exactly the
//! one that asks most. The cache answers those denials locally, on the caller's
//! monotonic clock, and never admits anything: an entry only ever turns an answer Redis
//! would give into the same answer given sooner. It is bounded; when full, expired
//! entries go first, then an arbitrary one.

use std::time::Duration;

use hashbrown::HashMap;
use httpower_core::clock::Nanos;
use httpower_core::rate::Decision;
use httpower_core::store::{LimiterKey as Key, LimiterKeyRef as KeyRef};
use parking_lot::Mutex;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The denial as Redis gave it.
    decision: Decision,
    /// When it was given.
    at: Nanos,
    /// The smallest cost it applies to: a cheaper request may fit earlier.
    cost: u32,
}

impl Entry {
    fn until(&self) -> Nanos {
        self.at + self.decision.retry_after
    }
}

/// Bounded map of (limiter, key) → a denial still in force.
#[derive(Debug)]
pub(crate) struct DenyCache {
    capacity: usize,
    entries: Mutex<HashMap<Key, Entry, foldhash::fast::RandomState>>,
    last_sweep: Mutex<Nanos>,
}

impl DenyCache {
    pub(crate) fn new(capacity: usize) -> DenyCache {
        DenyCache {
            capacity,
            entries: Mutex::new(HashMap::with_hasher(foldhash::fast::RandomState::default())),
            last_sweep: Mutex::new(Nanos::ZERO),
        }
    }

    /// The denial still in force for a request of `cost`, aged to `now`.
    pub(crate) fn lookup(
        &self,
        limiter: &str,
        key: &str,
        cost: u32,
        now: Nanos,
    ) -> Option<Decision> {
        if self.capacity == 0 || cost == 0 {
            return None;
        }
        let mut entries = self.entries.lock();
        let probe = KeyRef(limiter, key);
        let entry = *entries.get(&probe)?;
        let until = entry.until();
        if now >= until {
            entries.remove(&probe);
            return None;
        }
        if cost < entry.cost {
            return None;
        }
        let elapsed = now.saturating_duration_since(entry.at);
        let d = entry.decision;
        Some(Decision::deny(
            d.limit,
            d.remaining,
            d.reset_after.saturating_sub(elapsed),
            until.saturating_duration_since(now),
        ))
    }

    /// Remembers a denial Redis gave at `now` for a request of `cost`.
    pub(crate) fn remember(
        &self,
        limiter: &str,
        key: &str,
        cost: u32,
        decision: Decision,
        now: Nanos,
    ) {
        if self.capacity == 0 || decision.allowed || decision.retry_after < Duration::from_millis(1)
        {
            return;
        }
        let entry = Entry {
            decision,
            at: now,
            cost,
        };
        let mut entries = self.entries.lock();
        if let Some(existing) = entries.get_mut(&KeyRef(limiter, key)) {
            *existing = entry;
            return;
        }
        if entries.len() >= self.capacity {
            // Sweep expired entries at most once a second; when the cache is full of
            // live denials, the new one is simply not cached (Redis still answers it).
            let mut last = self.last_sweep.lock();
            if now.saturating_duration_since(*last) >= Duration::from_secs(1) || *last > now {
                *last = now;
                entries.retain(|_, e| e.until() > now);
            }
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(KeyRef(limiter, key).to_owned_key(), entry);
    }

    /// Forgets one key of `limiter`, or all of them.
    pub(crate) fn forget(&self, limiter: &str, key: Option<&str>) {
        let mut entries = self.entries.lock();
        match key {
            Some(key) => {
                entries.remove(&KeyRef(limiter, key));
            }
            None => entries.retain(|k, _| &*k.0 != limiter),
        }
    }

    /// Entries held (tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(retry_ms: u64) -> Decision {
        Decision::deny(
            10,
            0,
            Duration::from_secs(1),
            Duration::from_millis(retry_ms),
        )
    }

    #[test]
    fn a_denial_is_answered_until_its_retry_time_then_forgotten() {
        let cache = DenyCache::new(8);
        let t0 = Nanos::new(1_000_000_000);
        cache.remember("l", "k", 1, denial(200), t0);
        let later = t0 + Duration::from_millis(50);
        let d = cache.lookup("l", "k", 1, later).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(150));
        assert_eq!(d.reset_after, Duration::from_millis(950));
        assert!(cache
            .lookup("l", "k", 1, t0 + Duration::from_millis(200))
            .is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn cheaper_requests_and_inspections_go_to_redis() {
        let cache = DenyCache::new(8);
        let t0 = Nanos::new(5);
        cache.remember("l", "k", 3, denial(100), t0);
        assert!(cache.lookup("l", "k", 1, t0).is_none());
        assert!(cache.lookup("l", "k", 0, t0).is_none());
        assert!(cache.lookup("l", "k", 3, t0).is_some());
        assert!(cache.lookup("other", "k", 3, t0).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = DenyCache::new(4);
        let t0 = Nanos::new(0);
        for i in 0..100 {
            cache.remember("l", &i.to_string(), 1, denial(1000), t0);
            assert!(cache.len() <= 4);
        }
        // Once the first entries expire, new denials find room again.
        let later = t0 + Duration::from_secs(2);
        cache.remember("l", "fresh", 1, denial(1000), later);
        assert!(cache.lookup("l", "fresh", 1, later).is_some());
        cache.forget("l", None);
        assert_eq!(cache.len(), 0);
        let off = DenyCache::new(0);
        off.remember("l", "k", 1, denial(1000), t0);
        assert!(off.lookup("l", "k", 1, t0).is_none());
    }
}
