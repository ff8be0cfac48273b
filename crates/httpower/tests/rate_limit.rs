//! The client-side rate limiter against a real local server: the error and wait
//! strategies on the manual clock, one token per logical request, keys, and the
//! adaptive drop while the same key's breaker is open or half-open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use httpower::core::breaker::{BreakerConfig, BreakerState};
use httpower::core::clock::ManualClock;
use httpower::core::rate::{Gcra, Quota, Strategy};
use httpower::{Client, ClientEvent, Reason};
use support::{bounded, drive, test_client, Gate, Reply, Server};

fn per_second(n: u32) -> Gcra {
    Gcra::new(Quota::per_second(NonZeroU32::new(n).unwrap()))
}

fn per_minute(n: u32) -> Gcra {
    Gcra::new(Quota::per_minute(NonZeroU32::new(n).unwrap()))
}

#[tokio::test]
async fn the_error_strategy_refuses_at_once_with_retry_after() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder
        .rate_limit(per_second(1), Strategy::Error)
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);
    let url = server.url("/x");

    assert_eq!(
        bounded(client.get(&url).send()).await.unwrap().status(),
        200
    );
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.name(), "too_many_requests");
    assert_eq!(
        err.reason(),
        &Reason::TooManyRequests {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(err.attempts(), 0);
    assert_eq!(server.hits("/x"), 1, "refused before the network");
    let limited: Vec<(String, Duration)> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::RateLimited {
                key, retry_after, ..
            } => Some((key.to_string(), retry_after)),
            _ => None,
        })
        .collect();
    assert_eq!(limited, [(server.host_key(), Duration::from_secs(1))]);

    clock.advance(Duration::from_millis(400));
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(600)));
    clock.advance(Duration::from_millis(600));
    assert_eq!(
        bounded(client.get(&url).send()).await.unwrap().status(),
        200
    );
    assert_eq!(server.hits("/x"), 2);
}

#[tokio::test]
async fn the_wait_strategy_waits_for_a_slot_then_sends() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder
        .rate_limit(
            per_second(1),
            Strategy::Wait {
                max_wait: Duration::from_secs(5),
            },
        )
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);
    let url = server.url("/x");

    assert_eq!(
        bounded(client.get(&url).send()).await.unwrap().status(),
        200
    );
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(&url).send().await }
    });
    // Let it reach the limiter and park on the clock.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_millis(999));
    server.assert_stays_at("/x", 1).await;
    assert!(!waiting.is_finished());
    clock.advance(Duration::from_millis(1));
    let response = bounded(waiting).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/x"), 2);
    let waits: Vec<(Duration, bool)> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::RateLimitWait { waited, server, .. } => Some((waited, server)),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [(Duration::from_secs(1), false)]);
}

#[tokio::test]
async fn a_first_wait_longer_than_max_wait_fails_without_sleeping() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .rate_limit(
            per_second(1),
            Strategy::Wait {
                max_wait: Duration::from_millis(500),
            },
        )
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);
    let url = server.url("/x");

    bounded(client.get(&url).send()).await.unwrap();
    // The clock is never advanced: had the client slept, this would not return.
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.name(), "rate_limit_wait_timeout");
    assert_eq!(
        err.reason(),
        &Reason::RateLimitWaitTimeout {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(server.hits("/x"), 1);
}

#[tokio::test]
async fn a_logical_request_takes_one_token_whatever_its_retries() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder
        .rate_limit(per_minute(2), Strategy::Error)
        .build()
        .unwrap();
    server.script(
        "/flaky",
        [Reply::status(503), Reply::status(503), Reply::ok("third")],
    );
    server.script("/ok", [Reply::ok("ok")]);

    let response = drive(
        &clock,
        &mut events,
        client.get(&server.url("/flaky")).send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 3));
    let remaining = client
        .limiter()
        .unwrap()
        .key(&server.host_key())
        .inspect()
        .await
        .unwrap()
        .remaining;
    assert_eq!(remaining, 1, "three attempts, one token");

    let response = bounded(client.get(&server.url("/ok")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let err = bounded(client.get(&server.url("/ok")).send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "too_many_requests");
    assert_eq!(server.hits("/flaky") + server.hits("/ok"), 4);
}

#[tokio::test]
async fn limits_are_kept_per_host_or_per_chosen_key() {
    let a = Server::start().await;
    let b = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .rate_limit(per_minute(1), Strategy::Error)
        .build()
        .unwrap();
    a.script("/x", [Reply::ok("a")]);
    b.script("/x", [Reply::ok("b")]);

    // One bucket per host:port.
    assert!(bounded(client.get(&a.url("/x")).send()).await.is_ok());
    assert!(bounded(client.get(&b.url("/x")).send()).await.is_ok());
    assert_eq!(
        bounded(client.get(&a.url("/x")).send())
            .await
            .unwrap_err()
            .name(),
        "too_many_requests"
    );

    // A request may name its bucket: a fresh one here, then spent.
    assert!(
        bounded(client.get(&a.url("/x")).rate_limit_key("tenant-1").send())
            .await
            .is_ok()
    );
    assert!(
        bounded(client.get(&b.url("/x")).rate_limit_key("tenant-1").send())
            .await
            .is_err()
    );
    assert_eq!((a.hits("/x"), b.hits("/x")), (2, 1));

    // A client-wide key puts every host in one bucket.
    let (builder, _events) = test_client(&clock);
    let client = builder
        .rate_limit(per_minute(1), Strategy::Error)
        .rate_limit_key("everything")
        .build()
        .unwrap();
    assert!(bounded(client.get(&a.url("/x")).send()).await.is_ok());
    assert!(bounded(client.get(&b.url("/x")).send()).await.is_err());
    assert_eq!((a.hits("/x"), b.hits("/x")), (3, 1));
}

#[tokio::test]
async fn clones_share_the_limiter() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .rate_limit(per_minute(3), Strategy::Error)
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);

    let mut admitted = 0;
    for _ in 0..10 {
        let clone = client.clone();
        if bounded(clone.get(&server.url("/x")).send()).await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    assert_eq!(server.hits("/x"), 3);
}

