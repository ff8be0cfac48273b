//! A bounded, keyed memory of what servers said about their limits.

use std::collections::HashMap;

use httpower_core::clock::Nanos;
use parking_lot::Mutex;

use super::ServerFeedback;

/// Whether a request may be sent now, according to what the server last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send: nothing is known, the known window has reset, or budget is left (one unit of
    /// which this request has now taken).
    Go,
    /// The server's budget for this key is spent: do not send before this time (on the
    /// same clock as the `now` given to [`ServerLimits::admit`]).
    NotBefore(Nanos),
}

/// What is remembered per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// Requests the server still allows before `reset_at`.
    remaining: u64,
    /// When the server's window resets; the record means nothing after it.
    reset_at: Nanos,
}

/// The last rate-limit state each server reported, consulted before sending.
///
/// Keyed by a string the client chooses (its `rate_limit_key`, or the host). Times are
/// [`Nanos`] read from the caller's clock, so behaviour is deterministic under a manual
/// clock. Each key holds one small record: the requests remaining and when the window
/// resets. [`record`](Self::record) stores the newest feedback; [`admit`](Self::admit)
/// takes one request from the remaining budget or says how long to wait.
///
/// Memory is bounded by `max_keys`: when a new key arrives and the map is full, records
/// whose window has already reset are dropped first, then the record that resets
/// soonest (the one whose information is about to expire anyway).
///
/// One mutex guards the map. Each operation is a hash lookup and a few integer
/// comparisons (the eviction scan runs only when a new key meets a full map), so the lock
/// is held for well under a microsecond.
#[derive(Debug)]
pub struct ServerLimits {
    max_keys: usize,
    records: Mutex<HashMap<String, Record>>,
}

