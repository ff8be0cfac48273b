//! Load generator for the Redis store: N tokio tasks, each looping
//! `limiter.key(k).check().await` for a fixed time against one Redis, through the
//! public API only (a `Limiter` on a `RedisStore`). Prints decisions per second, the
//! per-decision latency (p50, p99, max) and the store's counters.
//!
//! ```text
//! cargo run --release -p httpower-redis --example redis_load -- \
//!     --url redis://127.0.0.1:6379 --concurrency 256 --seconds 10 \
//!     --algorithm gcra --keys random --deny-cache on [--json]
//! ```
//!
//! * `--algorithm gcra`: 100 per second, burst 100 (the same arguments as the
//!   `redis-benchmark` ceiling: emission interval 10,000 µs, burst 100).
//!   `--algorithm sliding`: sliding window, 100 per second.
//! * `--keys random`: each check picks one of 1,000,000 identifiers at random (most
//!   checks are admitted). `--keys hot`: every check hits one identifier whose quota is
//!   1 per second with a burst of 1, so nearly every check is denied.
//! * `--deny-cache on|off`: the store's local deny cache (capacity 10,000) or none.
//! * `--threads N`: tokio worker threads (default: one per core). On a small machine
//!   shared with the Redis server, fewer workers leave the server its core.
//!
//! `scripts/bench-redis` runs it; see docs/BENCHMARKS.md, "Redis store".

// A command-line tool: it reports on stdout and stops on a bad argument.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use httpower_core::rate::{Gcra, Quota, SlidingWindow, WindowQuota};
use httpower_core::store::{DecisionSource, FailMode, Limiter};
use httpower_redis::RedisStore;

const RANDOM_KEYS: u64 = 1_000_000;

#[derive(Debug, Clone)]
struct Args {
    url: String,
    concurrency: usize,
    seconds: f64,
    algorithm: String,
    keys: String,
    deny_cache: bool,
    json: bool,
    prefix: String,
    threads: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "redis://127.0.0.1:6379".into(),
        concurrency: 64,
        seconds: 10.0,
        algorithm: "gcra".into(),
        keys: "random".into(),
        deny_cache: true,
        json: false,
        prefix: "bench".into(),
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value(),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--algorithm" => args.algorithm = value(),
            "--keys" => args.keys = value(),
            "--deny-cache" => {
                args.deny_cache = match value().as_str() {
                    "on" => true,
                    "off" => false,
                    other => panic!("--deny-cache on|off, not {other}"),
                }
            }
            "--prefix" => args.prefix = value(),
            "--threads" => args.threads = value().parse().expect("--threads N"),
            "--json" => args.json = true,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(args.concurrency > 0, "--concurrency must be above zero");
    assert!(
        matches!(args.algorithm.as_str(), "gcra" | "sliding"),
        "--algorithm gcra|sliding"
    );
    assert!(
        matches!(args.keys.as_str(), "random" | "hot"),
        "--keys random|hot"
    );
    args
}

/// What one task saw.
struct TaskResult {
    latency_ns: Histogram<u64>,
    allowed: u64,
    denied: u64,
    fail_open: u64,
}

