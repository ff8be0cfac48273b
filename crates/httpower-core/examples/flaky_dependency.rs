//! A flaky "database" behind the httpower-core pipeline.
//!
//! The dependency fails transiently a third of the time, throttles now and then with a
//! retry hint, and goes down completely for a while in the middle of the run. The
//! pipeline retries what is worth retrying, stops calling the dependency while it is
//! down (circuit breaker), and keeps the call rate under a limit held in the in-memory
//! store. Time is tokio's paused clock, so the whole run takes a fraction of a second.
//!
//! Run with `cargo run -p httpower-core --example flaky_dependency`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use httpower_core::breaker::{BreakerConfig, CircuitBreaker};
use httpower_core::clock::{Clock, TokioClock};
use httpower_core::pipeline::Pipeline;
use httpower_core::rate::{Gcra, Quota};
use httpower_core::retry::{Classification, RetryBudget, RetryPolicy};
use httpower_core::store::{Limiter, MemoryStore};

#[derive(Debug)]
enum DbError {
    Busy,
    Throttled(Duration),
    Down,
}

fn classify(outcome: &Result<u32, DbError>) -> Classification {
    match outcome {
        Ok(_) => Classification::Success,
        Err(DbError::Busy) => Classification::retry("busy"),
        Err(DbError::Throttled(hint)) => Classification::retry_after("throttled", Some(*hint)),
        Err(DbError::Down) => Classification::retry("down"),
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let clock = TokioClock::new();
    let store = Arc::new(MemoryStore::with_clock(clock));
    let quota = Quota::new(20, Duration::from_secs(1), 5).expect("valid quota");
    let limiter = Limiter::builder("orders_db", Gcra::new(quota))
        .clock(clock)
        .strategy(httpower_core::rate::Strategy::Wait {
            max_wait: Duration::from_secs(2),
        })
        .build(store);
    let breaker = CircuitBreaker::with_clock(
        BreakerConfig::builder()
            .failure_threshold(5)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("valid breaker config"),
        clock,
    );
    let mut events = breaker.subscribe();
    let retry = RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_secs(1))
        .budget(RetryBudget::new(clock))
        .build()
        .expect("valid retry policy");
    let pipeline = Pipeline::builder_with_clock(clock)
        .rate_limit(limiter)
        .circuit_breaker(breaker.clone())
        .retry(retry)
        .attempt_timeout(Duration::from_millis(500))
        .total_timeout(Duration::from_secs(5))
        .build();

    let attempts = AtomicU32::new(0);
    let mut outcomes: BTreeMap<&'static str, u32> = BTreeMap::new();
    let started = clock.now();
    for request in 0..400u32 {
        let elapsed = clock.now().saturating_duration_since(started);
        // The dependency is down between 4 s and 10 s into the run.
        let down = elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(10);
        let result = pipeline
            .call(classify, |attempt| {
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                async move {
                    if down {
                        Err(DbError::Down)
                    } else if n % 3 == 0 && attempt == 1 {
                        Err(DbError::Busy)
                    } else if n % 97 == 0 {
                        Err(DbError::Throttled(Duration::from_millis(300)))
                    } else {
                        Ok(request)
                    }
                }
            })
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.reason(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let elapsed = clock.now().saturating_duration_since(started);

    println!("400 logical calls in {elapsed:.1?} of simulated time");
    println!(
        "{} attempts reached the dependency",
        attempts.load(Ordering::Relaxed)
    );
    for (outcome, count) in &outcomes {
        println!("  {outcome:<24} {count}");
    }
    println!("breaker transitions:");
    while let Ok(change) = events.try_recv() {
        println!(
            "  {:>8.3?}  {:?} -> {:?} ({:?})",
            change.at.saturating_duration_since(started),
            change.from,
            change.to,
            change.reason
        );
    }
    let snapshot = breaker.state();
    println!(
        "final breaker state: {:?}, failure rate {:.0}%",
        snapshot.state, snapshot.failure_rate
    );
}
