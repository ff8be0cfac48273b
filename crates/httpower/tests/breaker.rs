//! The client's circuit breakers against real local servers: opening on failures,
//! failing fast without touching the network, half-open probes on the manual clock,
//! keys per `host:port` or chosen by the caller.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use httpower::core::breaker::{BreakerConfig, BreakerState, TransitionReason};
use httpower::core::clock::ManualClock;
use httpower::core::rate::{Gcra, Quota, Strategy};
use httpower::{Client, ClientEvent, Reason};
use support::{bounded, drive, test_client, Events, Gate, Reply, Server};

const OPEN_FOR: Duration = Duration::from_secs(30);

fn three_strikes() -> BreakerConfig {
    BreakerConfig::builder()
        .failure_threshold(3)
        .timeout(OPEN_FOR)
        .build()
        .unwrap()
}

/// A client without retries (one attempt per call) and a breaker that opens after
/// three failures for 30 s.
fn client(clock: &ManualClock) -> (Client, Events) {
    let (builder, events) = test_client(clock);
    let client = builder
        .no_retry()
        .circuit_breaker(three_strikes())
        .build()
        .unwrap();
    (client, events)
}

async fn get_status(client: &Client, url: &str) -> u16 {
    bounded(client.get(url).send())
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn state(client: &Client, key: &str) -> BreakerState {
    client.breakers().unwrap().state(key).unwrap().state
}

#[tokio::test]
async fn failures_open_the_breaker_and_calls_then_fail_fast() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, events) = client(&clock);
    server.script("/fail", [Reply::status(500)]);
    let url = server.url("/fail");

    for _ in 0..3 {
        assert_eq!(get_status(&client, &url).await, 500);
    }
    assert_eq!(server.hits("/fail"), 3);
    let snapshot = client
        .breakers()
        .unwrap()
        .state(&server.host_key())
        .unwrap();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.failures, 3);

    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.name(), "service_unavailable");
    assert_eq!(
        err.reason(),
        &Reason::ServiceUnavailable {
            retry_after: OPEN_FOR
        }
    );
    assert_eq!(err.retry_after(), Some(OPEN_FOR));
    assert_eq!(err.attempts(), 0);
    assert!(err.is_local());
    assert_eq!(server.hits("/fail"), 3, "no network call while open");

    // The hint counts down on the clock.
    clock.advance(Duration::from_secs(10));
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
    assert_eq!(server.hits("/fail"), 3);
    assert_eq!(events.count("circuit_open"), 2);
    let open_event = events
        .all()
        .into_iter()
        .find_map(|e| match e {
            ClientEvent::CircuitOpen { key, .. } => Some(key),
            _ => None,
        })
        .unwrap();
    assert_eq!(&*open_event, server.host_key());
}

