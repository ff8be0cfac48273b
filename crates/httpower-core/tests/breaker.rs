//! Behaviour of the circuit breaker and its registry, on a manual clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use httpower_core::breaker::{
    BreakerConfig, BreakerConfigBuilder, BreakerOpen, BreakerRegistry, BreakerState, CallOutcome,
    CircuitBreaker, StateChange, TransitionReason, Window, MAX_COUNT_WINDOW, MAX_TIME_BUCKETS,
};
use httpower_core::clock::{Clock, ManualClock, Nanos};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn breaker(config: BreakerConfig) -> (CircuitBreaker<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (CircuitBreaker::with_clock(config, clock.clone()), clock)
}

/// A breaker on a fresh manual clock, configured by `configure` from the defaults.
fn breaker_with(
    configure: impl FnOnce(BreakerConfigBuilder) -> BreakerConfigBuilder,
) -> (CircuitBreaker<ManualClock>, ManualClock) {
    breaker(configure(BreakerConfig::builder()).build().unwrap())
}

/// Fails calls until the breaker opens, then waits out its timeout: the next caller is
/// the first probe.
fn open_and_wait(b: &CircuitBreaker<ManualClock>, clock: &ManualClock) {
    while state(b) == BreakerState::Closed {
        fail(b);
    }
    clock.advance(b.config().timeout());
}

fn fail(b: &CircuitBreaker<ManualClock>) {
    b.try_acquire().expect("admitted").failure();
}

fn succeed(b: &CircuitBreaker<ManualClock>) {
    b.try_acquire().expect("admitted").success();
}

fn state(b: &CircuitBreaker<ManualClock>) -> BreakerState {
    b.state().state
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<StateChange>) -> Vec<StateChange> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[test]
fn count_window_trips_at_the_threshold_call() {
    let (b, _) = breaker_with(|c| c.failure_threshold(3).count_window(5));
    succeed(&b);
    fail(&b);
    succeed(&b);
    fail(&b);
    assert_eq!(state(&b), BreakerState::Closed);
    fail(&b);
    assert_eq!(
        state(&b),
        BreakerState::Open,
        "third failure in the window opens"
    );
    assert_eq!(b.state().failures, 3);
    assert_eq!(b.state().calls, 5);
}

#[test]
fn count_window_forgets_old_failures() {
    let (b, _) = breaker_with(|c| c.failure_threshold(2).count_window(3));
    fail(&b);
    succeed(&b);
    succeed(&b);
    fail(&b); // the first failure has left the window
    assert_eq!(state(&b), BreakerState::Closed);
    assert_eq!(b.state().failures, 1);
    fail(&b);
    assert_eq!(state(&b), BreakerState::Open);
}

#[test]
fn time_window_trips_and_forgets() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(3).time_window(secs(10), 10));
    fail(&b); // t = 0
    clock.advance(secs(5));
    fail(&b); // t = 5
    clock.advance(ms(5_500));
    fail(&b); // t = 10.5: the failure at 0 has expired
    assert_eq!(state(&b), BreakerState::Closed);
    assert_eq!(b.state().failures, 2);
    clock.advance(secs(1));
    fail(&b); // t = 11.5: failures at 5, 10.5, 11.5
    assert_eq!(state(&b), BreakerState::Open);
}

#[test]
fn time_window_empties_after_idle() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(2).time_window(secs(1), 4));
    fail(&b);
    clock.advance(secs(3600));
    assert_eq!(b.state().calls, 0);
    fail(&b);
    assert_eq!(state(&b), BreakerState::Closed);
}

#[test]
fn time_window_counts_stay_frozen_while_open() {
    let (b, clock) = breaker_with(|c| {
        c.failure_threshold(2)
            .time_window(secs(10), 10)
            .timeout(secs(60))
    });
    let mut rx = b.subscribe();
    fail(&b);
    fail(&b);
    assert_eq!(state(&b), BreakerState::Open);
    clock.advance(secs(60)); // far past the window: every bucket would have expired
    let open = b.state();
    assert_eq!(
        (open.failures, open.calls),
        (2, 2),
        "open snapshot is frozen"
    );
    let probe = b.try_acquire().unwrap();
    let half_open = b.state();
    assert_eq!(half_open.state, BreakerState::HalfOpen);
    assert_eq!((half_open.failures, half_open.calls), (2, 2));
    assert!((half_open.failure_rate - 100.0).abs() < 1e-9);
    let events = drain(&mut rx);
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].from, events[0].to, events[0].failures),
        (BreakerState::Closed, BreakerState::Open, 2)
    );
    assert_eq!(
        (events[1].from, events[1].to, events[1].failures),
        (BreakerState::Open, BreakerState::HalfOpen, 2)
    );
    assert!((events[1].failure_rate - 100.0).abs() < 1e-9);
    probe.failure();
    let reopened = drain(&mut rx);
    assert_eq!(
        (reopened[0].to, reopened[0].failures),
        (BreakerState::Open, 2)
    );
}

#[test]
fn percentage_waits_for_minimum_calls() {
    let (b, _) = breaker_with(|c| {
        c.failure_threshold(20)
            .count_window(20)
            .failure_threshold_percentage(50.0)
            .minimum_calls(10)
    });
    let mut rx = b.subscribe();
    for _ in 0..5 {
        fail(&b);
    }
    for _ in 0..4 {
        succeed(&b);
    }
    assert_eq!(state(&b), BreakerState::Closed, "9 calls < minimum_calls");
    succeed(&b);
    assert_eq!(state(&b), BreakerState::Open, "10 calls, 50 % failed");
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, TransitionReason::FailureRate);
    assert!((events[0].failure_rate - 50.0).abs() < 1e-9);
}

