//! The bounded, sharded map of per-key state shared by every in-memory limiter.
//!
//! One map serves the keyed [`RateLimiter`](super::RateLimiter), the
//! [`ConcurrencyLimiter`](super::ConcurrencyLimiter) and the
//! [`MemoryStore`](crate::store::MemoryStore).
//!
//! * **Sharded**: the key's hash picks one of N mutex-protected tables, so threads
//!   touching different keys rarely meet on a lock. The hash is computed once and reused
//!   for the table lookup.
//! * **Bounded**: each shard holds at most `max_keys / N` entries, so the map never holds
//!   more than `max_keys`, however many distinct keys arrive.
//! * **Self-cleaning without a task**: inserting into a full shard first sweeps it —
//!   dropping entries whose state is back to "fresh" (lossless) or whose last admitted
//!   request is older than `idle_timeout` — and, if the shard is still full, evicts the
//!   sampled entry closest to a full quota.
//! * **Small**: an entry is the key and the algorithm's state, nothing else (16 bytes
//!   for a `u64` key and GCRA), because the state itself tells when it expires. A periodic [`sweep`](KeyedStates::sweep) is
//!   optional.
//!
//! Evicting an entry that is not fresh forgets its history (the key starts over with a
//! full quota). That only happens to keys idle for `idle_timeout`, or under capacity
//! pressure to the coldest sampled key: the price of a hard memory bound.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::{Equivalent, HashTable};
use parking_lot::Mutex;

use crate::clock::{duration_to_nanos, Nanos};

/// Sizing and eviction settings for an in-memory keyed limiter or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedConfig {
    /// The most keys held at once (default 100,000).
    pub max_keys: usize,
    /// Keys untouched this long are dropped when their shard is swept (default 300 s).
    pub idle_timeout: Duration,
    /// Number of shards, rounded to a power of two (default: 16 × available cores, at
    /// most 256, never more than `max_keys`).
    pub shards: usize,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        KeyedConfig {
            max_keys: 100_000,
            idle_timeout: Duration::from_secs(300),
            shards: (cores * 16).min(256),
        }
    }
}

impl KeyedConfig {
    /// The default settings with a different key bound.
    pub fn with_max_keys(max_keys: usize) -> Self {
        KeyedConfig {
            max_keys,
            ..Self::default()
        }
    }
}

/// How a map decides which entries it may drop.
pub(crate) trait Reclaim<S> {
    /// From this instant the state is equivalent to a key never seen: dropping it then
    /// loses nothing.
    fn expires_at(&self, state: &S) -> Nanos;
    /// A lower bound of the key's last admitted request, for idle eviction.
    fn last_active(&self, state: &S) -> Nanos;
    /// The state must not be dropped at all (it tracks permits still held).
    fn pinned(&self, _state: &S) -> bool {
        false
    }
}

struct Entry<K, S> {
    key: K,
    state: S,
}

struct Shard<K, S> {
    table: HashTable<Entry<K, S>>,
    last_sweep: Option<u64>,
}

/// How many entries are looked at to pick a victim when a shard is full and nothing is
/// reclaimable.
const EVICTION_SAMPLE: usize = 8;

/// One shard per cache line pair, so threads locking neighbouring shards do not
/// invalidate each other's line (false sharing).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

type LockedShard<K, S> = Padded<Mutex<Shard<K, S>>>;

/// The sharded, bounded map. See the module docs.
pub(crate) struct KeyedStates<K, S> {
    shards: Box<[LockedShard<K, S>]>,
    shard_shift: u32,
    shard_mask: u64,
    per_shard: usize,
    idle_nanos: u64,
    sweep_every: u64,
    hasher: foldhash::fast::RandomState,
    len: AtomicUsize,
}

impl<K, S> fmt::Debug for KeyedStates<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStates")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish()
    }
}

