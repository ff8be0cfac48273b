//! Retry rules against a real local server: which statuses and failures are retried,
//! for which methods, how many times, and what the caller gets when retrying stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use httpower::core::clock::ManualClock;
use httpower::core::retry::{Jitter, RetryBudget, RetryPolicy};
use httpower::{Reason, TimeoutPhase};
use support::{bounded, closed_port, drive, test_client, Reply, Server, RETRY_DELAY};

#[tokio::test]
async fn transient_statuses_are_retried_for_get() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();

    for code in [408u16, 429, 500, 502, 503, 504] {
        let path = format!("/status/{code}");
        server.script(&path, [Reply::status(code), Reply::ok("recovered")]);
        let response = drive(&clock, &mut events, client.get(&server.url(&path)).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{code} should have been retried");
        assert_eq!(response.attempts(), 2, "{code}");
        assert_eq!(server.hits(&path), 2, "{code}");
        assert_eq!(response.text().await.unwrap(), "recovered");
    }
    let reasons: Vec<String> = events.retries().into_iter().map(|r| r.reason).collect();
    assert_eq!(reasons, ["408", "429", "500", "502", "503", "504"]);
    assert!(events
        .retries()
        .iter()
        .all(|r| r.attempt == 1 && r.delay == RETRY_DELAY && !r.from_retry_after));
}

#[tokio::test]
async fn other_statuses_are_not_retried() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();

    for code in [400u16, 401, 404, 409, 422, 501] {
        let path = format!("/status/{code}");
        server.script(&path, [Reply::status(code), Reply::ok("never sent")]);
        let response = drive(&clock, &mut events, client.get(&server.url(&path)).send())
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            code,
            "a {code} is a response, not an error"
        );
        assert_eq!(response.attempts(), 1, "{code}");
        assert_eq!(server.hits(&path), 1, "{code} must not be retried");
    }
    assert!(events.retries().is_empty());
}

#[tokio::test]
async fn retried_statuses_are_configurable() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.retry_on_status([404]).build().unwrap();
    server.script("/404", [Reply::status(404), Reply::ok("found")]);
    server.script("/503", [Reply::status(503), Reply::ok("found")]);

    let response = drive(&clock, &mut events, client.get(&server.url("/404")).send())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    let response = drive(&clock, &mut events, client.get(&server.url("/503")).send())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));
    assert_eq!(server.hits("/503"), 1, "503 is not in the configured set");
}

#[tokio::test]
async fn post_and_patch_are_not_retried_by_default() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/post", [Reply::status(503), Reply::ok("second")]);
    server.script("/patch", [Reply::status(503), Reply::ok("second")]);

    let response = drive(
        &clock,
        &mut events,
        client.post(&server.url("/post")).body("charge").send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.attempts(), 1);
    assert_eq!(
        server.hits("/post"),
        1,
        "a POST must not be repeated on its own"
    );

    let response = drive(
        &clock,
        &mut events,
        client.patch(&server.url("/patch")).body("x").send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(server.hits("/patch"), 1);
    assert!(events.retries().is_empty());
}

#[tokio::test]
async fn post_is_retried_when_the_caller_says_it_is_safe() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/per-request", [Reply::status(503), Reply::ok("ok")]);

    let response = drive(
        &clock,
        &mut events,
        client
            .post(&server.url("/per-request"))
            .body("charge")
            .retry_safe(true)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    let bodies: Vec<_> = server
        .requests("/per-request")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, ["charge", "charge"], "the body is replayed as is");

    // The same, set once on the client.
    let (builder, mut events) = test_client(&clock);
    let client = builder.retry_safe(true).build().unwrap();
    server.script("/client-wide", [Reply::status(502), Reply::ok("ok")]);
    let response = drive(
        &clock,
        &mut events,
        client.post(&server.url("/client-wide")).send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));

    // A request can still opt out of a client-wide `retry_safe`.
    server.script("/opt-out", [Reply::status(502), Reply::ok("ok")]);
    let response = drive(
        &clock,
        &mut events,
        client
            .post(&server.url("/opt-out"))
            .retry_safe(false)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(server.hits("/opt-out"), 1);
}