#[test]
fn slow_calls_open_the_breaker() {
    let (b, clock) = breaker_with(|c| {
        c.count_window(10)
            .minimum_calls(4)
            .slow_calls(secs(1), 50.0)
    });
    let mut rx = b.subscribe();
    let slow_success = || {
        let permit = b.try_acquire().unwrap();
        clock.advance(ms(1_001));
        permit.success();
    };
    succeed(&b);
    succeed(&b);
    slow_success();
    // Exactly the threshold duration is not "slower than".
    let permit = b.try_acquire().unwrap();
    clock.advance(secs(1));
    permit.success();
    assert_eq!(b.state().slow_calls, 1);
    assert_eq!(state(&b), BreakerState::Closed, "1 slow of 4");
    slow_success();
    assert_eq!(state(&b), BreakerState::Closed, "2 slow of 5 = 40 %");
    slow_success();
    assert_eq!(state(&b), BreakerState::Open, "3 slow of 6 = 50 %");
    let snap = b.state();
    assert_eq!((snap.slow_calls, snap.failures, snap.calls), (3, 0, 6));
    assert_eq!(drain(&mut rx)[0].reason, TransitionReason::SlowCallRate);
}

#[test]
fn slow_probe_counts_as_failed_probe() {
    let (b, clock) = breaker_with(|c| {
        c.failure_threshold(1)
            .count_window(2)
            .minimum_calls(2)
            .slow_calls(secs(1), 100.0)
            .timeout(secs(10))
    });
    open_and_wait(&b, &clock);
    let probe = b.try_acquire().unwrap();
    clock.advance(secs(2));
    probe.success();
    assert_eq!(state(&b), BreakerState::Open);
}

#[test]
fn open_fails_fast_then_probes_after_timeout() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(1).timeout(secs(60)));
    fail(&b);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(60));
    clock.advance(secs(59));
    assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(1));
    assert_eq!(b.state().retry_after, Some(secs(1)));
    clock.advance(secs(1));
    assert_eq!(b.state().state, BreakerState::Open, "lazy: no caller yet");
    assert_eq!(b.state().retry_after, Some(Duration::ZERO));
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(state(&b), BreakerState::HalfOpen);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, Duration::ZERO);
    probe.success();
    let snap = b.state();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!((snap.calls, snap.consecutive_opens), (0, 0));
}

#[test]
fn open_timeout_grows_and_is_capped() {
    let (b, clock) = breaker_with(|c| {
        c.failure_threshold(1)
            .timeout(secs(1))
            .timeout_multiplier(2.0)
            .max_timeout(secs(5))
    });
    fail(&b);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let wait = b.try_acquire().unwrap_err().retry_after;
        seen.push(wait);
        clock.advance(wait);
        b.try_acquire().unwrap().failure();
    }
    assert_eq!(seen, [secs(1), secs(2), secs(4), secs(5), secs(5)]);
    assert_eq!(b.state().consecutive_opens, 6);
    clock.advance(secs(5));
    succeed(&b); // the probe closes it and forgets the openings
    assert_eq!(b.state().consecutive_opens, 0);
    fail(&b);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(1));
}

#[test]
fn jitter_only_shortens_the_timeout() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(1).timeout(secs(10)).timeout_jitter(0.5));
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..50 {
        fail(&b);
        let wait = b.try_acquire().unwrap_err().retry_after;
        assert!(wait >= secs(5) && wait <= secs(10), "{wait:?}");
        distinct.insert(wait);
        clock.advance(wait);
        succeed(&b);
    }
    assert!(distinct.len() > 1, "jitter varies the timeout");
}

#[test]
fn dropped_probe_frees_its_slot() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(1).timeout(secs(1)));
    open_and_wait(&b, &clock);
    let probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(probe);
    assert_eq!(b.state().probes_admitted, 0);
    let probe = b.try_acquire().expect("slot given back");
    probe.record(CallOutcome::Ignored);
    let probe = b
        .try_acquire()
        .expect("ignored outcome gives the slot back too");
    probe.success();
    assert_eq!(state(&b), BreakerState::Closed);
}

#[test]
fn success_threshold_below_half_open_requests() {
    let (b, clock) = breaker_with(|c| {
        c.failure_threshold(1)
            .timeout(secs(1))
            .half_open_requests(3)
            .success_threshold(2)
    });
    open_and_wait(&b, &clock);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let p3 = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    p1.success();
    assert_eq!(state(&b), BreakerState::HalfOpen);
    assert!(b.try_acquire().is_err(), "a recorded probe keeps its slot");
    p2.success();
    assert_eq!(state(&b), BreakerState::Closed);
    p3.failure(); // issued in the half-open epoch: ignored now
    assert_eq!(state(&b), BreakerState::Closed);
    assert_eq!(b.state().failures, 0);
}

#[test]
fn stale_permit_is_not_a_probe() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(1).timeout(secs(1)));
    let old = b.try_acquire().unwrap();
    open_and_wait(&b, &clock);
    let probe = b.try_acquire().unwrap();
    old.success();
    assert_eq!(
        state(&b),
        BreakerState::HalfOpen,
        "closed-era success ignored"
    );
    probe.failure();
    assert_eq!(state(&b), BreakerState::Open);
}

