//! Rate limiters: bounds under random arrivals, memory bounds, strategies, permits,
//! composite checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use httpower_core::clock::{Clock, ManualClock, Nanos, TokioClock};
use httpower_core::rate::{
    AcquireError, AnyAlgorithm, ConcurrencyLimiter, FixedWindow, Gcra, KeyedConfig, Quota,
    RateLimiter, SlidingWindow, Strategy, WindowQuota,
};
use httpower_core::store::{
    Check, CompositeMode, DecisionSource, FailMode, Limiter, MemoryStore, Store,
};
use proptest::prelude::*;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Replays arrivals `(gap, cost)` on one key; returns the admitted `(time_ns, cost)`.
fn replay<A: httpower_core::rate::Algorithm>(
    algorithm: A,
    arrivals: &[(u64, u32)],
) -> Vec<(u64, u32)> {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(algorithm, clock.clone());
    let mut admitted = Vec::new();
    for &(gap_us, cost) in arrivals {
        clock.advance(Duration::from_micros(gap_us));
        if let Ok(d) = limiter.check_n(&0u8, cost) {
            if d.allowed {
                admitted.push((clock.now().as_u64(), cost));
            }
        }
    }
    admitted
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gcra_never_exceeds_bound(
        rate in 1u32..50,
        period_ms in 1u64..5_000,
        burst in 1u32..20,
        arrivals in prop::collection::vec((0u64..200_000, 1u32..5), 1..300),
    ) {
        let quota = Quota::new(rate, Duration::from_millis(period_ms), burst).unwrap();
        let t = quota.emission_interval().as_nanos() as u64;
        let admitted = replay(Gcra::new(quota), &arrivals);
        // Any closed interval [t_i, t_j] admits at most burst + (t_j − t_i) / T cells.
        for i in 0..admitted.len() {
            let mut total = 0u64;
            for j in i..admitted.len() {
                total += u64::from(admitted[j].1);
                let span = admitted[j].0 - admitted[i].0;
                let bound = u64::from(burst) + span / t;
                prop_assert!(
                    total <= bound,
                    "{total} cells admitted in {span} ns, bound {bound} (T = {t} ns)"
                );
            }
        }
    }

    #[test]
    fn sliding_window_never_exceeds_bound(
        limit in 1u32..20,
        window_ms in 1u64..2_000,
        arrivals in prop::collection::vec((0u64..100_000, 1u32..4), 1..300),
    ) {
        let quota = WindowQuota::new(limit, Duration::from_millis(window_ms)).unwrap();
        let w = window_ms * 1_000_000;
        let admitted = replay(SlidingWindow::new(quota), &arrivals);
        let in_window = |k: u64| -> u64 {
            admitted.iter().filter(|(t, _)| t / w == k).map(|(_, c)| u64::from(*c)).sum()
        };
        for &(t, _) in &admitted {
            let k = t / w;
            // 1. Every aligned window admits at most `limit`.
            prop_assert!(in_window(k) <= u64::from(limit));
            // 2. The weighted estimate, recomputed from the log, never passes the limit:
            //    prev × (W − e) + curr × W ≤ limit × W, counting up to this admission.
            let e = u128::from(t - k * w);
            let prev = u128::from(if k == 0 { 0 } else { in_window(k - 1) });
            let curr: u128 = admitted
                .iter()
                .filter(|(u, _)| u / w == k && *u <= t)
                .map(|(_, c)| u128::from(*c))
                .sum();
            let w128 = u128::from(w);
            prop_assert!(prev * (w128 - e) + curr * w128 <= u128::from(limit) * w128);
            // 3. Any interval of one window length admits at most 2 × limit.
            let sliding: u64 = admitted
                .iter()
                .filter(|(u, _)| *u >= t && *u < t + w)
                .map(|(_, c)| u64::from(*c))
                .sum();
            prop_assert!(sliding <= 2 * u64::from(limit));
        }
    }

    #[test]
    fn fixed_window_never_exceeds_limit_per_window(
        limit in 1u32..20,
        window_ms in 1u64..2_000,
        arrivals in prop::collection::vec((0u64..100_000, 1u32..4), 1..300),
    ) {
        let quota = WindowQuota::new(limit, Duration::from_millis(window_ms)).unwrap();
        let w = window_ms * 1_000_000;
        let admitted = replay(FixedWindow::new(quota), &arrivals);
        for &(t, _) in &admitted {
            let total: u64 = admitted.iter().filter(|(u, _)| u / w == t / w).map(|(_, c)| u64::from(*c)).sum();
            prop_assert!(total <= u64::from(limit));
        }
    }
}