#[tokio::test]
async fn post_with_an_idempotency_key_is_retried_with_the_same_key() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/builder", [Reply::status(500), Reply::ok("ok")]);
    server.script("/header", [Reply::status(500), Reply::ok("ok")]);

    let response = drive(
        &clock,
        &mut events,
        client
            .post(&server.url("/builder"))
            .idempotency_key("key-1")
            .json(&serde_json::json!({"amount": 10}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    let keys: Vec<_> = server
        .requests("/builder")
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["key-1", "key-1"]);

    // A header set by hand (any case) counts the same.
    let response = drive(
        &clock,
        &mut events,
        client
            .post(&server.url("/header"))
            .header("Idempotency-Key", "key-2")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
}

#[tokio::test]
async fn idempotent_methods_are_retried() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/r", [Reply::status(503), Reply::ok("ok")]);

    let requests = [
        ("PUT", client.put(&server.url("/r")).body("v")),
        ("DELETE", client.delete(&server.url("/r"))),
        ("HEAD", client.head(&server.url("/r"))),
        ("OPTIONS", client.options(&server.url("/r"))),
    ];
    for (i, (method, request)) in requests.into_iter().enumerate() {
        // Each request starts from the 503 again.
        server.script("/r", [Reply::status(503), Reply::ok("ok")]);
        let before = server.hits("/r");
        let response = drive(&clock, &mut events, request.send()).await.unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(response.attempts(), 2, "{method}");
        assert_eq!(server.hits("/r") - before, 2, "{method} (request {i})");
    }
    let methods: Vec<String> = server
        .requests("/r")
        .iter()
        .map(|r| r.method.to_string())
        .collect();
    assert_eq!(
        methods,
        ["PUT", "PUT", "DELETE", "DELETE", "HEAD", "HEAD", "OPTIONS", "OPTIONS"]
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_post() {
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}/pay");

    let request = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.post(&url).body("charge").send().await }
    });
    // The first attempt is refused: nothing was sent, so even a POST may go again.
    let retry = events.next_retry().await;
    assert_eq!((retry.attempt, retry.reason.as_str()), (1, "connect"));
    // The service comes up on that port before the retry.
    let server = Server::start_on(port).await;
    server.script("/pay", [Reply::ok("paid")]);
    clock.advance(retry.delay);
    let response = bounded(request).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert_eq!(server.hits("/pay"), 1, "the POST reached the server once");
}

#[tokio::test]
async fn refused_connections_exhaust_the_retries() {
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    let url = format!("http://127.0.0.1:{}/pay", closed_port().await);

    let err = drive(&clock, &mut events, client.post(&url).send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "retries_exhausted");
    assert_eq!(err.attempts(), 4);
    match err.reason() {
        Reason::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert_eq!(**last, Reason::Connect);
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert_eq!(err.reason().root(), &Reason::Connect);
    assert_eq!(err.last_status(), None);
    assert_eq!(events.retries().len(), 3);
}

#[tokio::test]
async fn exhausted_retries_on_a_status_return_the_last_response() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script_fn("/down", |hit| {
        Reply::status(503).body(format!("attempt {hit}"))
    });

    let response = drive(&clock, &mut events, client.get(&server.url("/down")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.attempts(), 4, "1 attempt + max_retries (3)");
    assert_eq!(server.hits("/down"), 4);
    assert_eq!(response.text().await.unwrap(), "attempt 4", "the last one");
    let attempts: Vec<u32> = events.retries().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
}

#[tokio::test]
async fn exhausted_retries_on_resets_are_an_error_with_the_attempts() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/reset", [Reply::reset()]);

    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/reset")).send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "retries_exhausted");
    assert_eq!(err.attempts(), 4);
    assert_eq!(
        err.reason(),
        &Reason::RetriesExhausted {
            attempts: 4,
            last: Box::new(Reason::ConnectionReset)
        }
    );
    assert!(!err.is_local());
    assert_eq!(
        server.hits("/reset"),
        4,
        "one hit per attempt, no hidden retries"
    );
    assert!(events
        .retries()
        .iter()
        .all(|r| r.reason == "connection_reset"));
}