#[test]
fn events_follow_each_transition() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(2).timeout(secs(5)));
    let mut rx = b.subscribe();
    succeed(&b);
    fail(&b);
    fail(&b);
    clock.advance(secs(5));
    b.try_acquire().unwrap().failure();
    clock.advance(secs(5));
    b.try_acquire().unwrap().success();
    b.force_open();
    b.force_open(); // already forced: no event
    b.force_close();
    b.force_close(); // already closed: no event
    fail(&b);
    fail(&b);
    b.reset();

    use BreakerState::{Closed, HalfOpen, Open};
    use TransitionReason::*;
    let got: Vec<_> = drain(&mut rx)
        .into_iter()
        .map(|e| (e.from, e.to, e.reason, e.at))
        .collect();
    let at = |s| Nanos::from_duration(secs(s));
    assert_eq!(
        got,
        [
            (Closed, Open, FailureCount, at(0)),
            (Open, HalfOpen, TimeoutElapsed, at(5)),
            (HalfOpen, Open, ProbeFailed, at(5)),
            (Open, HalfOpen, TimeoutElapsed, at(10)),
            (HalfOpen, Closed, ProbesSucceeded, at(10)),
            (Closed, Open, ForcedOpen, at(10)),
            (Open, Closed, ForcedClose, at(10)),
            (Closed, Open, FailureCount, at(10)),
            (Open, Closed, Reset, at(10)),
        ]
    );
}

#[test]
fn first_event_reports_the_window() {
    let (b, _) = breaker_with(|c| c.failure_threshold(2).count_window(4));
    let mut rx = b.subscribe();
    succeed(&b);
    succeed(&b);
    fail(&b);
    fail(&b);
    let e = rx.try_recv().unwrap();
    assert_eq!(e.key, None);
    assert_eq!(e.failures, 2);
    assert!((e.failure_rate - 50.0).abs() < 1e-9);
}

#[test]
fn forced_open_stays_open_until_closed() {
    let (b, clock) = breaker_with(|c| c.timeout(secs(1)));
    b.force_open();
    clock.advance(secs(3600));
    let err = b.try_acquire().unwrap_err();
    assert_eq!(
        err.retry_after,
        secs(1),
        "the configured timeout, as a hint"
    );
    let snap = b.state();
    assert!(snap.forced);
    assert_eq!(snap.consecutive_opens, 0);
    b.force_close();
    assert!(b.try_acquire().is_ok());
}

/// A manual clock that counts how often it is read. A breaker reads the clock before it
/// takes its lock, so a rejection without a clock read is one that did not lock.
#[derive(Debug, Clone)]
struct CountingClock {
    inner: ManualClock,
    reads: Arc<AtomicUsize>,
}

impl CountingClock {
    fn new() -> Self {
        CountingClock {
            inner: ManualClock::new(),
            reads: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for CountingClock {
    fn now(&self) -> Nanos {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.now()
    }

    fn sleep_until(&self, deadline: Nanos) -> httpower_core::clock::Sleep {
        self.inner.sleep_until(deadline)
    }
}

#[test]
fn forced_open_rejects_without_the_clock_or_the_lock() {
    let config = BreakerConfig::builder().timeout(secs(7)).build().unwrap();
    let clock = CountingClock::new();
    let b = CircuitBreaker::with_clock(config, clock.clone());
    b.force_open();
    let before = clock.reads();
    for _ in 0..100 {
        assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(7));
    }
    assert_eq!(clock.reads(), before, "rejected on the atomic word alone");
    b.force_close();
    b.try_acquire().expect("closed again").success();
}

#[test]
fn full_half_open_rejects_without_the_clock_or_the_lock() {
    let config = BreakerConfig::builder()
        .failure_threshold(1)
        .timeout(secs(1))
        .half_open_requests(2)
        .build()
        .unwrap();
    let clock = CountingClock::new();
    let b = CircuitBreaker::with_clock(config, clock.clone());
    b.try_acquire().unwrap().failure();
    clock.inner.advance(secs(1));
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let before = clock.reads();
    for _ in 0..100 {
        assert_eq!(b.try_acquire().unwrap_err().retry_after, Duration::ZERO);
    }
    assert_eq!(clock.reads(), before, "rejected on the atomic word alone");
    // Giving a slot back clears the flag: the next caller gets it.
    drop(p1);
    let p3 = b.try_acquire().expect("slot given back");
    assert!(p3.is_probe());
    assert!(b.try_acquire().is_err(), "full again");
    p3.ignore();
    let p4 = b.try_acquire().expect("ignored probe gave its slot back");
    p2.success();
    p4.success();
    assert_eq!(b.state().state, BreakerState::Closed);
}

#[test]
fn stale_and_ignored_permits_skip_the_clock() {
    let config = BreakerConfig::builder()
        .failure_threshold(1)
        .time_window(secs(10), 10)
        .timeout(secs(1))
        .build()
        .unwrap();
    let clock = CountingClock::new();
    let b = CircuitBreaker::with_clock(config, clock.clone());
    let stale = b.try_acquire().unwrap();
    b.try_acquire().unwrap().failure();
    clock.inner.advance(secs(1));
    let probe = b.try_acquire().unwrap();
    let before = clock.reads();
    stale.failure(); // issued while closed: counts for nothing
    probe.ignore(); // gives its slot back without a clock read
    assert_eq!(clock.reads(), before);
    let probe = b.try_acquire().expect("ignored probe gave its slot back");
    b.force_open();
    let before = clock.reads();
    drop(probe); // stale probe: nothing to give back
    assert_eq!(clock.reads(), before);
    assert_eq!(b.state().state, BreakerState::Open);
}

#[test]
fn force_open_on_an_open_breaker_sends_no_event() {
    let (b, clock) = breaker_with(|c| c.failure_threshold(1).timeout(secs(5)));
    let mut rx = b.subscribe();
    fail(&b);
    b.force_open();
    let snap = b.state();
    assert_eq!((snap.state, snap.forced), (BreakerState::Open, true));
    clock.advance(secs(60));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        secs(5),
        "forced: the timeout no longer ends it"
    );
    b.force_close();
    let got: Vec<_> = drain(&mut rx)
        .into_iter()
        .map(|e| (e.from, e.to, e.reason))
        .collect();
    assert_eq!(
        got,
        [
            (
                BreakerState::Closed,
                BreakerState::Open,
                TransitionReason::FailureCount
            ),
            (
                BreakerState::Open,
                BreakerState::Closed,
                TransitionReason::ForcedClose
            ),
        ]
    );
}

#[test]
fn force_close_keeps_backoff_reset_forgets_it() {
    let (b, _) = breaker_with(|c| {
        c.failure_threshold(1)
            .timeout(secs(1))
            .timeout_multiplier(3.0)
    });
    fail(&b);
    b.force_close();
    fail(&b);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(3));
    b.reset();
    assert_eq!(b.state().consecutive_opens, 0);
    fail(&b);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(1));
}