#[test]
fn gcra_admits_full_rate_at_high_rates() {
    // 10,000 per second must really admit 10,000 per second (no spacing margin that
    // silently throttles fast limits), and not one more.
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(Gcra::new(Quota::per_second(nz(10_000))), clock.clone());
    let mut admitted = 0;
    for _ in 0..100_000 {
        clock.advance(Duration::from_micros(10)); // offered: 100,000 per second
        if limiter.check(&()).allowed {
            admitted += 1;
        }
    }
    // One simulated second: the initial burst of 10,000 plus 10,000 replenished.
    assert!((19_999..=20_000).contains(&admitted), "admitted {admitted}");
}

#[test]
fn cost_above_the_burst_is_an_error_not_a_denial() {
    let limiter = RateLimiter::new(Gcra::new(Quota::per_second(nz(5))));
    let err = limiter.check_n(&1u64, 6).unwrap_err();
    assert_eq!((err.cost, err.limit), (6, 5));
    assert!(limiter.check_n(&1u64, 5).unwrap().allowed);
}

#[test]
fn memory_store_stays_bounded() {
    let clock = ManualClock::new();
    let config = KeyedConfig::with_max_keys(100_000);
    let store = MemoryStore::with_config(config, clock.clone());
    let algorithm: AnyAlgorithm = Gcra::new(Quota::per_minute(nz(10))).into();
    let mut high_water = 0;
    let mut key = String::new();
    for n in 0..1_000_000u32 {
        if n % 1_000 == 0 {
            clock.advance(Duration::from_millis(1));
        }
        key.clear();
        key.push_str("client-");
        key.push_str(&n.to_string());
        let decision = store.check_now("api", &algorithm, &key, 1).unwrap();
        assert!(decision.allowed, "a new key starts with a full quota");
        high_water = high_water.max(store.len());
        assert!(
            store.len() <= 100_000,
            "{} keys after {n} inserts",
            store.len()
        );
    }
    assert!(store.capacity() <= 100_000);
    assert!(
        high_water > 90_000,
        "the bound is used, not undershot: {high_water}"
    );
}

#[test]
fn keyed_limiter_stays_bounded_and_reports_memory() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_config(
        Gcra::new(Quota::per_second(nz(100))),
        clock,
        KeyedConfig::with_max_keys(10_000),
    );
    for key in 0..200_000u64 {
        limiter.check(&key);
        assert!(limiter.len() <= 10_000);
    }
    let per_key = limiter.memory_usage() / limiter.len();
    assert!(per_key <= 64, "{per_key} bytes per u64 key");
}

#[test]
fn idle_and_expired_keys_are_dropped() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(Gcra::new(Quota::per_second(nz(10))), clock.clone());
    for key in 0..1_000u64 {
        limiter.check(&key);
    }
    assert_eq!(limiter.len(), 1_000);
    // A tenth of a second later each bucket is full again: dropping the state is lossless.
    clock.advance(Duration::from_millis(100));
    assert_eq!(limiter.sweep(), 1_000);
    assert!(limiter.is_empty());
}

#[test]
fn reset_forgets_a_key() {
    let limiter = RateLimiter::new(Gcra::new(Quota::per_hour(nz(1))));
    assert!(limiter.check(&"k").allowed);
    assert!(!limiter.check(&"k").allowed);
    assert!(limiter.reset(&"k"));
    assert!(limiter.check(&"k").allowed);
}

