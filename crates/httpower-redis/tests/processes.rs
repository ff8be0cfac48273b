//! One limit, four OS processes: the Redis store admits what the algorithm allows over
//! the run — never more (no two processes take the same cell), and at least 99% of it
//! (no cells lost to races or to the local deny cache).
//!
//! The test re-runs its own binary four times with `worker_process`, which is ignored in
//! normal runs and only works when given the variables below.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpower_core::rate::{AnyAlgorithm, FixedWindow, Gcra, Quota, SlidingWindow, WindowQuota};
use httpower_core::store::{FailMode, Limiter, Store};
use httpower_redis::RedisStore;

const PROCESSES: usize = 4;
const TASKS: usize = 64;
const RUN: Duration = Duration::from_secs(5);
/// GCRA: 10 per second with a burst of 100 (one cell every 100 ms).
const GCRA_RATE: u32 = 10;
const GCRA_BURST: u32 = 100;
/// Windows: 400 per aligned second.
const WINDOW_LIMIT: u32 = 400;
const WINDOW: Duration = Duration::from_secs(1);

const ENV_URL: &str = "HTTPOWER_REDIS_WORKER_URL";
const ENV_START: &str = "HTTPOWER_REDIS_WORKER_START_US";

fn unix_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

fn algorithms() -> [(&'static str, AnyAlgorithm); 3] {
    let window = WindowQuota::new(WINDOW_LIMIT, WINDOW).unwrap();
    [
        (
            "gcra",
            Gcra::new(Quota::new(GCRA_RATE, Duration::from_secs(1), GCRA_BURST).unwrap()).into(),
        ),
        ("sliding", SlidingWindow::new(window).into()),
        ("fixed", FixedWindow::new(window).into()),
    ]
}

/// One worker process: 64 tasks per algorithm, from the agreed start for `RUN`, each
/// checking the one shared key and sleeping until its retry time when denied. Prints
/// one line per admission and per task span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process started by redis_exact_across_processes"]
async fn worker_process() {
    let (Ok(url), Ok(start)) = (std::env::var(ENV_URL), std::env::var(ENV_START)) else {
        panic!("worker_process runs only as a child of redis_exact_across_processes");
    };
    let start: u64 = start.parse().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedisStore::builder(url).build().unwrap());
    let mut tasks = Vec::new();
    for (name, algorithm) in algorithms() {
        let limiter = Limiter::builder(format!("exact_{name}"), algorithm)
            .timeout(Duration::from_secs(2))
            .fail_mode(FailMode::Closed)
            .build(Arc::clone(&store));
        for _ in 0..TASKS {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let wait = Duration::from_micros(start.saturating_sub(unix_us()));
                tokio::time::sleep(wait).await;
                let end = start + u64::try_from(RUN.as_micros()).unwrap();
                let first = unix_us();
                let mut out = Vec::new();
                let mut failures = 0u64;
                while unix_us() < end {
                    let verdict = limiter.key("shared").check().await.unwrap();
                    let now = unix_us();
                    if verdict.decision.allowed {
                        if matches!(verdict.source, httpower_core::store::DecisionSource::Store) {
                            let reset = verdict.decision.reset_after.as_micros();
                            out.push(format!("adm {name} {now} {reset}"));
                        }
                    } else {
                        if !matches!(verdict.source, httpower_core::store::DecisionSource::Store) {
                            failures += 1;
                        }
                        let retry = verdict.decision.retry_after.max(Duration::from_micros(200));
                        tokio::time::sleep(retry).await;
                    }
                }
                out.push(format!("span {name} {first} {end} {}", unix_us()));
                out.push(format!("failures {failures}"));
                out
            }));
        }
    }
    let mut lines = Vec::new();
    for task in tasks {
        lines.extend(task.await.unwrap());
    }
    println!("BEGIN-WORKER\n{}\nEND-WORKER", lines.join("\n"));
}

