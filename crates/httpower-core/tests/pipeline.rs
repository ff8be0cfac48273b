//! The composed pipeline: order of policies, one breaker outcome per logical call,
//! deadlines, hints. Paused tokio time throughout.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::clone_on_copy,
    missing_docs
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use httpower_core::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use httpower_core::clock::TokioClock;
use httpower_core::pipeline::{LastOutcome, Pipeline, PipelineError};
use httpower_core::rate::{FixedWindow, WindowQuota};
use httpower_core::retry::{Classification, Jitter, RetryPolicy, StopReason};
use httpower_core::store::{Limiter, MemoryStore};
use httpower_core::timeout::TimeoutPhase;
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
enum Failure {
    Transient,
    Permanent,
    Throttled(Duration),
}

fn classify(outcome: &Result<u32, Failure>) -> Classification {
    match outcome {
        Ok(_) => Classification::Success,
        Err(Failure::Transient) => Classification::retry("transient"),
        Err(Failure::Throttled(after)) => Classification::retry_after("throttled", Some(*after)),
        Err(Failure::Permanent) => Classification::Fail,
    }
}

fn retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .base_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap()
}

fn breaker(clock: &TokioClock, threshold: u32) -> CircuitBreaker<TokioClock> {
    let config = BreakerConfig::builder()
        .failure_threshold(threshold)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    CircuitBreaker::with_clock(config, clock.clone())
}

#[tokio::test(start_paused = true)]
async fn retries_with_backoff_then_succeeds() {
    let pipeline = Pipeline::builder_with_clock(TokioClock::new())
        .retry(retry(3))
        .build();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let value = pipeline
        .call(classify, |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 3 {
                    Err(Failure::Transient)
                } else {
                    Ok(attempt)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100 + 200),
        "base × 2^(n−1)"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let pipeline = Pipeline::builder_with_clock(TokioClock::new())
        .retry(retry(3))
        .build();
    let calls = AtomicU32::new(0);
    let err = pipeline
        .call(classify, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, _>(Failure::Permanent) }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Inner(Failure::Permanent)),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_report_attempts_and_last_error() {
    let pipeline = Pipeline::builder_with_clock(TokioClock::new())
        .retry(retry(2))
        .build();
    let err = pipeline
        .call(classify, |_| async { Err::<u32, _>(Failure::Transient) })
        .await
        .unwrap_err();
    match err {
        PipelineError::RetriesExhausted {
            attempts,
            stop,
            last,
            ..
        } => {
            assert_eq!(attempts, 3);
            assert_eq!(stop, StopReason::MaxRetries { attempts: 3 });
            assert!(matches!(last, LastOutcome::Error(Failure::Transient)));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_records_one_outcome_per_logical_call_and_fails_fast() {
    let clock = TokioClock::new();
    let pipeline = Pipeline::builder_with_clock(clock.clone())
        .retry(retry(2))
        .circuit_breaker(breaker(&clock, 2))
        .build();
    let calls = Arc::new(AtomicU32::new(0));
    let failing = |calls: Arc<AtomicU32>| {
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, _>(Failure::Transient) }
        }
    };
    // First logical call: 3 attempts, one failure recorded; the breaker stays closed.
    pipeline
        .call(classify, failing(Arc::clone(&calls)))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Second logical call: the second failure opens it.
    pipeline
        .call(classify, failing(Arc::clone(&calls)))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    // Third: fails fast without touching the operation.
    let err = pipeline
        .call(classify, failing(Arc::clone(&calls)))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    match err {
        PipelineError::CircuitOpen { retry_after } => {
            assert_eq!(retry_after, Duration::from_secs(30));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err_reason(&pipeline).await, "circuit_open");
}

async fn err_reason(pipeline: &Pipeline<TokioClock>) -> &'static str {
    pipeline
        .call(classify, |_| async { Ok(1) })
        .await
        .map_or_else(|e| e.reason(), |_| "ok")
}

#[tokio::test(start_paused = true)]
async fn rate_limit_rejections_never_trip_the_breaker() {
    let clock = TokioClock::new();
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    let quota = WindowQuota::new(1, Duration::from_secs(60)).unwrap();
    let limiter = Limiter::builder("db", FixedWindow::new(quota))
        .clock(clock.clone())
        .build(store);
    let breaker = breaker(&clock, 1);
    let pipeline = Pipeline::builder_with_clock(clock.clone())
        .rate_limit(limiter)
        .circuit_breaker(breaker.clone())
        .build();
    pipeline.call(classify, |_| async { Ok(1) }).await.unwrap();
    for _ in 0..10 {
        let err = pipeline
            .call(classify, |_| async { Ok(1) })
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "rate_limited");
        assert!(err.retry_after().unwrap() > Duration::ZERO);
    }
    assert_eq!(breaker.state().state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_retried_and_total_timeout_bounds_all() {
    let clock = TokioClock::new();
    let pipeline = Pipeline::builder_with_clock(clock)
        .retry(retry(10))
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_millis(2_200))
        .build();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let err = pipeline
        .call(classify, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<u32, Failure>(0)
            }
        })
        .await
        .unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_millis(2_500),
        "{:?}",
        start.elapsed()
    );
    // Attempt 1 times out at 1 s, waits 100 ms, attempt 2 times out at 2.1 s; a third
    // attempt would only get 0.2 s after a 200 ms wait — the deadline stops it.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    match err {
        PipelineError::RetriesExhausted {
            last: LastOutcome::Timeout(elapsed),
            stop,
            ..
        } => {
            assert_eq!(elapsed.phase, TimeoutPhase::Attempt);
            assert!(
                matches!(stop, StopReason::DeadlineWouldPass { .. }),
                "{stop:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn server_hint_overrides_backoff_and_long_hints_surface() {
    let pipeline = Pipeline::builder_with_clock(TokioClock::new())
        .retry(retry(3))
        .build();
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let value = pipeline
        .call(classify, |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 1 {
                    Err(Failure::Throttled(Duration::from_secs(7)))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 2);
    assert_eq!(start.elapsed(), Duration::from_secs(7));

    // A hint beyond max_retry_after (60 s) is not slept on: it comes back to the caller.
    let start = Instant::now();
    let err = pipeline
        .call(classify, |_| async {
            Err::<u32, _>(Failure::Throttled(Duration::from_secs(3600)))
        })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(err.attempts(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn total_timeout_speaks_when_it_ends_the_attempt_first() {
    let pipeline = Pipeline::builder_with_clock(TokioClock::new())
        .retry(retry(3))
        .attempt_timeout(Duration::from_secs(5))
        .total_timeout(Duration::from_secs(2))
        .build();
    let start = Instant::now();
    let err = pipeline
        .call(classify, |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<u32, Failure>(0)
        })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    match err {
        PipelineError::Timeout(elapsed) => assert_eq!(elapsed.phase, TimeoutPhase::Total),
        other => panic!("unexpected {other:?}"),
    }
}
