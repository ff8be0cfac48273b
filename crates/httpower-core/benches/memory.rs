//! Memory per key: a keyed GCRA limiter filled with 100,000 `u64` keys, httpower against
//! governor's keyed limiter.
//!
//! Both are measured the same way: a counting global allocator records the net bytes
//! allocated while the limiter is built and filled. httpower's own figure,
//! `memory_usage()` (the key tables including control bytes and spare room), is printed
//! beside it.
//!
//! Run with `cargo bench -p httpower-core --bench memory`.

#![allow(missing_docs)]
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout)]

use std::alloc::System;
use std::hint::black_box;
use std::num::NonZeroU32;

use httpower_core::clock::MonotonicClock;
use httpower_core::rate::{Gcra, KeyedConfig, Quota, RateLimiter};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: usize = 100_000;

fn keys() -> Vec<u64> {
    let mut state = 0x5EED_u64;
    (0..KEYS)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

/// Net heap bytes allocated while `f` runs (what it still holds when it returns).
fn net_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let value = f();
    let stats = region.change();
    // A reallocation is already counted in the allocated and deallocated totals.
    (
        value,
        stats
            .bytes_allocated
            .saturating_sub(stats.bytes_deallocated),
    )
}

#[allow(clippy::cast_precision_loss)]
fn per_key(bytes: usize, keys: usize) -> f64 {
    bytes as f64 / keys as f64
}

fn main() {
    let keys = keys();
    let rate = NonZeroU32::new(1_000_000).unwrap();
    let burst = NonZeroU32::new(1_000).unwrap();

    let (ours, ours_heap) = net_bytes(|| {
        let limiter: RateLimiter<u64, Gcra> = RateLimiter::with_config(
            Gcra::new(Quota::per_second(rate).allow_burst(burst)),
            MonotonicClock,
            KeyedConfig::with_max_keys(200_000),
        );
        for key in &keys {
            black_box(limiter.check(key));
        }
        limiter
    });
    assert_eq!(ours.len(), KEYS);
    let table = ours.memory_usage();

    let (theirs, theirs_heap) = net_bytes(|| {
        let limiter: governor::DefaultKeyedRateLimiter<u64> =
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst));
        for key in &keys {
            let _ = black_box(limiter.check_key(key));
        }
        limiter
    });
    assert_eq!(theirs.len(), KEYS);

    println!("memory per key, {KEYS} u64 keys, keyed GCRA");
    println!(
        "httpower memory_usage(): {table} bytes = {:.1} bytes/key",
        per_key(table, ours.len())
    );
    println!(
        "httpower heap (counting allocator): {ours_heap} bytes = {:.1} bytes/key",
        per_key(ours_heap, ours.len())
    );
    println!(
        "governor heap (counting allocator): {theirs_heap} bytes = {:.1} bytes/key",
        per_key(theirs_heap, theirs.len())
    );
}