#[tokio::test]
async fn after_the_timeout_one_probe_goes_through_and_its_success_closes() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    let url = server.url("/dep");
    server.script("/dep", [Reply::status(503)]);
    for _ in 0..3 {
        get_status(&client, &url).await;
    }
    assert_eq!(state(&client, &server.host_key()), BreakerState::Open);

    // Not a nanosecond early.
    clock.advance(OPEN_FOR - Duration::from_nanos(1));
    assert_eq!(
        bounded(client.get(&url).send()).await.unwrap_err().name(),
        "service_unavailable"
    );
    assert_eq!(server.hits("/dep"), 3);

    let gate = Gate::new();
    server.script("/dep", [Reply::ok("recovered").after(&gate)]);
    clock.advance(Duration::from_nanos(1));
    let probe = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(&url).send().await }
    });
    server.wait_hits("/dep", 4).await;
    assert_eq!(state(&client, &server.host_key()), BreakerState::HalfOpen);

    // While the probe is out, everyone else still fails fast (exactly one probe).
    for _ in 0..5 {
        let err = bounded(client.get(&url).send()).await.unwrap_err();
        assert_eq!(err.name(), "service_unavailable");
        assert_eq!(err.retry_after(), Some(Duration::ZERO));
    }
    assert_eq!(server.hits("/dep"), 4);

    gate.open();
    let response = bounded(probe).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(state(&client, &server.host_key()), BreakerState::Closed);
    for _ in 0..5 {
        assert_eq!(get_status(&client, &url).await, 200);
    }
    assert_eq!(server.hits("/dep"), 9);
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    let mut changes = client.breakers().unwrap().subscribe();
    let url = server.url("/dep");
    server.script("/dep", [Reply::status(502)]);
    for _ in 0..3 {
        get_status(&client, &url).await;
    }
    clock.advance(OPEN_FOR);
    assert_eq!(get_status(&client, &url).await, 502, "the probe");
    assert_eq!(server.hits("/dep"), 4);
    assert_eq!(state(&client, &server.host_key()), BreakerState::Open);
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(OPEN_FOR));
    assert_eq!(server.hits("/dep"), 4);

    let seen: Vec<(BreakerState, BreakerState, TransitionReason)> =
        std::iter::from_fn(|| changes.try_recv().ok())
            .map(|c| {
                assert_eq!(c.key.as_deref(), Some(server.host_key().as_str()));
                (c.from, c.to, c.reason)
            })
            .collect();
    assert_eq!(
        seen,
        [
            (
                BreakerState::Closed,
                BreakerState::Open,
                TransitionReason::FailureCount
            ),
            (
                BreakerState::Open,
                BreakerState::HalfOpen,
                TransitionReason::TimeoutElapsed
            ),
            (
                BreakerState::HalfOpen,
                BreakerState::Open,
                TransitionReason::ProbeFailed
            ),
        ]
    );
}

#[tokio::test]
async fn breakers_are_kept_per_host_and_port() {
    let down = Server::start().await;
    let up = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    down.script("/x", [Reply::status(500)]);
    up.script("/x", [Reply::ok("fine")]);

    for _ in 0..3 {
        get_status(&client, &down.url("/x")).await;
    }
    assert_eq!(
        bounded(client.get(&down.url("/x")).send())
            .await
            .unwrap_err()
            .name(),
        "service_unavailable"
    );
    // The other server on the same host, another port, is not affected.
    for _ in 0..3 {
        assert_eq!(get_status(&client, &up.url("/x")).await, 200);
    }
    assert_eq!((down.hits("/x"), up.hits("/x")), (3, 3));
    assert_eq!(state(&client, &down.host_key()), BreakerState::Open);
    assert_eq!(state(&client, &up.host_key()), BreakerState::Closed);
}

#[tokio::test]
async fn a_chosen_breaker_key_is_shared_across_hosts() {
    let a = Server::start().await;
    let b = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .no_retry()
        .circuit_breaker(three_strikes())
        .circuit_breaker_key("payments")
        .build()
        .unwrap();
    a.script("/x", [Reply::status(500)]);
    b.script("/x", [Reply::ok("fine")]);

    for _ in 0..3 {
        get_status(&client, &a.url("/x")).await;
    }
    assert_eq!(state(&client, "payments"), BreakerState::Open);
    assert!(client.breakers().unwrap().state(&a.host_key()).is_none());

    let err = bounded(client.get(&b.url("/x")).send()).await.unwrap_err();
    assert_eq!(err.name(), "service_unavailable");
    assert_eq!(b.hits("/x"), 0, "one breaker for the whole client");

    // A request can name its own breaker.
    let response = bounded(
        client
            .get(&b.url("/x"))
            .circuit_breaker_key("reporting")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(b.hits("/x"), 1);
    assert_eq!(state(&client, "reporting"), BreakerState::Closed);
}

#[tokio::test]
async fn a_logical_request_records_one_outcome_after_its_retries() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.circuit_breaker(three_strikes()).build().unwrap();
    server.script("/down", [Reply::status(503)]);
    let url = server.url("/down");

    let response = drive(&clock, &mut events, client.get(&url).send())
        .await
        .unwrap();
    assert_eq!(response.attempts(), 4);
    let snapshot = client
        .breakers()
        .unwrap()
        .state(&server.host_key())
        .unwrap();
    assert_eq!((snapshot.failures, snapshot.calls), (1, 1));
    assert_eq!(
        snapshot.state,
        BreakerState::Closed,
        "4 attempts, 1 failure"
    );

    // A request that succeeds on retry is one success.
    server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
    drive(
        &clock,
        &mut events,
        client.get(&server.url("/flaky")).send(),
    )
    .await
    .unwrap();
    let snapshot = client
        .breakers()
        .unwrap()
        .state(&server.host_key())
        .unwrap();
    assert_eq!((snapshot.failures, snapshot.successes), (1, 1));

    for _ in 0..2 {
        drive(&clock, &mut events, client.get(&url).send())
            .await
            .unwrap();
    }
    assert_eq!(state(&client, &server.host_key()), BreakerState::Open);
    assert_eq!(server.hits("/down"), 12);
}