#[tokio::test]
async fn a_reset_after_sending_a_post_is_not_retried() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/pay", [Reply::reset(), Reply::ok("paid twice")]);

    let err = drive(
        &clock,
        &mut events,
        client.post(&server.url("/pay")).body("charge").send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), &Reason::ConnectionReset);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.hits("/pay"), 1, "the server may have acted on it");
}

#[tokio::test]
async fn the_last_status_survives_a_later_transport_failure() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/flaky", [Reply::status(502), Reply::reset()]);

    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/flaky")).send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "retries_exhausted");
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.last_status(), Some(http::StatusCode::BAD_GATEWAY));
    assert_eq!(server.hits("/flaky"), 4);
}

#[tokio::test]
async fn max_retries_can_be_lowered_per_request() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/down", [Reply::status(503)]);

    let response = drive(
        &clock,
        &mut events,
        client.get(&server.url("/down")).max_retries(1).send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 2));
    assert_eq!(server.hits("/down"), 2);

    let response = drive(
        &clock,
        &mut events,
        client.get(&server.url("/down")).max_retries(0).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.attempts(), 1);
    assert_eq!(server.hits("/down"), 3);

    // And turned off for the whole client.
    let (builder, mut events) = test_client(&clock);
    let client = builder.no_retry().build().unwrap();
    let response = drive(&clock, &mut events, client.get(&server.url("/down")).send())
        .await
        .unwrap();
    assert_eq!(response.attempts(), 1);
    assert_eq!(server.hits("/down"), 4);
}

#[tokio::test]
async fn backoff_grows_exponentially_up_to_the_cap() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let policy = RetryPolicy::builder()
        .max_retries(5)
        .base_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(500))
        .jitter(Jitter::None)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (builder, mut events) = support::record_events(
        httpower::Client::builder()
            .clock(clock.clone())
            .retry(policy),
    );
    let client = builder.build().unwrap();
    server.script("/down", [Reply::status(503)]);

    let response = drive(&clock, &mut events, client.get(&server.url("/down")).send())
        .await
        .unwrap();
    assert_eq!(response.attempts(), 6);
    let delays: Vec<u64> = events
        .retries()
        .iter()
        .map(|r| r.delay.as_millis() as u64)
        .collect();
    assert_eq!(delays, [100, 200, 400, 500, 500]);
}

#[tokio::test]
async fn a_streaming_body_is_not_silently_left_unretried() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/upload", [Reply::status(503), Reply::ok("stored")]);

    let err = drive(
        &clock,
        &mut events,
        client
            .put(&server.url("/upload"))
            .body_stream(reqwest::Body::from("streamed"))
            .send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "body_not_replayable");
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        err.last_status(),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(server.hits("/upload"), 1);
    assert_eq!(server.requests("/upload")[0].body, "streamed");
}

#[tokio::test]
async fn a_total_timeout_shorter_than_the_backoff_starts_no_retry() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let policy = RetryPolicy::builder()
        .base_delay(Duration::from_secs(10))
        .jitter(Jitter::None)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (builder, events) = support::record_events(
        httpower::Client::builder()
            .clock(clock.clone())
            .retry(policy)
            .total_timeout(Duration::from_secs(5)),
    );
    let client = builder.build().unwrap();
    server.script("/status", [Reply::status(503), Reply::ok("too late")]);
    server.script("/reset", [Reply::reset(), Reply::ok("too late")]);

    // A status: the response itself, after one attempt.
    let response = bounded(client.get(&server.url("/status")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.attempts(), 1);
    assert_eq!(server.hits("/status"), 1);

    // A transport failure: an error saying retrying stopped after one attempt.
    let err = bounded(client.get(&server.url("/reset")).send())
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.reason().root(), &Reason::ConnectionReset);
    assert_eq!(server.hits("/reset"), 1);
    assert!(events.retries().is_empty(), "no retry was started");
}