#[tokio::test(start_paused = true)]
async fn wait_strategy_sleeps_until_admitted() {
    let clock = TokioClock::new();
    let limiter = RateLimiter::with_clock(Gcra::new(Quota::per_second(nz(2))), clock);
    let wait = Strategy::Wait {
        max_wait: Duration::from_secs(1),
    };
    limiter.acquire(&1, 2, wait).await.unwrap();
    let start = tokio::time::Instant::now();
    let decision = limiter.acquire(&1, 1, wait).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn wait_strategy_fails_at_once_when_the_wait_is_too_long() {
    let clock = TokioClock::new();
    let limiter = RateLimiter::with_clock(Gcra::new(Quota::per_minute(nz(1))), clock);
    limiter.acquire(&1, 1, Strategy::Error).await.unwrap();
    let start = tokio::time::Instant::now();
    let err = limiter
        .acquire(
            &1,
            1,
            Strategy::Wait {
                max_wait: Duration::from_secs(5),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no sleeping in vain");
    match err {
        AcquireError::WaitTimeout {
            waited,
            retry_after,
        } => {
            assert_eq!(waited, Duration::ZERO);
            assert_eq!(retry_after, Duration::from_secs(60));
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = limiter.acquire(&1, 1, Strategy::Error).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
}

#[tokio::test(start_paused = true)]
async fn concurrency_permits_release_on_drop() {
    let limiter: ConcurrencyLimiter<&str, TokioClock> =
        ConcurrencyLimiter::with_config(nz(2), TokioClock::new(), KeyedConfig::default());
    let a = limiter.try_acquire(&"k").unwrap();
    let b = limiter.try_acquire(&"k").unwrap();
    assert_eq!(b.decision().remaining, 0);
    assert!(limiter.try_acquire(&"k").is_err());
    assert!(
        limiter.try_acquire(&"other").is_ok(),
        "keys are independent"
    );
    drop(a);
    let c = limiter.try_acquire(&"k").unwrap();
    assert_eq!(limiter.in_flight(&"k"), 2);
    drop((b, c));
    assert_eq!(limiter.in_flight(&"k"), 0);
    assert!(limiter.is_empty(), "no memory kept for idle keys");
}

#[tokio::test(start_paused = true)]
async fn concurrency_waiter_gets_the_released_slot() {
    let limiter: ConcurrencyLimiter<u8, TokioClock> =
        ConcurrencyLimiter::with_config(nz(1), TokioClock::new(), KeyedConfig::default());
    let held = limiter.try_acquire(&0).unwrap();
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            limiter
                .acquire(&0, Duration::from_secs(10))
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    drop(held);
    waiter.await.unwrap().unwrap();
    // With nothing released, the wait ends at max_wait.
    let _held = limiter.try_acquire(&0).unwrap();
    let err = limiter
        .acquire(&0, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, AcquireError::WaitTimeout { .. }), "{err:?}");
}

fn window(limit: u32, secs: u64) -> AnyAlgorithm {
    SlidingWindow::new(WindowQuota::new(limit, Duration::from_secs(secs)).unwrap()).into()
}

#[tokio::test]
async fn composite_denial_consumes_nothing() {
    let store = MemoryStore::with_clock(ManualClock::new());
    let by_ip = window(10, 300);
    let by_user = window(2, 900);
    let checks = [
        Check {
            limiter: "login_ip",
            algorithm: &by_ip,
            key: "198.51.100.1",
            cost: 1,
        },
        Check {
            limiter: "login_user",
            algorithm: &by_user,
            key: "alice",
            cost: 1,
        },
    ];
    for _ in 0..2 {
        let d = store
            .check_composite(&checks, CompositeMode::AllMustPass)
            .await
            .unwrap();
        assert!(d.allowed);
    }
    for _ in 0..5 {
        let d = store
            .check_composite(&checks, CompositeMode::AllMustPass)
            .await
            .unwrap();
        assert!(!d.allowed);
        assert_eq!(d.deciding, 1, "the credential limiter denied");
    }
    let ip = store
        .inspect("login_ip", &by_ip, "198.51.100.1")
        .await
        .unwrap();
    assert_eq!(
        ip.remaining, 8,
        "denied attempts did not consume the IP quota"
    );
}

#[tokio::test]
async fn composite_any_charges_only_the_first_admitting() {
    let store = MemoryStore::with_clock(ManualClock::new());
    let small = window(1, 60);
    let large = window(5, 60);
    let checks = [
        Check {
            limiter: "small",
            algorithm: &small,
            key: "k",
            cost: 1,
        },
        Check {
            limiter: "large",
            algorithm: &large,
            key: "k",
            cost: 1,
        },
    ];
    let first = store
        .check_composite(&checks, CompositeMode::AnyMustPass)
        .await
        .unwrap();
    assert!(first.allowed);
    assert_eq!(first.deciding, 0);
    assert_eq!(
        store.inspect("large", &large, "k").await.unwrap().remaining,
        5
    );
    let second = store
        .check_composite(&checks, CompositeMode::AnyMustPass)
        .await
        .unwrap();
    assert!(second.allowed);
    assert_eq!(second.deciding, 1);
    assert_eq!(
        store.inspect("large", &large, "k").await.unwrap().remaining,
        4
    );
}

/// A store that never answers, to exercise the limiter's timeout and fail modes.
#[derive(Debug)]
struct Unreachable;

impl Store for Unreachable {
    fn name(&self) -> &str {
        "unreachable"
    }
    fn check<'a>(
        &'a self,
        _: &'a str,
        _: &'a AnyAlgorithm,
        _: &'a str,
        _: u32,
    ) -> httpower_core::store::StoreFuture<'a, httpower_core::rate::Decision> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
    fn check_composite<'a>(
        &'a self,
        _: &'a [Check<'a>],
        _: CompositeMode,
    ) -> httpower_core::store::StoreFuture<'a, httpower_core::store::CompositeDecision> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
    fn inspect<'a>(
        &'a self,
        _: &'a str,
        _: &'a AnyAlgorithm,
        _: &'a str,
    ) -> httpower_core::store::StoreFuture<'a, httpower_core::rate::Decision> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
    fn acquire_slot<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
        _: Duration,
    ) -> httpower_core::store::StoreFuture<'a, httpower_core::store::SlotGrant> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
    fn release_slot<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: httpower_core::store::LeaseId,
    ) -> httpower_core::store::StoreFuture<'a, ()> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
    fn reset<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a str>,
    ) -> httpower_core::store::StoreFuture<'a, u64> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
    fn health(&self) -> httpower_core::store::StoreFuture<'_, httpower_core::store::StoreHealth> {
        httpower_core::store::StoreFuture::pending(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn limiter_fail_modes_are_honoured_within_the_timeout() {
    let store: Arc<dyn Store> = Arc::new(Unreachable);
    for (mode, admitted) in [(FailMode::Open, true), (FailMode::Closed, false)] {
        let limiter = Limiter::builder("api", window(10, 60))
            .timeout(Duration::from_millis(100))
            .fail_mode(mode)
            .clock(TokioClock::new())
            .build(Arc::clone(&store));
        let start = tokio::time::Instant::now();
        let verdict = limiter.key("k").check().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(verdict.decision.allowed, admitted, "{mode:?}");
        match (mode, &verdict.source) {
            (FailMode::Open, DecisionSource::FailOpen(_))
            | (FailMode::Closed, DecisionSource::FailClosed(_)) => {}
            other => panic!("unexpected source {other:?}"),
        }
    }
}

#[tokio::test]
async fn limiter_per_identifier_from_one_definition() {
    let clock = ManualClock::starting_at(Nanos::new(1));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
    let limiter = Limiter::builder("login_ip", window(2, 60)).build(store);
    for ip in ["192.0.2.1", "192.0.2.2"] {
        assert!(limiter.key(ip).check().await.unwrap().decision.allowed);
        assert!(limiter.key(ip).check().await.unwrap().decision.allowed);
        assert!(!limiter.key(ip).check().await.unwrap().decision.allowed);
    }
    assert_eq!(
        limiter.key("192.0.2.1").inspect().await.unwrap().remaining,
        0
    );
    assert_eq!(limiter.key("192.0.2.1").reset().await.unwrap(), 1);
    assert_eq!(
        limiter.key("192.0.2.1").inspect().await.unwrap().remaining,
        2
    );
    let err = limiter.key("192.0.2.3").check_n(3).await.unwrap_err();
    assert_eq!(err.limit, 2);
}