#[tokio::test]
async fn transport_failures_count_and_client_errors_do_not() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    server.script("/missing", [Reply::status(404)]);
    server.script("/reset", [Reply::reset()]);

    for _ in 0..10 {
        assert_eq!(get_status(&client, &server.url("/missing")).await, 404);
    }
    let snapshot = client
        .breakers()
        .unwrap()
        .state(&server.host_key())
        .unwrap();
    assert_eq!(
        (snapshot.state, snapshot.failures),
        (BreakerState::Closed, 0)
    );

    for _ in 0..3 {
        let err = bounded(client.get(&server.url("/reset")).send())
            .await
            .unwrap_err();
        assert_eq!(err.name(), "connection_reset");
    }
    assert_eq!(state(&client, &server.host_key()), BreakerState::Open);
}

#[tokio::test]
async fn which_statuses_count_is_configurable() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .no_retry()
        .circuit_breaker(three_strikes())
        .breaker_failure_status(|status| status == http::StatusCode::NOT_FOUND)
        .build()
        .unwrap();
    server.script("/500", [Reply::status(500)]);
    server.script("/404", [Reply::status(404)]);

    for _ in 0..5 {
        get_status(&client, &server.url("/500")).await;
    }
    assert_eq!(state(&client, &server.host_key()), BreakerState::Closed);
    for _ in 0..3 {
        get_status(&client, &server.url("/404")).await;
    }
    assert_eq!(state(&client, &server.host_key()), BreakerState::Open);
}

#[tokio::test]
async fn rate_limit_rejections_never_trip_the_breaker() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .no_retry()
        .circuit_breaker(three_strikes())
        .rate_limit(
            Gcra::new(Quota::per_minute(NonZeroU32::new(1).unwrap())),
            Strategy::Error,
        )
        .build()
        .unwrap();
    server.script("/x", [Reply::ok("ok")]);

    assert_eq!(get_status(&client, &server.url("/x")).await, 200);
    for _ in 0..10 {
        let err = bounded(client.get(&server.url("/x")).send())
            .await
            .unwrap_err();
        assert_eq!(err.name(), "too_many_requests");
    }
    let snapshot = client
        .breakers()
        .unwrap()
        .state(&server.host_key())
        .unwrap();
    assert_eq!(
        (snapshot.state, snapshot.calls, snapshot.failures),
        (BreakerState::Closed, 1, 0)
    );
}

#[tokio::test]
async fn breakers_can_be_forced_open_and_closed() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    server.script("/x", [Reply::ok("ok")]);
    let breaker = client.breakers().unwrap().get(&server.host_key());

    breaker.force_open();
    clock.advance(Duration::from_secs(3_600));
    let err = bounded(client.get(&server.url("/x")).send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "service_unavailable");
    assert_eq!(
        server.hits("/x"),
        0,
        "forced open stays open past the timeout"
    );

    breaker.force_close();
    assert_eq!(get_status(&client, &server.url("/x")).await, 200);
    assert_eq!(server.hits("/x"), 1);
}

#[tokio::test]
async fn without_a_breaker_failures_keep_reaching_the_server() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder.no_retry().no_circuit_breaker().build().unwrap();
    server.script("/fail", [Reply::status(500)]);
    for _ in 0..20 {
        assert_eq!(get_status(&client, &server.url("/fail")).await, 500);
    }
    assert_eq!(server.hits("/fail"), 20);
    assert!(client.breakers().is_none());
}