/// xorshift64*: a cheap per-task generator, so picking a key costs nothing next to a
/// round trip.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn main() {
    let args = parse_args();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let store = RedisStore::builder(args.url.clone())
        .key_prefix(args.prefix.clone())
        .deny_cache_capacity(if args.deny_cache { 10_000 } else { 0 })
        .build()
        .expect("store settings");
    let store = Arc::new(store);
    let hot = args.keys == "hot";
    let limiter = match (args.algorithm.as_str(), hot) {
        ("gcra", false) => Limiter::builder(
            "g",
            Gcra::new(Quota::new(100, Duration::from_secs(1), 100).expect("quota")),
        ),
        ("gcra", true) => Limiter::builder(
            "g",
            Gcra::new(Quota::new(1, Duration::from_secs(1), 1).expect("quota")),
        ),
        ("sliding", false) => Limiter::builder(
            "s",
            SlidingWindow::new(WindowQuota::new(100, Duration::from_secs(1)).expect("quota")),
        ),
        _ => Limiter::builder(
            "s",
            SlidingWindow::new(WindowQuota::new(1, Duration::from_secs(1)).expect("quota")),
        ),
    };
    // Fail open (the default) with the default 100 ms timeout: a decision that the
    // store could not make in time is counted apart (`fail_open`), never as a store
    // decision.
    let limiter = limiter
        .fail_mode(FailMode::Open)
        .build(Arc::clone(&store) as _);

    // Connect and load the script before the clock starts.
    let warm = limiter.key("warmup").check().await.expect("warm-up check");
    assert!(
        matches!(warm.source, DecisionSource::Store),
        "Redis at {} did not answer: {:?}",
        args.url,
        warm.source
    );
    let before = store.stats();

    let duration = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for task in 0..args.concurrency {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = TaskResult {
                latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
                allowed: 0,
                denied: 0,
                fail_open: 0,
            };
            let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ ((task as u64 + 1) << 17);
            let mut key = String::with_capacity(16);
            loop {
                key.clear();
                if hot {
                    key.push_str("hot");
                } else {
                    use std::fmt::Write;
                    let _ = write!(key, "{}", next_random(&mut rng) % RANDOM_KEYS);
                }
                let t0 = Instant::now();
                let verdict = limiter.key(&key).check().await.expect("cost 1 fits");
                let now = Instant::now();
                let ns = u64::try_from((now - t0).as_nanos()).unwrap_or(u64::MAX);
                result.latency_ns.saturating_record(ns.max(1));
                match verdict.source {
                    DecisionSource::Store if verdict.decision.allowed => result.allowed += 1,
                    DecisionSource::Store => result.denied += 1,
                    _ => result.fail_open += 1,
                }
                if now >= deadline {
                    break;
                }
                // A deny-cache hit completes without ever yielding; without this, a
                // task on a hot key would hold its worker thread for the whole run
                // and starve the tasks whose Redis replies have arrived (their
                // latency would read as the run's length).
                tokio::task::consume_budget().await;
            }
            result
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let (mut allowed, mut denied, mut fail_open) = (0u64, 0u64, 0u64);
    for task in tasks {
        let r = task.await.expect("task");
        latency.add(&r.latency_ns).expect("same bounds");
        allowed += r.allowed;
        denied += r.denied;
        fail_open += r.fail_open;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = store.stats();
    let decisions = allowed + denied;
    let per_second = decisions as f64 / elapsed;
    let us = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let (p50, p99, max) = (us(0.5), us(0.99), latency.max() as f64 / 1000.0);
    let round_trips = after.round_trips - before.round_trips;
    let cache_hits = after.deny_cache_hits - before.deny_cache_hits;

    if args.json {
        println!(
            "{{\"algorithm\":\"{}\",\"keys\":\"{}\",\"deny_cache\":{},\"concurrency\":{},\"threads\":{},\
             \"seconds\":{:.3},\"decisions\":{},\"allowed\":{},\"denied\":{},\"fail_open\":{},\
             \"decisions_per_sec\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\
             \"round_trips\":{},\"deny_cache_hits\":{}}}",
            args.algorithm,
            args.keys,
            args.deny_cache,
            args.concurrency,
            args.threads,
            elapsed,
            decisions,
            allowed,
            denied,
            fail_open,
            per_second,
            p50,
            p99,
            max,
            round_trips,
            cache_hits,
        );
    } else {
        println!(
            "{} on {} keys, deny cache {}, {} tasks, {:.1} s",
            args.algorithm,
            args.keys,
            if args.deny_cache { "on" } else { "off" },
            args.concurrency,
            elapsed
        );
        println!("  decisions      {decisions} ({allowed} allowed, {denied} denied)");
        println!("  fail-open      {fail_open} (store too slow or unreachable; not counted)");
        println!("  decisions/s    {per_second:.0}");
        println!("  latency        p50 {p50:.1} us, p99 {p99:.1} us, max {max:.1} us");
        println!("  round trips    {round_trips}");
        println!("  deny-cache hits {cache_hits}");
    }
}