#[derive(Debug, Default)]
struct Observed {
    admissions: Vec<(u64, u64)>,
    /// The earliest request sent.
    first: u64,
    /// When the tasks stopped sending.
    end: u64,
    /// The latest answer received.
    last: u64,
}

#[test]
fn redis_exact_across_processes() {
    let server = support::RedisServer::start();
    // Start on a whole second, after the workers had time to start: the windows are
    // aligned to Redis's clock, which is this machine's clock.
    let start = (unix_us() / 1_000_000 + 2) * 1_000_000;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "worker_process",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(ENV_URL, server.url())
                .env(ENV_START, start.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut observed: std::collections::HashMap<String, Observed> = Default::default();
    let mut failures = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "worker failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let body = stdout
            .split("BEGIN-WORKER\n")
            .nth(1)
            .and_then(|s| s.split("\nEND-WORKER").next())
            .unwrap_or_else(|| panic!("no worker report in {stdout}"));
        for line in body.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["adm", name, t, reset] => observed
                    .entry(name.to_owned())
                    .or_default()
                    .admissions
                    .push((t.parse().unwrap(), reset.parse().unwrap())),
                ["span", name, first, end, last] => {
                    let o = observed.entry(name.to_owned()).or_default();
                    let first: u64 = first.parse().unwrap();
                    o.first = if o.first == 0 {
                        first
                    } else {
                        o.first.min(first)
                    };
                    o.end = end.parse().unwrap();
                    o.last = o.last.max(last.parse().unwrap());
                }
                ["failures", n] => failures += n.parse::<u64>().unwrap(),
                _ => panic!("unreadable worker line {line:?}"),
            }
        }
    }
    assert_eq!(failures, 0, "decisions that did not come from Redis");

    // GCRA: over a span of d, at most burst + ⌊d / T⌋ cells. Redis decided within
    // [first request sent, last answer received], which bounds what may be admitted;
    // requests were sent within [first, end], which bounds what saturation must reach.
    let g = &observed["gcra"];
    let interval = 1_000_000 / u64::from(GCRA_RATE);
    let most = u64::from(GCRA_BURST) + (g.last - g.first) / interval;
    let least = u64::from(GCRA_BURST) + (g.end - g.first) / interval;
    let admitted = g.admissions.len() as u64;
    println!("gcra: {admitted} admitted; bound {most} over the decisions' span, {least} over the sending span");
    assert!(admitted <= most, "GCRA admitted {admitted} > bound {most}");
    assert!(
        admitted * 100 >= least * 99,
        "GCRA admitted {admitted}, under 99% of {least}"
    );

    // Windows: each aligned window of the run admits at most the limit. The window of an
    // admission is read from its reset time (the fixed window resets at the window's
    // end; the sliding one two windows after its start).
    let w = u64::try_from(WINDOW.as_micros()).unwrap();
    let first_window = start / w;
    let windows = u64::try_from(RUN.as_micros()).unwrap() / w;
    for (name, offset) in [("fixed", 1), ("sliding", 2)] {
        let mut per_window = vec![0u64; usize::try_from(windows).unwrap()];
        for (t, reset) in &observed[name].admissions {
            let index = ((t + reset + w / 2) / w).checked_sub(offset).unwrap();
            if let Some(slot) = index
                .checked_sub(first_window)
                .and_then(|i| per_window.get_mut(usize::try_from(i).unwrap()))
            {
                *slot += 1;
            }
        }
        let total: u64 = per_window.iter().sum();
        let bound = windows * u64::from(WINDOW_LIMIT);
        println!("{name}: per window {per_window:?}, {total} of {bound}");
        assert!(
            per_window.iter().all(|n| *n <= u64::from(WINDOW_LIMIT)),
            "{name}: a window admitted over {WINDOW_LIMIT}: {per_window:?}"
        );
        assert!(
            total * 100 >= bound * 99,
            "{name}: {total} admitted, under 99% of {bound}"
        );
    }
}