#[test]
fn breaker_open_is_an_error() {
    let err = BreakerOpen {
        retry_after: secs(2),
    };
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(boxed.to_string().contains("2s"), "{boxed}");
}

#[test]
fn config_errors_name_the_field() {
    use BreakerConfig as C;
    let cases = [
        (
            C::builder().failure_threshold(0).build(),
            "failure_threshold",
            "0",
        ),
        (
            C::builder().failure_threshold_percentage(150.0).build(),
            "failure_threshold_percentage",
            "150.0",
        ),
        (
            C::builder().failure_threshold_percentage(0.0).build(),
            "failure_threshold_percentage",
            "0.0",
        ),
        (
            C::builder().failure_threshold_percentage(f64::NAN).build(),
            "failure_threshold_percentage",
            "NaN",
        ),
        (C::builder().minimum_calls(0).build(), "minimum_calls", "0"),
        (C::builder().count_window(0).build(), "window", "Count(0)"),
        (
            C::builder().count_window(1_000_000).build(),
            "window",
            "1000000",
        ),
        (
            C::builder().time_window(Duration::ZERO, 10).build(),
            "window",
            "Time",
        ),
        (
            C::builder().time_window(secs(10), 0).build(),
            "window",
            "buckets: 0",
        ),
        (
            C::builder().slow_calls(Duration::ZERO, 50.0).build(),
            "slow_call_duration",
            "0ns",
        ),
        (
            C::builder().slow_calls(secs(1), 101.0).build(),
            "slow_call_rate_threshold",
            "101.0",
        ),
        (
            C::builder().timeout(Duration::ZERO).build(),
            "timeout",
            "0ns",
        ),
        (
            C::builder().timeout_multiplier(0.5).build(),
            "timeout_multiplier",
            "0.5",
        ),
        (
            C::builder().timeout(secs(10)).max_timeout(secs(5)).build(),
            "max_timeout",
            "5s",
        ),
        (
            C::builder().timeout_jitter(1.0).build(),
            "timeout_jitter",
            "1.0",
        ),
        (
            C::builder().half_open_requests(0).build(),
            "half_open_requests",
            "0",
        ),
        (
            C::builder()
                .half_open_requests(2)
                .success_threshold(3)
                .build(),
            "success_threshold",
            "3",
        ),
        (
            C::builder().success_threshold(0).build(),
            "success_threshold",
            "0",
        ),
        (
            C::builder().count_window(3).build(),
            "failure_threshold",
            "5",
        ),
        (
            C::builder()
                .count_window(5)
                .failure_threshold(2)
                .failure_threshold_percentage(50.0)
                .build(),
            "minimum_calls",
            "10",
        ),
    ];
    for (result, field, value) in cases {
        let err = result.expect_err(field);
        assert_eq!(err.field(), field, "{err}");
        assert!(err.value().contains(value), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(field) && message.contains(value),
            "{message}"
        );
    }
}

#[test]
fn config_errors_state_the_limits() {
    let err = BreakerConfig::builder()
        .count_window(MAX_COUNT_WINDOW + 1)
        .build()
        .unwrap_err();
    assert!(
        err.problem().contains(&MAX_COUNT_WINDOW.to_string()),
        "{err}"
    );
    let err = BreakerConfig::builder()
        .time_window(secs(10), MAX_TIME_BUCKETS + 1)
        .build()
        .unwrap_err();
    assert!(
        err.problem().contains(&MAX_TIME_BUCKETS.to_string()),
        "{err}"
    );
    assert!(BreakerConfig::builder()
        .failure_threshold(1)
        .count_window(MAX_COUNT_WINDOW)
        .build()
        .is_ok());
}