/// Sends `n` requests one after the other; returns how many the limiter let through
/// (whatever happened next) and how many it refused.
async fn burst(client: &Client, url: &str, n: usize) -> (usize, usize) {
    let mut passed = 0;
    let mut limited = 0;
    for _ in 0..n {
        match bounded(client.get(url).send()).await {
            Err(err) if err.name() == "too_many_requests" => limited += 1,
            _ => passed += 1,
        }
    }
    (passed, limited)
}

#[tokio::test]
async fn the_rate_drops_to_a_tenth_while_the_breaker_is_open() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .no_retry()
        .rate_limit(per_minute(10), Strategy::Error)
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);
    let url = server.url("/x");

    // Closed: the whole burst of 10.
    assert_eq!(burst(&client, &url, 12).await, (10, 2));
    assert_eq!(server.hits("/x"), 10);

    // Open: each request costs ten tokens, so a full bucket admits one.
    client
        .breakers()
        .unwrap()
        .get(&server.host_key())
        .force_open();
    clock.advance(Duration::from_secs(60));
    assert_eq!(burst(&client, &url, 10).await, (1, 9));
    assert_eq!(
        server.hits("/x"),
        10,
        "the admitted one met the open breaker"
    );

    // Closed again: back to the full rate.
    client
        .breakers()
        .unwrap()
        .get(&server.host_key())
        .force_close();
    clock.advance(Duration::from_secs(60));
    assert_eq!(burst(&client, &url, 12).await, (10, 2));
    assert_eq!(server.hits("/x"), 20);
}

#[tokio::test]
async fn the_rate_halves_while_the_breaker_is_half_open() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .no_retry()
        .circuit_breaker(
            BreakerConfig::builder()
                .failure_threshold(1)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .rate_limit(per_minute(10), Strategy::Error)
        .build()
        .unwrap();
    let gate = Gate::new();
    server.script("/fail", [Reply::status(500)]);
    server.script("/probe", [Reply::ok("back").after(&gate)]);
    server.script("/x", [Reply::ok("ok")]);
    let key = server.host_key();

    bounded(client.get(&server.url("/fail")).send())
        .await
        .unwrap();
    assert_eq!(state(&client, &key), BreakerState::Open);
    clock.advance(Duration::from_secs(60));

    // The probe takes its tokens from another bucket, and holds the breaker half-open.
    let probe = tokio::spawn({
        let client = client.clone();
        let url = server.url("/probe");
        async move { client.get(&url).rate_limit_key("probe").send().await }
    });
    server.wait_hits("/probe", 1).await;
    assert_eq!(state(&client, &key), BreakerState::HalfOpen);

    // Half-open: two tokens a request, so a full bucket of 10 lets 5 through (to the
    // breaker, which refuses them while its only probe is out).
    assert_eq!(burst(&client, &server.url("/x"), 10).await, (5, 5));
    assert_eq!(server.hits("/x"), 0);

    gate.open();
    assert_eq!(bounded(probe).await.unwrap().unwrap().status(), 200);
    assert_eq!(state(&client, &key), BreakerState::Closed);
    clock.advance(Duration::from_secs(60));
    assert_eq!(burst(&client, &server.url("/x"), 12).await, (10, 2));
    assert_eq!(server.hits("/x"), 10);
}

#[tokio::test]
async fn the_adaptive_drop_can_be_turned_off() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .no_retry()
        .rate_limit(per_minute(10), Strategy::Error)
        .adaptive_rate_limit(false)
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);
    client
        .breakers()
        .unwrap()
        .get(&server.host_key())
        .force_open();
    assert_eq!(burst(&client, &server.url("/x"), 12).await, (10, 2));
}

fn state(client: &Client, key: &str) -> BreakerState {
    client.breakers().unwrap().state(key).unwrap().state
}