#[tokio::test]
async fn a_hanging_server_ends_at_the_total_timeout() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .total_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    server.script("/hang", [Reply::hang()]);

    let request = tokio::spawn({
        let client = client.clone();
        let url = server.url("/hang");
        async move { client.get(&url).send().await }
    });
    server.wait_hits("/hang", 1).await;
    clock.advance(Duration::from_millis(4_999));
    tokio::task::yield_now().await;
    assert!(!request.is_finished(), "not before the deadline");
    clock.advance(Duration::from_millis(1));
    let err = bounded(request).await.unwrap().unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::Timeout {
            phase: TimeoutPhase::Total
        }
    );
    assert!(err.is_timeout());
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.hits("/hang"), 1);
}

#[tokio::test]
async fn a_per_request_timeout_replaces_the_clients() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script("/hang", [Reply::hang()]);

    let request = tokio::spawn({
        let client = client.clone();
        let url = server.url("/hang");
        async move {
            client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
        }
    });
    server.wait_hits("/hang", 1).await;
    clock.advance(Duration::from_secs(2));
    let err = bounded(request).await.unwrap().unwrap_err();
    assert_eq!(err.to_string().split(' ').next(), Some("total"));
    assert_eq!(
        err.reason(),
        &Reason::Timeout {
            phase: TimeoutPhase::Total
        }
    );
}

#[tokio::test]
async fn an_attempt_timeout_is_retried() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    server.script("/slow-once", [Reply::hang(), Reply::ok("fast now")]);

    let request = tokio::spawn({
        let client = client.clone();
        let url = server.url("/slow-once");
        async move { client.get(&url).send().await }
    });
    server.wait_hits("/slow-once", 1).await;
    clock.advance(Duration::from_secs(2));
    let retry = events.next_retry().await;
    assert_eq!(retry.reason, "attempt_timeout");
    clock.advance(retry.delay);
    let response = bounded(request).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert_eq!(server.hits("/slow-once"), 2);
}

#[tokio::test]
async fn an_empty_retry_budget_stops_retries() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    // No ratio, a floor of one retry per second over a two-second window: two retries.
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(1)
        .ttl(Duration::from_secs(2))
        .build(clock.clone())
        .unwrap();
    let policy = RetryPolicy::builder()
        .base_delay(RETRY_DELAY)
        .max_delay(RETRY_DELAY)
        .jitter(Jitter::None)
        .budget(budget.clone())
        .build()
        .unwrap();
    let (builder, mut events) = support::record_events(
        httpower::Client::builder()
            .clock(clock.clone())
            .retry(policy)
            .no_circuit_breaker(),
    );
    let client = builder.build().unwrap();
    server.script("/reset", [Reply::reset()]);
    server.script("/503", [Reply::status(503)]);

    // Two retries granted, the third refused.
    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/reset")).send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "retry_budget_exhausted");
    assert_eq!(err.reason(), &Reason::RetryBudgetExhausted);
    assert_eq!(err.attempts(), 3);
    assert_eq!(server.hits("/reset"), 3);
    assert_eq!(budget.remaining(), 0);

    // A clone shares the budget: its failure is not retried at all.
    let clone = client.clone();
    let err = drive(&clock, &mut events, clone.get(&server.url("/reset")).send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "retry_budget_exhausted");
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.hits("/reset"), 4);

    // A retryable status is then returned as it is, after one attempt.
    let response = drive(&clock, &mut events, client.get(&server.url("/503")).send())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));
    assert_eq!(server.hits("/503"), 1);

    // Once the window has passed, the floor is back.
    clock.advance(Duration::from_secs(3));
    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/reset")).send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(server.hits("/reset"), 7);
}

#[tokio::test]
async fn each_retry_is_reported_with_its_attempt_reason_and_delay() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script(
        "/mixed",
        [Reply::status(500), Reply::reset(), Reply::ok("finally")],
    );

    let response = drive(
        &clock,
        &mut events,
        client.get(&server.url("/mixed")).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.attempts(), 3);
    let seen: Vec<(u32, String, Duration)> = events
        .retries()
        .into_iter()
        .map(|r| (r.attempt, r.reason, r.delay))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "500".to_owned(), RETRY_DELAY),
            (2, "connection_reset".to_owned(), RETRY_DELAY)
        ]
    );
    for event in events.all() {
        assert_eq!(event.request().unwrap().method, http::Method::GET);
        assert!(event.request().unwrap().correlation_id.starts_with("req_"));
    }
}