#[test]
fn config_defaults() {
    let c = BreakerConfig::default();
    assert_eq!(c.failure_threshold(), 5);
    assert_eq!(c.minimum_calls(), 10);
    assert_eq!(c.window(), Window::Count(10));
    assert_eq!(c.timeout(), secs(60));
    assert_eq!((c.half_open_requests(), c.success_threshold()), (1, 1));
    let built = BreakerConfig::builder()
        .half_open_requests(4)
        .build()
        .unwrap();
    assert_eq!(
        built.success_threshold(),
        4,
        "defaults to half_open_requests"
    );
    assert_eq!(BreakerConfig::builder().build().unwrap(), c);
}

#[test]
fn registry_hands_out_one_breaker_per_key() {
    let config = BreakerConfig::builder()
        .failure_threshold(1)
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let registry: BreakerRegistry<String, _> = BreakerRegistry::with_clock(config, clock);
    let mut rx = registry.subscribe();
    registry.get("a:80").try_acquire().unwrap().failure();
    assert!(registry.get("a:80").try_acquire().is_err(), "same breaker");
    assert!(
        registry.get("b:80").try_acquire().is_ok(),
        "separate breaker"
    );
    assert_eq!(registry.state("a:80").unwrap().state, BreakerState::Open);
    assert!(registry.state("c:80").is_none());
    assert_eq!(registry.len(), 2);
    let mut snaps = registry.snapshots();
    snaps.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(snaps[0].0, "a:80");
    assert_eq!(snaps[1].1.state, BreakerState::Closed);
    let event = rx.try_recv().unwrap();
    assert_eq!(event.key.as_deref(), Some("a:80"));
    assert_eq!(event.to, BreakerState::Open);
}

#[test]
fn registry_eviction_bounds_memory() {
    // The open breaker's timeout outlasts the test, so it stays within it.
    let config = BreakerConfig::builder()
        .failure_threshold(1)
        .timeout(secs(3600))
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let registry: BreakerRegistry<u32, _> = BreakerRegistry::with_clock(config, clock.clone())
        .idle_timeout(secs(10))
        .soft_capacity(16);

    // Kept: one open breaker, one whose handle a caller holds.
    registry.get(&u32::MAX).try_acquire().unwrap().failure();
    let held = registry.get(&(u32::MAX - 1));

    let mut max_len = 0;
    for key in 0..10_000u32 {
        registry.get(&key).try_acquire().unwrap().success();
        clock.advance(ms(100));
        max_len = max_len.max(registry.len());
    }
    // 100 keys are used per idle period (10 s / 100 ms). A sweep runs at least once per
    // idle period and a key is evicted one to two periods after its last use, so the
    // map holds at most about three periods' worth of keys, however many keys pass.
    assert!(max_len <= 3 * 100 + 2 + 16, "map grew to {max_len}");
    assert!(max_len >= 100, "live keys are kept ({max_len})");
    // Two sweeps an idle period apart: the first notices recent use, the second evicts.
    registry.evict_idle();
    clock.advance(secs(10));
    registry.evict_idle();
    assert_eq!(
        registry.len(),
        2,
        "only the open and the held breaker remain"
    );
    assert_eq!(registry.state(&u32::MAX).unwrap().state, BreakerState::Open);
    drop(held);
    registry.evict_idle();
    assert_eq!(registry.len(), 1);
}

#[test]
fn registry_evicts_abandoned_open_breakers() {
    let config = BreakerConfig::builder()
        .failure_threshold(1)
        .timeout(secs(60))
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let registry: BreakerRegistry<&'static str, _> =
        BreakerRegistry::with_clock(config, clock.clone()).idle_timeout(secs(10));
    registry.get(&"down").try_acquire().unwrap().failure();
    registry.get(&"forced").force_open();
    assert_eq!(registry.evict_idle(), 0, "the first sweep notices the use");
    clock.advance(secs(69));
    assert_eq!(registry.evict_idle(), 0, "open timeout + idle not yet over");
    assert_eq!(registry.state(&"down").unwrap().state, BreakerState::Open);
    clock.advance(secs(1));
    assert_eq!(registry.evict_idle(), 1, "abandoned open breaker evicted");
    assert!(registry.state(&"down").is_none());
    clock.advance(secs(3600));
    assert_eq!(registry.evict_idle(), 0, "a forced-open breaker is kept");
    assert!(registry.state(&"forced").unwrap().forced);
    // A fresh breaker replaces the evicted one.
    assert!(registry.get(&"down").try_acquire().is_ok());
}

