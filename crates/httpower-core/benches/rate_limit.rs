//! Keyed rate-limit checks: httpower's GCRA and sliding window against governor's
//! keyed GCRA, with the same quota and the same `u64` keys.
//!
//! Run with `cargo bench -p httpower-core --bench rate_limit`.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use httpower_core::clock::{Clock, MonotonicClock};
use httpower_core::rate::{Gcra, KeyedConfig, Quota, RateLimiter, SlidingWindow, WindowQuota};

/// One million cells per second per key, bursts of a thousand: nearly every check is
/// admitted, so the benchmark measures the admit path.
const RATE: u32 = 1_000_000;
const BURST: u32 = 1_000;
/// Room for every key, so the map never evicts during the run.
const MAX_KEYS: usize = 200_000;
/// Length of the precomputed key sequence (a power of two, so cycling is a mask).
const SEQ_LEN: usize = 1 << 20;
const SEQ_MASK: usize = SEQ_LEN - 1;
const KEY_COUNTS: [usize; 2] = [1_000, 100_000];

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` distinct-looking keys and a pseudo-random sequence of them to cycle through.
fn workload(count: usize) -> (Vec<u64>, Vec<u64>) {
    let mut rng = 0x5EED_u64 ^ count as u64;
    let keys: Vec<u64> = (0..count).map(|_| splitmix64(&mut rng)).collect();
    let sequence = (0..SEQ_LEN)
        .map(|_| keys[(splitmix64(&mut rng) % count as u64) as usize])
        .collect();
    (keys, sequence)
}

fn httpower_gcra() -> RateLimiter<u64, Gcra> {
    let quota = Quota::per_second(NonZeroU32::new(RATE).unwrap())
        .allow_burst(NonZeroU32::new(BURST).unwrap());
    RateLimiter::with_config(
        Gcra::new(quota),
        MonotonicClock,
        KeyedConfig::with_max_keys(MAX_KEYS),
    )
}

fn httpower_sliding() -> RateLimiter<u64, SlidingWindow> {
    let quota = WindowQuota::new(RATE, Duration::from_secs(1)).unwrap();
    RateLimiter::with_config(
        SlidingWindow::new(quota),
        MonotonicClock,
        KeyedConfig::with_max_keys(MAX_KEYS),
    )
}

type Governor = governor::DefaultKeyedRateLimiter<u64>;

fn governor_gcra() -> Governor {
    let quota = governor::Quota::per_second(NonZeroU32::new(RATE).unwrap())
        .allow_burst(NonZeroU32::new(BURST).unwrap());
    governor::RateLimiter::keyed(quota)
}

/// Runs `iters` checks split over `threads` scoped threads sharing one limiter and
/// returns the wall time for all of them.
fn run_threads<L: Sync>(
    limiter: &L,
    sequence: &[u64],
    threads: usize,
    iters: u64,
    check: impl Fn(&L, &u64) -> bool + Sync,
) -> Duration {
    let per_thread = iters / threads as u64;
    let extra = iters % threads as u64;
    let check = &check;
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..threads {
            let n = per_thread + u64::from(t == 0) * extra;
            // Each thread starts at a different point of the sequence.
            let offset = t * (SEQ_LEN / threads);
            scope.spawn(move || {
                let mut i = offset;
                for _ in 0..n {
                    black_box(check(limiter, &sequence[i & SEQ_MASK]));
                    i = i.wrapping_add(1);
                }
            });
        }
    });
    start.elapsed()
}

fn bench_single<L>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    limiter: &L,
    sequence: &[u64],
    check: impl Fn(&L, &u64) -> bool,
) {
    group.bench_function(id, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let key = &sequence[i & SEQ_MASK];
            i = i.wrapping_add(1);
            black_box(check(limiter, key))
        });
    });
}

fn keyed_gcra(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_gcra");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    for count in KEY_COUNTS {
        let (keys, sequence) = workload(count);

        let ours = httpower_gcra();
        let theirs = governor_gcra();
        let sliding = httpower_sliding();
        for key in &keys {
            ours.check(key);
            let _ = theirs.check_key(key);
            sliding.check(key);
        }
        assert_eq!(ours.len(), count, "httpower holds every key");
        assert_eq!(theirs.len(), count, "governor holds every key");
        assert_eq!(sliding.len(), count, "sliding window holds every key");

        let check_ours = |l: &RateLimiter<u64, Gcra>, k: &u64| l.check(k).allowed;
        let check_theirs = |l: &Governor, k: &u64| l.check_key(k).is_ok();
        let check_sliding = |l: &RateLimiter<u64, SlidingWindow>, k: &u64| l.check(k).allowed;

        let param = format!("{count}_keys/1_thread");
        bench_single(
            &mut group,
            BenchmarkId::new("httpower_gcra", &param),
            &ours,
            &sequence,
            check_ours,
        );
        bench_single(
            &mut group,
            BenchmarkId::new("governor_gcra", &param),
            &theirs,
            &sequence,
            check_theirs,
        );
        bench_single(
            &mut group,
            BenchmarkId::new("httpower_sliding_window", &param),
            &sliding,
            &sequence,
            check_sliding,
        );

        let param = format!("{count}_keys/2_threads");
        group.bench_function(BenchmarkId::new("httpower_gcra", &param), |b| {
            b.iter_custom(|iters| run_threads(&ours, &sequence, 2, iters, check_ours));
        });
        group.bench_function(BenchmarkId::new("governor_gcra", &param), |b| {
            b.iter_custom(|iters| run_threads(&theirs, &sequence, 2, iters, check_theirs));
        });

        // No evictions: every key is still held after the measurements.
        assert_eq!(ours.len(), count);
        assert_eq!(sliding.len(), count);
    }
    group.finish();
}

/// The cost of reading each limiter's default clock, the one part of a check that does
/// not depend on the map.
fn clock_read(c: &mut Criterion) {
    use governor::clock::Clock as _;

    let mut group = c.benchmark_group("clock_read");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    let ours = MonotonicClock;
    group.bench_function("httpower_monotonic_clock", |b| {
        b.iter(|| black_box(ours.now()));
    });
    let theirs = governor::clock::DefaultClock::default();
    group.bench_function("governor_default_clock", |b| {
        b.iter(|| black_box(theirs.now()));
    });
    group.bench_function("std_instant_now", |b| b.iter(|| black_box(Instant::now())));
    group.finish();
}

criterion_group!(benches, keyed_gcra, clock_read);
criterion_main!(benches);