impl ServerLimits {
    /// An empty memory holding at most `max_keys` keys (at least one; `0` is read as `1`).
    pub fn new(max_keys: usize) -> Self {
        ServerLimits {
            max_keys: max_keys.max(1),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// The most keys held at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Remembers what a response for `key` said, at time `now`.
    ///
    /// * A throttled response (429 or 503) means nothing may be sent until
    ///   `now + retry_after` (or, without `Retry-After`, until the advertised reset or, as a
    ///   last resort, one window).
    /// * Otherwise the advertised `remaining` holds until `now + reset_after` (or one
    ///   `window` when no reset is given). A `Retry-After` on a response that was not
    ///   throttled is a polling hint and is not a limit.
    ///
    /// Newer information replaces older; feedback that carries no usable pair of
    /// "remaining" and "until when" leaves the record as it was. A window that has
    /// already reset (a reset of zero) removes the record.
    pub fn record(&self, key: &str, feedback: &ServerFeedback, now: Nanos) {
        let Some(record) = Self::derive(feedback, now) else {
            return;
        };
        let mut records = self.records.lock();
        if record.reset_at <= now {
            records.remove(key);
            return;
        }
        if let Some(slot) = records.get_mut(key) {
            *slot = record;
            return;
        }
        if records.len() >= self.max_keys {
            records.retain(|_, kept| kept.reset_at > now);
        }
        if records.len() >= self.max_keys {
            let soonest = records
                .iter()
                .min_by_key(|(_, kept)| kept.reset_at)
                .map(|(victim, _)| victim.clone());
            if let Some(victim) = soonest {
                records.remove(&victim);
            }
        }
        records.insert(key.to_owned(), record);
    }

    /// The record a piece of feedback leads to, if it says both how much is left and
    /// until when.
    fn derive(feedback: &ServerFeedback, now: Nanos) -> Option<Record> {
        if feedback.throttled {
            let until = feedback
                .retry_after
                .or(feedback.reset_after)
                .or(feedback.window)?;
            return Some(Record {
                remaining: 0,
                reset_at: now + until,
            });
        }
        let remaining = feedback.remaining?;
        let until = feedback.reset_after.or(feedback.window)?;
        Some(Record {
            remaining,
            reset_at: now + until,
        })
    }

    /// Asks whether a request for `key` may be sent at `now`.
    ///
    /// With a live record (`now` before its reset), a positive remaining budget is
    /// decremented (concurrent requests share what is left) and the answer is
    /// [`Admission::Go`]; an exhausted budget answers [`Admission::NotBefore`] the reset.
    /// A record whose reset has passed is stale: it is forgotten and the answer is `Go`,
    /// as it is for a key with no record.
    pub fn admit(&self, key: &str, now: Nanos) -> Admission {
        let mut records = self.records.lock();
        let Some(record) = records.get_mut(key) else {
            return Admission::Go;
        };
        if now >= record.reset_at {
            records.remove(key);
            return Admission::Go;
        }
        if record.remaining == 0 {
            return Admission::NotBefore(record.reset_at);
        }
        record.remaining -= 1;
        Admission::Go
    }

    /// Forgets what is known about `key`; returns whether there was a record.
    pub fn forget(&self, key: &str) -> bool {
        self.records.lock().remove(key).is_some()
    }

    /// The number of keys with a record (stale records count until they are touched or
    /// evicted).
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    /// Whether no key has a record.
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at(s: u64) -> Nanos {
        Nanos::from_duration(secs(s))
    }

    fn budget(remaining: u64, reset: u64) -> ServerFeedback {
        ServerFeedback {
            remaining: Some(remaining),
            reset_after: Some(secs(reset)),
            ..ServerFeedback::default()
        }
    }

    #[test]
    fn unknown_key_goes() {
        let limits = ServerLimits::new(8);
        assert_eq!(limits.admit("a", at(0)), Admission::Go);
        assert!(limits.is_empty());
    }

    #[test]
    fn remaining_is_shared_then_waits_for_reset() {
        let limits = ServerLimits::new(8);
        limits.record("a", &budget(2, 10), at(100));
        assert_eq!(limits.len(), 1);
        assert_eq!(limits.admit("a", at(101)), Admission::Go);
        assert_eq!(limits.admit("a", at(102)), Admission::Go);
        assert_eq!(limits.admit("a", at(103)), Admission::NotBefore(at(110)));
        assert_eq!(limits.admit("a", at(109)), Admission::NotBefore(at(110)));
        // Other keys are unaffected.
        assert_eq!(limits.admit("b", at(103)), Admission::Go);
        // At the reset the record is stale: forgotten, and requests go.
        assert_eq!(limits.admit("a", at(110)), Admission::Go);
        assert!(limits.is_empty());
        assert_eq!(limits.admit("a", at(110)), Admission::Go);
    }

    #[test]
    fn newer_feedback_replaces_older() {
        let limits = ServerLimits::new(8);
        limits.record("a", &budget(0, 60), at(0));
        assert_eq!(limits.admit("a", at(1)), Admission::NotBefore(at(60)));
        limits.record("a", &budget(1, 5), at(2));
        assert_eq!(limits.admit("a", at(3)), Admission::Go);
        assert_eq!(limits.admit("a", at(3)), Admission::NotBefore(at(7)));
        // A reset of zero: the window is fresh, nothing to hold.
        limits.record("a", &budget(0, 0), at(4));
        assert!(limits.is_empty());
        assert_eq!(limits.admit("a", at(4)), Admission::Go);
    }

    #[test]
    fn throttled_uses_retry_after_then_reset_then_window() {
        let limits = ServerLimits::new(8);
        let throttled = ServerFeedback {
            throttled: true,
            remaining: Some(7),
            reset_after: Some(secs(50)),
            retry_after: Some(secs(20)),
            ..ServerFeedback::default()
        };
        limits.record("a", &throttled, at(0));
        assert_eq!(limits.admit("a", at(0)), Admission::NotBefore(at(20)));

        let no_retry_after = ServerFeedback {
            retry_after: None,
            ..throttled
        };
        limits.record("a", &no_retry_after, at(0));
        assert_eq!(limits.admit("a", at(0)), Admission::NotBefore(at(50)));

        let window_only = ServerFeedback {
            throttled: true,
            window: Some(secs(60)),
            ..ServerFeedback::default()
        };
        limits.record("a", &window_only, at(0));
        assert_eq!(limits.admit("a", at(0)), Admission::NotBefore(at(60)));
    }

    #[test]
    fn incomplete_feedback_is_not_recorded() {
        let limits = ServerLimits::new(8);
        // Remaining without any time: nothing to expire it by.
        limits.record(
            "a",
            &ServerFeedback {
                remaining: Some(0),
                limit: Some(10),
                ..ServerFeedback::default()
            },
            at(0),
        );
        // Retry-After on a successful response is a polling hint, not a limit.
        limits.record(
            "a",
            &ServerFeedback {
                retry_after: Some(secs(30)),
                ..ServerFeedback::default()
            },
            at(0),
        );
        // A 429 with nothing but the status.
        limits.record(
            "a",
            &ServerFeedback {
                throttled: true,
                ..ServerFeedback::default()
            },
            at(0),
        );
        assert!(limits.is_empty());
        // The window stands in for a missing reset.
        limits.record(
            "a",
            &ServerFeedback {
                remaining: Some(0),
                window: Some(secs(60)),
                ..ServerFeedback::default()
            },
            at(0),
        );
        assert_eq!(limits.admit("a", at(0)), Admission::NotBefore(at(60)));
        // And incomplete feedback leaves an existing record alone.
        limits.record("a", &ServerFeedback::default(), at(1));
        assert_eq!(limits.admit("a", at(1)), Admission::NotBefore(at(60)));
    }

    #[test]
    fn forget() {
        let limits = ServerLimits::new(8);
        limits.record("a", &budget(0, 60), at(0));
        assert!(limits.forget("a"));
        assert!(!limits.forget("a"));
        assert_eq!(limits.admit("a", at(1)), Admission::Go);
    }

    #[test]
    fn bounded_evicts_expired_first_then_soonest_reset() {
        let limits = ServerLimits::new(3);
        assert_eq!(limits.max_keys(), 3);
        limits.record("short", &budget(0, 5), at(0));
        limits.record("mid", &budget(0, 20), at(0));
        limits.record("long", &budget(0, 30), at(0));
        assert_eq!(limits.len(), 3);

        // At 10 "short" has expired: it goes, the others stay.
        limits.record("new1", &budget(0, 100), at(10));
        assert_eq!(limits.len(), 3);
        assert_eq!(limits.admit("mid", at(10)), Admission::NotBefore(at(20)));
        assert_eq!(limits.admit("long", at(10)), Admission::NotBefore(at(30)));
        assert_eq!(limits.admit("new1", at(10)), Admission::NotBefore(at(110)));

        // Nothing expired at 11: the soonest reset ("mid", at 20) is evicted.
        limits.record("new2", &budget(0, 100), at(11));
        assert_eq!(limits.len(), 3);
        assert_eq!(limits.admit("mid", at(11)), Admission::Go);
        assert_eq!(limits.admit("long", at(11)), Admission::NotBefore(at(30)));
        assert_eq!(limits.admit("new2", at(11)), Admission::NotBefore(at(111)));

        // Updating an existing key never evicts.
        limits.record("long", &budget(0, 200), at(12));
        assert_eq!(limits.len(), 3);
        assert_eq!(limits.admit("new1", at(12)), Admission::NotBefore(at(110)));
    }

    #[test]
    fn many_keys_stay_bounded() {
        let limits = ServerLimits::new(64);
        for i in 0..10_000u64 {
            limits.record(&format!("k{i}"), &budget(1, 1 + i % 50), at(i / 100));
            assert!(limits.len() <= 64);
        }
        assert_eq!(limits.len(), 64);
    }

    #[test]
    fn zero_max_keys_still_holds_one() {
        let limits = ServerLimits::new(0);
        assert_eq!(limits.max_keys(), 1);
        limits.record("a", &budget(0, 10), at(0));
        limits.record("b", &budget(0, 10), at(0));
        assert_eq!(limits.len(), 1);
        assert_eq!(limits.admit("b", at(0)), Admission::NotBefore(at(10)));
    }

    #[test]
    fn concurrent_admissions_never_exceed_remaining() {
        let limits = Arc::new(ServerLimits::new(8));
        limits.record("a", &budget(100, 60), at(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let limits = Arc::clone(&limits);
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| limits.admit("a", at(1)) == Admission::Go)
                        .count()
                })
            })
            .collect();
        let admitted: usize = handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(0))
            .sum();
        assert_eq!(admitted, 100);
    }
}
