//! A Redis outage under load: every decision still comes back within the limiter's
//! timeout, fail-open admits, fail-closed denies, and once Redis is back the decisions
//! come from Redis again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use httpower_core::rate::{Gcra, Quota};
use httpower_core::store::{DecisionSource, FailMode, Limiter, Store};
use httpower_redis::RedisStore;
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_millis(100);
const SLACK: Duration = Duration::from_millis(20);

#[derive(Debug, Default, Clone)]
struct Tally {
    store: u64,
    fail_open: u64,
    fail_closed: u64,
    wrong: Vec<String>,
    slowest: Duration,
}

/// Loops decisions on `limiter` until told to stop, recording who decided and how long
/// each decision took. `phase` says whether Redis is up, down or coming back.
async fn load(
    limiter: Limiter,
    worker: usize,
    phase: watch::Receiver<Phase>,
) -> Vec<(Phase, Tally)> {
    let mut tallies: Vec<(Phase, Tally)> = Vec::new();
    let mut n = 0u64;
    loop {
        let current = *phase.borrow();
        if current == Phase::Stop {
            return tallies;
        }
        n += 1;
        let key = format!("w{worker}-{}", n % 50);
        let started = Instant::now();
        let verdict = limiter.key(&key).check().await.unwrap();
        let took = started.elapsed();
        // A decision that straddled a phase change (the kill, the restart) belongs to
        // neither phase; its latency is still checked.
        let current = if *phase.borrow() == current {
            current
        } else {
            Phase::Changing
        };
        if tallies.last().map(|(p, _)| *p) != Some(current) {
            tallies.push((current, Tally::default()));
        }
        let tally = &mut tallies.last_mut().unwrap().1;
        tally.slowest = tally.slowest.max(took);
        match (
            &verdict.source,
            verdict.decision.allowed,
            limiter.fail_mode(),
        ) {
            (DecisionSource::Store, true, _) => tally.store += 1,
            (DecisionSource::FailOpen(_), true, FailMode::Open) => tally.fail_open += 1,
            (DecisionSource::FailClosed(_), false, FailMode::Closed) => tally.fail_closed += 1,
            other => tally.wrong.push(format!("{other:?}")),
        }
        // Keep the machine responsive: this is load, not a busy loop.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Up,
    Down,
    Restarting,
    Restarted,
    Changing,
    Stop,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_honours_fail_mode() {
    let mut server = support::RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::builder(server.url())
            .connect_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    let quota = Quota::new(1000, Duration::from_secs(1), 1000).unwrap();
    let open = Limiter::builder("outage_open", Gcra::new(quota))
        .timeout(TIMEOUT)
        .fail_mode(FailMode::Open)
        .build(Arc::clone(&store));
    let closed = Limiter::builder("outage_closed", Gcra::new(quota))
        .timeout(TIMEOUT)
        .fail_mode(FailMode::Closed)
        .build(Arc::clone(&store));

    let (phase_tx, phase_rx) = watch::channel(Phase::Up);
    let mut workers = Vec::new();
    for w in 0..8 {
        let limiter = if w % 2 == 0 {
            open.clone()
        } else {
            closed.clone()
        };
        workers.push(tokio::spawn(load(limiter, w, phase_rx.clone())));
    }

    // Redis up: wait until every worker has had decisions from Redis.
    wait_for(Duration::from_secs(5), || async {
        open.key("probe").check().await.unwrap().source == DecisionSource::Store
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.kill();
    phase_tx.send(Phase::Down).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    phase_tx.send(Phase::Restarting).unwrap();
    server.restart();
    let restarted = Instant::now();
    phase_tx.send(Phase::Restarted).unwrap();
    // Decisions come from Redis again, on both limiters, within 2 s of the restart.
    for limiter in [&open, &closed] {
        wait_for(
            Duration::from_secs(2) - restarted.elapsed().min(Duration::from_secs(2)),
            || async {
                limiter.key("probe-after").check().await.unwrap().source == DecisionSource::Store
            },
        )
        .await;
    }
    let back_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    phase_tx.send(Phase::Stop).unwrap();

    let mut down = Tally::default();
    let mut total = 0;
    for worker in workers {
        for (phase, tally) in worker.await.unwrap() {
            total += tally.store + tally.fail_open + tally.fail_closed;
            assert!(
                tally.wrong.is_empty(),
                "{phase:?}: unexpected verdicts {:?}",
                tally.wrong
            );
            assert!(
                tally.slowest <= TIMEOUT + SLACK,
                "{phase:?}: a decision took {:?}",
                tally.slowest
            );
            if phase == Phase::Down {
                down.store += tally.store;
                down.fail_open += tally.fail_open;
                down.fail_closed += tally.fail_closed;
            }
        }
    }
    assert!(
        total > 500,
        "too little load to mean anything: {total} decisions"
    );
    assert!(
        down.fail_open > 20 && down.fail_closed > 20,
        "outage verdicts: {down:?}"
    );
    assert_eq!(down.store, 0, "Redis answered while it was down: {down:?}");
    assert!(
        back_after <= Duration::from_secs(2),
        "Redis decisions resumed after {back_after:?}"
    );
}

async fn wait_for<F, Fut>(limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if probe().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