#[test]
fn registry_keeps_recently_used_breakers() {
    let clock = ManualClock::new();
    let registry: BreakerRegistry<&'static str, _> =
        BreakerRegistry::with_clock(BreakerConfig::default(), clock.clone()).idle_timeout(secs(10));
    for _ in 0..5 {
        registry.get(&"busy").try_acquire().unwrap().success();
        clock.advance(secs(4));
        assert_eq!(registry.evict_idle(), 0);
    }
    clock.advance(secs(10));
    assert_eq!(registry.evict_idle(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_admits_exactly_n() {
    const TASKS: usize = 1_000;
    const PROBES: u32 = 3;
    let config = BreakerConfig::builder()
        .failure_threshold(1)
        .timeout(secs(1))
        .half_open_requests(PROBES)
        .build()
        .unwrap();
    for round in 0..100 {
        let (b, clock) = breaker(config.clone());
        open_and_wait(&b, &clock);
        let admitted = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tried = Arc::new(tokio::sync::Barrier::new(TASKS));
        let mut tasks = Vec::with_capacity(TASKS);
        for _ in 0..TASKS {
            let (b, admitted, start, tried) = (
                b.clone(),
                Arc::clone(&admitted),
                Arc::clone(&start),
                Arc::clone(&tried),
            );
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let permit = b.try_acquire();
                if permit.is_ok() {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
                // Hold the permit until everyone has tried.
                tried.wait().await;
                drop(permit);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            admitted.load(Ordering::SeqCst),
            PROBES as usize,
            "round {round}"
        );
        assert_eq!(state(&b), BreakerState::HalfOpen);
        assert_eq!(
            b.state().probes_admitted,
            0,
            "dropped probes gave slots back"
        );
    }
}

#[test]
fn permit_records_acquisition_time_when_it_matters() {
    let (b, clock) = breaker(BreakerConfig::default());
    clock.advance(secs(7));
    let permit = b.try_acquire().unwrap();
    assert_eq!(
        permit.acquired_at(),
        None,
        "closed fast path skips the clock"
    );
    permit.success();

    let (b, clock) = breaker_with(|c| c.slow_calls(secs(1), 50.0));
    clock.advance(secs(7));
    let permit = b.try_acquire().unwrap();
    assert_eq!(permit.acquired_at(), Some(clock.now()));
    permit.success();

    let (b, clock) = breaker_with(|c| c.failure_threshold(1));
    open_and_wait(&b, &clock);
    let probe = b.try_acquire().unwrap();
    assert_eq!(probe.acquired_at(), Some(clock.now()), "probes are timed");
}

// ---------------------------------------------------------------------------------
// Model check: a deliberately plain reference state machine, driven by the same random
// operations as the real breaker.

mod model {
    use std::collections::VecDeque;
    use std::time::Duration;

    use httpower_core::breaker::TransitionReason;

    #[derive(Debug, Clone)]
    pub struct Params {
        pub window: usize,
        pub failure_threshold: u32,
        pub percentage: Option<f64>,
        pub minimum_calls: u32,
        pub slow: Option<(Duration, f64)>,
        pub timeout: Duration,
        pub multiplier: u32,
        pub max_timeout: Duration,
        pub half_open: u32,
        pub success_threshold: u32,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum St {
        Closed,
        Open,
        HalfOpen,
    }

    #[derive(Debug, Clone, Copy)]
    pub struct Ticket {
        pub epoch: u64,
        pub probe: bool,
        pub at: Duration,
    }

    #[derive(Debug)]
    pub struct Model {
        pub p: Params,
        pub now: Duration,
        pub state: St,
        pub forced: bool,
        pub epoch: u64,
        /// (failed, slow), oldest first.
        pub window: VecDeque<(bool, bool)>,
        pub opens: u32,
        pub open_until: Duration,
        pub admitted: u32,
        pub successes: u32,
        /// (from, to, reason) of each transition not yet taken by the check.
        pub events: Vec<(St, St, TransitionReason)>,
    }

    impl Model {
        pub fn new(p: Params) -> Self {
            Model {
                p,
                now: Duration::ZERO,
                state: St::Closed,
                forced: false,
                epoch: 0,
                window: VecDeque::new(),
                opens: 0,
                open_until: Duration::ZERO,
                admitted: 0,
                successes: 0,
                events: Vec::new(),
            }
        }

        fn go(&mut self, to: St, reason: TransitionReason) {
            self.events.push((self.state, to, reason));
            self.state = to;
            self.epoch += 1;
            self.admitted = 0;
            self.successes = 0;
            self.forced = false;
        }

        fn open(&mut self, reason: TransitionReason) {
            self.opens += 1;
            let mut t = self.p.timeout;
            for _ in 1..self.opens {
                t = (t * self.p.multiplier).min(self.p.max_timeout);
            }
            self.open_until = self.now + t.min(self.p.max_timeout);
            self.go(St::Open, reason);
        }

        pub fn acquire(&mut self) -> Result<Ticket, Duration> {
            let now = self.now;
            let ticket = |epoch, probe| Ticket {
                epoch,
                probe,
                at: now,
            };
            match self.state {
                St::Closed => Ok(ticket(self.epoch, false)),
                St::Open if self.forced => Err(self.p.timeout),
                St::Open if self.now < self.open_until => Err(self.open_until - self.now),
                St::Open => {
                    self.go(St::HalfOpen, TransitionReason::TimeoutElapsed);
                    self.admitted = 1;
                    Ok(ticket(self.epoch, true))
                }
                St::HalfOpen if self.admitted < self.p.half_open => {
                    self.admitted += 1;
                    Ok(ticket(self.epoch, true))
                }
                St::HalfOpen => Err(Duration::ZERO),
            }
        }

        pub fn count(&self, pick: impl Fn(&(bool, bool)) -> bool) -> u32 {
            self.window.iter().filter(|e| pick(e)).count() as u32
        }

        /// `outcome`: Some(failed) or None for ignored.
        pub fn record(&mut self, t: Ticket, outcome: Option<bool>) {
            if t.epoch != self.epoch {
                return;
            }
            let slow = self.p.slow.is_some_and(|(d, _)| self.now - t.at > d);
            match (self.state, outcome) {
                (St::Open, _) | (St::Closed, None) => {}
                (St::Closed, Some(failed)) => {
                    self.window.push_back((failed, slow));
                    if self.window.len() > self.p.window {
                        self.window.pop_front();
                    }
                    let calls = self.window.len() as u32;
                    let failures = self.count(|e| e.0);
                    let slows = self.count(|e| e.1);
                    let pct = |n: u32| f64::from(n) * 100.0 / f64::from(calls);
                    let enough = calls >= self.p.minimum_calls;
                    if failures >= self.p.failure_threshold {
                        self.open(TransitionReason::FailureCount);
                    } else if enough && self.p.percentage.is_some_and(|p| pct(failures) >= p) {
                        self.open(TransitionReason::FailureRate);
                    } else if enough && self.p.slow.is_some_and(|(_, p)| pct(slows) >= p) {
                        self.open(TransitionReason::SlowCallRate);
                    }
                }
                (St::HalfOpen, None) => self.admitted -= 1,
                (St::HalfOpen, Some(failed)) => {
                    if failed || slow {
                        self.open(TransitionReason::ProbeFailed);
                    } else {
                        self.successes += 1;
                        if self.successes >= self.p.success_threshold {
                            self.window.clear();
                            self.opens = 0;
                            self.go(St::Closed, TransitionReason::ProbesSucceeded);
                        }
                    }
                }
            }
        }

        pub fn drop_ticket(&mut self, t: Ticket) {
            if t.probe && t.epoch == self.epoch && self.state == St::HalfOpen {
                self.admitted -= 1;
            }
        }

        pub fn force_open(&mut self) {
            // Already open: only pinned open, no state change.
            if self.state != St::Open {
                self.go(St::Open, TransitionReason::ForcedOpen);
            }
            self.forced = true;
        }

        pub fn force_close(&mut self) {
            self.close_manually(TransitionReason::ForcedClose);
        }

        pub fn reset(&mut self) {
            self.opens = 0;
            self.close_manually(TransitionReason::Reset);
        }

        fn close_manually(&mut self, reason: TransitionReason) {
            self.window.clear();
            if self.state == St::Closed {
                self.epoch += 1;
            } else {
                self.go(St::Closed, reason);
            }
        }
    }
}

mod model_check {
    use super::model::{Model, Params, St, Ticket};
    use super::*;
    use httpower_core::breaker::BreakerPermit;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Success(usize),
        Failure(usize),
        Ignore(usize),
        Slow(usize),
        Drop(usize),
        Advance(u64),
        ForceOpen,
        ForceClose,
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => Just(Op::Acquire),
            6 => any::<usize>().prop_map(Op::Success),
            6 => any::<usize>().prop_map(Op::Failure),
            1 => any::<usize>().prop_map(Op::Ignore),
            2 => any::<usize>().prop_map(Op::Slow),
            2 => any::<usize>().prop_map(Op::Drop),
            4 => (0u64..3_000).prop_map(Op::Advance),
            1 => Just(Op::ForceOpen),
            1 => Just(Op::ForceClose),
            1 => Just(Op::Reset),
        ]
    }

    fn params() -> impl Strategy<Value = Params> {
        (1usize..=6, 1u32..=3, any::<bool>(), any::<bool>(), 1u32..=3)
            .prop_flat_map(|(window, half_open, pct, slow, multiplier)| {
                (
                    1..=window as u32,
                    1..=window as u32,
                    1..=half_open,
                    Just((window, half_open, pct, slow, multiplier)),
                )
            })
            .prop_map(
                |(
                    failure_threshold,
                    minimum_calls,
                    success_threshold,
                    (window, half_open, pct, slow, multiplier),
                )| Params {
                    window,
                    failure_threshold,
                    percentage: pct.then_some(50.0),
                    minimum_calls,
                    slow: slow.then_some((ms(200), 50.0)),
                    timeout: secs(1),
                    multiplier,
                    max_timeout: secs(5),
                    half_open,
                    success_threshold,
                },
            )
    }

    fn config(p: &Params) -> BreakerConfig {
        let mut b = BreakerConfig::builder()
            .count_window(p.window as u32)
            .failure_threshold(p.failure_threshold)
            .minimum_calls(p.minimum_calls)
            .timeout(p.timeout)
            .timeout_multiplier(f64::from(p.multiplier))
            .max_timeout(p.max_timeout)
            .half_open_requests(p.half_open)
            .success_threshold(p.success_threshold);
        if let Some(pct) = p.percentage {
            b = b.failure_threshold_percentage(pct);
        }
        if let Some((d, pct)) = p.slow {
            b = b.slow_calls(d, pct);
        }
        b.build().unwrap()
    }

    fn to_state(s: St) -> BreakerState {
        match s {
            St::Closed => BreakerState::Closed,
            St::Open => BreakerState::Open,
            St::HalfOpen => BreakerState::HalfOpen,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn breaker_matches_model(p in params(), ops in proptest::collection::vec(op(), 1..200)) {
            let clock = ManualClock::new();
            let real = CircuitBreaker::with_clock(config(&p), clock.clone());
            let mut events = real.subscribe();
            let mut model = Model::new(p);
            let mut held: Vec<(BreakerPermit<ManualClock>, Ticket)> = Vec::new();
            let advance = |model: &mut Model, d: Duration| {
                clock.advance(d);
                model.now += d;
            };

            for (step, op) in ops.into_iter().enumerate() {
                let take = |held: &mut Vec<_>, i: usize| {
                    (!held.is_empty()).then(|| held.swap_remove(i % held.len()))
                };
                match op {
                    Op::Acquire => {
                        let got = real.try_acquire();
                        let want = model.acquire();
                        match (got, want) {
                            (Ok(permit), Ok(ticket)) => {
                                prop_assert_eq!(permit.is_probe(), ticket.probe, "step {}", step);
                                held.push((permit, ticket));
                            }
                            (Err(e), Err(wait)) => prop_assert_eq!(e.retry_after, wait, "step {}", step),
                            (got, want) => prop_assert!(false, "step {}: real {:?}, model {:?}", step, got, want),
                        }
                    }
                    Op::Success(i) | Op::Failure(i) | Op::Ignore(i) | Op::Slow(i) => {
                        if let Some((permit, ticket)) = take(&mut held, i) {
                            let outcome = match op {
                                Op::Failure(_) => CallOutcome::Failure,
                                Op::Ignore(_) => CallOutcome::Ignored,
                                _ => CallOutcome::Success,
                            };
                            if matches!(op, Op::Slow(_)) {
                                advance(&mut model, ms(201));
                            }
                            permit.record(outcome);
                            let m = match outcome {
                                CallOutcome::Failure => Some(true),
                                CallOutcome::Success => Some(false),
                                CallOutcome::Ignored => None,
                            };
                            model.record(ticket, m);
                        }
                    }
                    Op::Drop(i) => {
                        if let Some((permit, ticket)) = take(&mut held, i) {
                            drop(permit);
                            model.drop_ticket(ticket);
                        }
                    }
                    Op::Advance(m) => advance(&mut model, ms(m)),
                    Op::ForceOpen => { real.force_open(); model.force_open(); }
                    Op::ForceClose => { real.force_close(); model.force_close(); }
                    Op::Reset => { real.reset(); model.reset(); }
                }

                // Drained after every step, so the channel never lags.
                let got: Vec<_> = drain(&mut events)
                    .into_iter()
                    .map(|e| (e.from, e.to, e.reason))
                    .collect();
                let want: Vec<_> = model
                    .events
                    .drain(..)
                    .map(|(from, to, reason)| (to_state(from), to_state(to), reason))
                    .collect();
                prop_assert_eq!(got, want, "step {}", step);

                let snap = real.state();
                prop_assert_eq!(snap.state, to_state(model.state), "step {}", step);
                prop_assert_eq!(snap.forced, model.forced, "step {}", step);
                prop_assert_eq!(snap.consecutive_opens, model.opens, "step {}", step);
                prop_assert_eq!(snap.calls, model.window.len() as u32, "step {}", step);
                prop_assert_eq!(snap.failures, model.count(|e| e.0), "step {}", step);
                prop_assert_eq!(snap.slow_calls, model.count(|e| e.1), "step {}", step);
                if model.state == St::HalfOpen {
                    prop_assert_eq!(snap.probes_admitted, model.admitted, "step {}", step);
                    prop_assert_eq!(snap.probe_successes, model.successes, "step {}", step);
                }
                if model.state == St::Open && !model.forced {
                    let left = model.open_until.saturating_sub(model.now);
                    prop_assert_eq!(snap.retry_after, Some(left), "step {}", step);
                }
            }
        }
    }
}

#[test]
fn ignored_outcome_counts_neither_way() {
    let (b, _) = breaker(BreakerConfig::default());
    b.try_acquire().unwrap().record(CallOutcome::Ignored);
    b.try_acquire().unwrap().ignore();
    let snap = b.state();
    assert_eq!((snap.calls, snap.failures, snap.successes), (0, 0, 0));
}

#[test]
fn concurrent_mixed_load_keeps_invariants() {
    const PROBES: u32 = 2;
    let (b, clock) = breaker_with(|c| {
        c.failure_threshold(3)
            .count_window(8)
            .failure_threshold_percentage(40.0)
            .minimum_calls(4)
            .timeout(ms(50))
            .half_open_requests(PROBES)
    });
    let mut rx = b.subscribe();
    std::thread::scope(|scope| {
        for t in 0..6u64 {
            let (b, clock) = (b.clone(), clock.clone());
            scope.spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match b.try_acquire() {
                        Ok(permit) => match x % 5 {
                            0 => permit.failure(),
                            1 => drop(permit),
                            _ => permit.success(),
                        },
                        Err(_) if t == 0 => clock.advance(ms(10)),
                        Err(_) => {}
                    }
                    let snap = b.state();
                    assert!(snap.probes_admitted <= PROBES, "{snap:?}");
                    assert!(snap.calls <= 8 && snap.failures <= snap.calls, "{snap:?}");
                }
            });
        }
    });
    // Events, in order, form a valid path through the state machine. A slow receiver
    // loses the oldest events; check each unbroken run separately.
    let mut runs = vec![Vec::new()];
    loop {
        match rx.try_recv() {
            Ok(e) => runs.last_mut().unwrap().push(e),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => runs.push(Vec::new()),
            Err(_) => break,
        }
    }
    assert!(runs.iter().map(Vec::len).sum::<usize>() > 0);
    for pair in runs.iter().flat_map(|run| run.windows(2)) {
        assert_eq!(pair[0].to, pair[1].from, "{pair:?}");
    }
    for e in runs.iter().flatten() {
        let allowed = matches!(
            (e.from, e.to),
            (BreakerState::Closed, BreakerState::Open)
                | (BreakerState::Open, BreakerState::HalfOpen)
                | (BreakerState::HalfOpen, BreakerState::Open)
                | (BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert!(allowed, "{e:?}");
    }
}