impl<K: Hash + Eq, S> KeyedStates<K, S> {
    pub(crate) fn new(config: KeyedConfig) -> Self {
        let max_keys = config.max_keys.max(1);
        let wanted = config.shards.clamp(1, 1 << 16).min(max_keys);
        // Largest power of two not above `wanted`, so the per-shard bound × shards ≤ max.
        let shards = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
        let idle_nanos = duration_to_nanos(config.idle_timeout).max(1);
        KeyedStates {
            shards: (0..shards)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        table: HashTable::new(),
                        last_sweep: None,
                    }))
                })
                .collect(),
            // Bits 40.. pick the shard; the table itself uses the low bits and the top 7.
            shard_shift: 40,
            shard_mask: (shards as u64) - 1,
            per_shard: max_keys / shards,
            idle_nanos,
            sweep_every: (idle_nanos / 4).max(1),
            hasher: foldhash::fast::RandomState::default(),
            len: AtomicUsize::new(0),
        }
    }

    /// Entries held now.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The largest number of entries the map can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Bytes held by the tables themselves (entries inline, control bytes, spare room);
    /// heap data a key or state points to is not included.
    pub(crate) fn table_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().table.allocation_size())
            .sum::<usize>()
            + size_of_val(&*self.shards)
    }

    fn shard_index(&self, hash: u64) -> usize {
        // The mask keeps the index below the shard count, which is a usize.
        ((hash >> self.shard_shift) & self.shard_mask) as usize
    }

    fn shard_of(&self, hash: u64) -> &Mutex<Shard<K, S>> {
        &self.shards[self.shard_index(hash)]
    }

    /// Runs `f` on the state of `key`, creating a default state if the key is new.
    ///
    /// Returns `None` only when the key is new, its shard is full and every entry in it
    /// is pinned.
    pub(crate) fn with_state<Q, R>(
        &self,
        key: &Q,
        now: Nanos,
        reclaim: &impl Reclaim<S>,
        f: impl FnOnce(&mut S) -> R,
    ) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ToOwnedKey<K> + ?Sized,
        S: Default,
    {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard_of(hash).lock();
        self.find_or_insert(&mut shard, hash, key, now, reclaim)
            .map(f)
    }

    /// The state of `key` in its (locked) shard, inserting a default state when the key
    /// is new and room can be made. The one place entries are created.
    fn find_or_insert<'s, Q>(
        &self,
        shard: &'s mut Shard<K, S>,
        hash: u64,
        key: &Q,
        now: Nanos,
        reclaim: &impl Reclaim<S>,
    ) -> Option<&'s mut S>
    where
        Q: Hash + Equivalent<K> + ToOwnedKey<K> + ?Sized,
        S: Default,
    {
        // One probe for a known key; a new key costs a second (insert) probe.
        let Shard { table, last_sweep } = shard;
        let table = match table.find_entry(hash, |e| key.equivalent(&e.key)) {
            Ok(entry) => return Some(&mut entry.into_mut().state),
            Err(absent) => absent.into_table(),
        };
        if table.len() >= self.per_shard && !self.make_room(table, last_sweep, now, reclaim) {
            return None;
        }
        let hasher = &self.hasher;
        let entry = table.insert_unique(
            hash,
            Entry {
                key: key.to_owned_key(),
                state: S::default(),
            },
            |e| hasher.hash_one(&e.key),
        );
        self.len.fetch_add(1, Ordering::Relaxed);
        Some(&mut entry.into_mut().state)
    }

    /// Runs `f` once with copies of the states of all `keys` (created when new) and
    /// writes the copies back, holding every shard involved throughout, so the caller
    /// sees and changes them atomically. Shards are locked in index order, so concurrent
    /// callers cannot deadlock. A key whose shard is full of pinned entries gets `None`.
    pub(crate) fn with_many<Q, R>(
        &self,
        keys: &[&Q],
        now: Nanos,
        reclaim: &impl Reclaim<S>,
        f: impl FnOnce(&mut [Option<S>]) -> R,
    ) -> R
    where
        Q: Hash + Equivalent<K> + ToOwnedKey<K> + ?Sized,
        S: Default + Clone,
    {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hasher.hash_one(k)).collect();
        let mut order: Vec<usize> = hashes.iter().map(|h| self.shard_index(*h)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order.iter().map(|i| (*i, self.shards[*i].lock())).collect();
        let mut states: Vec<Option<S>> = Vec::with_capacity(keys.len());
        for (key, hash) in keys.iter().zip(&hashes) {
            let state = held(&mut guards, self.shard_index(*hash)).and_then(|shard| {
                self.find_or_insert(shard, *hash, *key, now, reclaim)
                    .map(|state| state.clone())
            });
            states.push(state);
        }
        let result = f(&mut states);
        for ((key, hash), state) in keys.iter().zip(&hashes).zip(states) {
            let Some(state) = state else { continue };
            if let Some(shard) = held(&mut guards, self.shard_index(*hash)) {
                if let Some(entry) = shard.table.find_mut(*hash, |e| key.equivalent(&e.key)) {
                    entry.state = state;
                }
            }
        }
        result
    }

    /// Runs `f` on the state of `key` if the key is held; never inserts.
    pub(crate) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&mut S) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard_of(hash).lock();
        shard
            .table
            .find_mut(hash, |e| key.equivalent(&e.key))
            .map(|e| f(&mut e.state))
    }

    /// Runs `f` on the state of `key` if held, and removes the entry when `f` returns
    /// true — both under one lock. Returns whether the key was held.
    pub(crate) fn update_or_remove<Q>(&self, key: &Q, f: impl FnOnce(&mut S) -> bool) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard_of(hash).lock();
        match shard.table.find_entry(hash, |e| key.equivalent(&e.key)) {
            Ok(mut entry) => {
                if f(&mut entry.get_mut().state) {
                    entry.remove();
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Removes `key`; returns whether it was held.
    pub(crate) fn remove<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard_of(hash).lock();
        match shard.table.find_entry(hash, |e| key.equivalent(&e.key)) {
            Ok(entry) => {
                entry.remove();
                self.len.fetch_sub(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes every entry for which `drop_it` says so.
    pub(crate) fn remove_where(&self, mut drop_it: impl FnMut(&K, &S) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let before = shard.table.len();
            shard.table.retain(|e| !drop_it(&e.key, &e.state));
            removed += before - shard.table.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Drops every reclaimable or idle entry in every shard; returns how many.
    pub(crate) fn sweep(&self, now: Nanos, reclaim: &impl Reclaim<S>) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = &mut *shard.lock();
                self.sweep_table(&mut shard.table, &mut shard.last_sweep, now, reclaim)
            })
            .sum()
    }

    fn sweep_table(
        &self,
        table: &mut HashTable<Entry<K, S>>,
        last_sweep: &mut Option<u64>,
        now: Nanos,
        reclaim: &impl Reclaim<S>,
    ) -> usize {
        let now_raw = now.as_u64();
        let idle = self.idle_nanos;
        let before = table.len();
        table.retain(|e| {
            reclaim.pinned(&e.state)
                || !(reclaim.expires_at(&e.state) <= now
                    || now_raw.saturating_sub(reclaim.last_active(&e.state).as_u64()) >= idle)
        });
        *last_sweep = Some(now_raw);
        let removed = before - table.len();
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Frees one slot in a full shard. Returns false if every entry is pinned.
    fn make_room(
        &self,
        table: &mut HashTable<Entry<K, S>>,
        last_sweep: &mut Option<u64>,
        now: Nanos,
        reclaim: &impl Reclaim<S>,
    ) -> bool {
        let now_raw = now.as_u64();
        let sweep_due =
            last_sweep.is_none_or(|last| now_raw.saturating_sub(last) >= self.sweep_every);
        if sweep_due {
            self.sweep_table(table, last_sweep, now, reclaim);
            if table.len() < self.per_shard {
                return true;
            }
        }
        // Sample a few entries and evict the unpinned one closest to a full quota, whose
        // loss forgives the least. Iteration follows the (randomly seeded) hash, so the
        // sample is unrelated to key order and an attacker cannot steer the choice.
        let victim = table
            .iter()
            .filter(|e| !reclaim.pinned(&e.state))
            .take(EVICTION_SAMPLE)
            .min_by_key(|e| reclaim.expires_at(&e.state))
            .map(|e| (self.hasher.hash_one(&e.key), reclaim.expires_at(&e.state)));
        let Some((victim_hash, victim_expiry)) = victim else {
            return false;
        };
        // Any unpinned entry on the victim's probe path that expires as soon will do.
        match table.find_entry(victim_hash, |e| {
            reclaim.expires_at(&e.state) == victim_expiry && !reclaim.pinned(&e.state)
        }) {
            Ok(entry) => {
                entry.remove();
                self.len.fetch_sub(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

/// The guard of shard `index` among those locked by a multi-key operation.
fn held<G>(guards: &mut [(usize, G)], index: usize) -> Option<&mut G> {
    guards
        .iter_mut()
        .find(|(i, _)| *i == index)
        .map(|(_, guard)| guard)
}

/// Turns a borrowed lookup key into the owned key stored in the map.
pub(crate) trait ToOwnedKey<K> {
    fn to_owned_key(&self) -> K;
}

impl<K: Clone> ToOwnedKey<K> for K {
    fn to_owned_key(&self) -> K {
        self.clone()
    }
}
