//! Overhead of the circuit breaker's closed path and of the whole pipeline around a
//! ready future, when nothing fails.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use httpower_core::breaker::{BreakerConfig, CircuitBreaker};
use httpower_core::pipeline::Pipeline;
use httpower_core::rate::{AnyAlgorithm, Gcra, Quota};
use httpower_core::retry::{Classification, RetryPolicy};
use httpower_core::store::{Limiter, MemoryStore};

fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let breaker = CircuitBreaker::new(BreakerConfig::default());
    group.bench_function("closed_acquire_and_record_success", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire().unwrap();
            permit.success();
        });
    });
    group.finish();
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let algorithm: AnyAlgorithm = Gcra::new(quota).into();
    let memory = MemoryStore::new();
    group.bench_function("memory_check", |b| {
        b.iter(|| black_box(memory.check_now("bench", &algorithm, "default", 1)).unwrap());
    });
    let limiter = Limiter::builder("bench", Gcra::new(quota)).build(Arc::new(MemoryStore::new()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    group.bench_function("limiter_acquire", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(limiter.acquire_n("default", 1).await).unwrap();
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn classify(outcome: &Result<u64, ()>) -> Classification {
    match outcome {
        Ok(_) => Classification::Success,
        Err(()) => Classification::retry("error"),
    }
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let limiter = || {
        let quota = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000).unwrap();
        Limiter::builder("bench", Gcra::new(quota)).build(Arc::new(MemoryStore::new()))
    };
    let breaker = || CircuitBreaker::new(BreakerConfig::default());
    let bare = Pipeline::builder().build();
    let only_limiter = Pipeline::builder().rate_limit(limiter()).build();
    let only_breaker = Pipeline::builder().circuit_breaker(breaker()).build();
    let only_retry = Pipeline::builder().retry(RetryPolicy::default()).build();
    let full = Pipeline::builder()
        .rate_limit(limiter())
        .circuit_breaker(breaker())
        .retry(RetryPolicy::default())
        .build();
    let full_with_timeouts = Pipeline::builder()
        .rate_limit(limiter())
        .circuit_breaker(breaker())
        .retry(RetryPolicy::default())
        .attempt_timeout(Duration::from_secs(5))
        .total_timeout(Duration::from_secs(30))
        .build();

    let rows = [
        ("nothing", &bare),
        ("limiter", &only_limiter),
        ("breaker", &only_breaker),
        ("retry", &only_retry),
        ("limiter_breaker_retry", &full),
        ("limiter_breaker_retry_timeouts", &full_with_timeouts),
    ];
    for (name, pipeline) in rows {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for n in 0..iters {
                        let value = pipeline
                            .call(classify, |_| std::future::ready(Ok::<_, ()>(n)))
                            .await;
                        black_box(value).unwrap();
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, breaker, store, pipeline);
criterion_main!(benches);
