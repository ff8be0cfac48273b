//! Server feedback against a real local server: a server that says its quota is spent
//! receives nothing before its reset, whatever header form it says it in; a positive
//! budget is shared by concurrent requests; the error strategy refuses at once; a 429
//! holds the whole host; the gate can be turned off; and it is keyed like the limiter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpower::core::clock::ManualClock;
use httpower::core::rate::{Gcra, Quota, Strategy};
use httpower::{Client, ClientEvent, Reason};
use support::{bounded, test_client, Events, Gate, Reply, Server};

type Request = tokio::task::JoinHandle<Result<httpower::Response, httpower::Error>>;

/// Spawns a GET of `url` and lets it run until it parks (on the manual clock) or sends.
async fn spawn_get(client: &Client, url: String) -> Request {
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.get(&url).send().await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    request
}

/// The server-feedback waits reported, as `(key, waited)`.
fn server_waits(events: &Events) -> Vec<(String, Duration)> {
    events
        .all()
        .into_iter()
        .filter_map(|event| match event {
            ClientEvent::RateLimitWait {
                key,
                waited,
                server: true,
                ..
            } => Some((key.to_string(), waited)),
            _ => None,
        })
        .collect()
}

/// A GET of `/api` on `server` that must succeed at once.
async fn get_ok(client: &Client, server: &Server) {
    let response = bounded(client.get(&server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The first GET of `/api` is answered 200 with `headers` (an exhausted quota that
/// resets within `earliest..=latest`), the next one plainly. Checks that the second
/// request reaches the server only once the clock has passed the reset.
async fn held_until_the_reset(
    headers: impl Fn() -> Vec<(&'static str, String)> + Send + Sync + 'static,
    earliest: Duration,
    latest: Duration,
) {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script_fn("/api", move |hit| {
        if hit == 1 {
            headers()
                .iter()
                .fold(Reply::ok("first"), |reply, (name, value)| {
                    reply.header(name, value)
                })
        } else {
            Reply::ok("second")
        }
    });
    let url = server.url("/api");

    // The first request goes at once; its answer says the quota is spent.
    let response = bounded(client.get(&url).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/api"), 1);

    let second = spawn_get(&client, url).await;
    server.assert_stays_at("/api", 1).await;
    clock.advance(earliest - Duration::from_millis(1));
    server.assert_stays_at("/api", 1).await;
    assert!(!second.is_finished());
    clock.advance(latest - earliest + Duration::from_millis(1));
    server.wait_hits("/api", 2).await;
    let response = bounded(second).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(bounded(response.text()).await.unwrap(), "second");
    assert_eq!(server.hits("/api"), 2);

    let waits = server_waits(&events);
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0].0, server.host_key());
    assert!(
        waits[0].1 >= earliest && waits[0].1 <= latest,
        "waited {:?}",
        waits[0].1
    );
}

#[tokio::test]
async fn ratelimit_dictionary_remaining_zero_holds_until_the_reset() {
    held_until_the_reset(
        || vec![("ratelimit", "limit=5, remaining=0, reset=10".to_owned())],
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn ietf_structured_remaining_zero_holds_until_the_reset() {
    held_until_the_reset(
        || {
            vec![
                ("ratelimit", "\"default\";r=0;t=10".to_owned()),
                ("ratelimit-policy", "\"default\";q=5;w=10".to_owned()),
            ]
        },
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn x_ratelimit_with_an_epoch_reset_holds_until_the_reset() {
    // The reset is a Unix time with one-second resolution, read a moment after it was
    // written: the wait is ten seconds less under a second.
    held_until_the_reset(
        || {
            vec![
                ("x-ratelimit-limit", "5".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", (unix_now() + 10).to_string()),
            ]
        },
        Duration::from_secs(9),
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn x_ratelimit_with_a_delta_reset_holds_until_the_reset() {
    held_until_the_reset(
        || {
            vec![
                ("x-ratelimit-limit", "5".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", "10".to_owned()),
            ]
        },
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_remaining_budget_is_shared_by_concurrent_requests() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder.build().unwrap();
    let gate = Gate::new();
    let held = gate.clone();
    server.script_fn("/api", move |hit| match hit {
        1 => Reply::ok("first").header("ratelimit", "limit=5, remaining=2, reset=10"),
        // The two admitted requests are held at the server, so that all three
        // concurrent requests are decided on the budget the first answer gave.
        2 | 3 => Reply::ok("admitted").after(&held),
        _ => Reply::ok("after the reset"),
    });
    let url = server.url("/api");

    bounded(client.get(&url).send()).await.unwrap();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..3 {
        let client = client.clone();
        let url = url.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let result = client.get(&url).send().await;
            let _ = done_tx.send(result);
        });
    }
    // Two go at once, the third waits for the reset.
    server.wait_hits("/api", 3).await;
    server.assert_stays_at("/api", 3).await;

    gate.open();
    for _ in 0..2 {
        let response = bounded(done.recv()).await.unwrap().unwrap();
        assert_eq!(bounded(response.text()).await.unwrap(), "admitted");
    }
    server.assert_stays_at("/api", 3).await;
    assert!(done.try_recv().is_err());

    clock.advance(Duration::from_secs(10));
    let response = bounded(done.recv()).await.unwrap().unwrap();
    assert_eq!(bounded(response.text()).await.unwrap(), "after the reset");
    assert_eq!(server.hits("/api"), 4);
    assert_eq!(
        server_waits(&events),
        [(server.host_key(), Duration::from_secs(10))]
    );
}

#[tokio::test]
async fn a_remaining_budget_lets_sequential_requests_through_then_holds() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder.build().unwrap();
    // A server that counts down its quota of 3 in a 10 s window.
    server.script_fn("/api", |hit| {
        let remaining = 3usize.saturating_sub(hit);
        Reply::ok("ok").header(
            "ratelimit",
            &format!("limit=3, remaining={remaining}, reset=10"),
        )
    });
    let url = server.url("/api");

    for n in 1..=3 {
        bounded(client.get(&url).send()).await.unwrap();
        assert_eq!(server.hits("/api"), n);
    }
    let fourth = spawn_get(&client, url).await;
    server.assert_stays_at("/api", 3).await;
    clock.advance(Duration::from_secs(10));
    assert_eq!(bounded(fourth).await.unwrap().unwrap().status(), 200);
    assert_eq!(server.hits("/api"), 4);
}

#[tokio::test]
async fn the_error_strategy_refuses_at_once_with_the_reset() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder
        .rate_limit(
            Gcra::new(Quota::per_second(NonZeroU32::new(1_000).unwrap())),
            Strategy::Error,
        )
        .build()
        .unwrap();
    server.script_fn("/api", |hit| {
        if hit == 1 {
            Reply::ok("first").header("ratelimit", "limit=5, remaining=0, reset=10")
        } else {
            Reply::ok("second")
        }
    });
    let url = server.url("/api");

    bounded(client.get(&url).send()).await.unwrap();
    // Nothing advances the clock: a wait would hang here.
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.name(), "too_many_requests");
    assert_eq!(
        err.reason(),
        &Reason::TooManyRequests {
            retry_after: Duration::from_secs(10)
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(err.attempts(), 0);
    assert_eq!(server.hits("/api"), 1);
    let limited: Vec<(String, Duration)> = events
        .all()
        .into_iter()
        .filter_map(|event| match event {
            ClientEvent::RateLimited {
                key, retry_after, ..
            } => Some((key.to_string(), retry_after)),
            _ => None,
        })
        .collect();
    assert_eq!(limited, [(server.host_key(), Duration::from_secs(10))]);

    // Part of the way, the remaining wait; at the reset, the request goes.
    clock.advance(Duration::from_secs(4));
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(6)));
    clock.advance(Duration::from_secs(6));
    let response = bounded(client.get(&url).send()).await.unwrap();
    assert_eq!(bounded(response.text()).await.unwrap(), "second");
    assert_eq!(server.hits("/api"), 2);
    assert!(server_waits(&events).is_empty());
}

#[tokio::test]
async fn a_429_holds_every_request_to_the_host_until_retry_after() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script(
        "/busy",
        [
            Reply::status(429).header("retry-after", "5"),
            Reply::ok("retried"),
        ],
    );
    server.script("/other", [Reply::ok("other")]);

    let first = spawn_get(&client, server.url("/busy")).await;
    let retry = events.next_retry().await;
    assert_eq!(retry.delay, Duration::from_secs(5));
    assert!(retry.from_retry_after);

    // Another request to the same host, on another path, is held as well.
    let other = spawn_get(&client, server.url("/other")).await;
    server.assert_stays_at("/other", 0).await;
    clock.advance(Duration::from_millis(4_999));
    server.assert_stays_at("/other", 0).await;
    server.assert_stays_at("/busy", 1).await;

    clock.advance(Duration::from_millis(1));
    let response = bounded(first).await.unwrap().unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    let response = bounded(other).await.unwrap().unwrap();
    assert_eq!(bounded(response.text()).await.unwrap(), "other");
    assert_eq!((server.hits("/busy"), server.hits("/other")), (2, 1));
    assert_eq!(
        server_waits(&events),
        [(server.host_key(), Duration::from_secs(5))]
    );
}

#[tokio::test]
async fn feedback_off_ignores_the_headers() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder.server_feedback(false).build().unwrap();
    server.script(
        "/api",
        [Reply::ok("ok")
            .header("ratelimit", "limit=5, remaining=0, reset=10")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "10")],
    );
    server.script(
        "/busy",
        [
            Reply::status(429).header("retry-after", "30"),
            Reply::ok("ok"),
        ],
    );
    let url = server.url("/api");

    // The clock never moves: every request goes at once.
    for n in 1..=3 {
        assert_eq!(
            bounded(client.get(&url).send()).await.unwrap().status(),
            200
        );
        assert_eq!(server.hits("/api"), n);
    }
    // A 429 is retried after its Retry-After (that is the retry policy, not the gate),
    // but other requests to the host are not held meanwhile.
    let busy = spawn_get(&client, server.url("/busy")).await;
    assert_eq!(server.hits("/busy"), 1);
    assert_eq!(
        bounded(client.get(&url).send()).await.unwrap().status(),
        200
    );
    assert_eq!(server.hits("/api"), 4);
    clock.advance(Duration::from_secs(30));
    assert_eq!(bounded(busy).await.unwrap().unwrap().status(), 200);
    assert!(server_waits(&events).is_empty());
}

#[tokio::test]
async fn feedback_is_kept_per_host_by_default() {
    let a = Server::start().await;
    let b = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder.build().unwrap();
    for server in [&a, &b] {
        server.script_fn("/api", |hit| {
            let remaining = if hit == 1 { 0 } else { 5 };
            Reply::ok("ok").header(
                "ratelimit",
                &format!("limit=5, remaining={remaining}, reset=10"),
            )
        });
    }

    get_ok(&client, &a).await;
    // A's spent quota does not hold B (another host:port).
    get_ok(&client, &b).await;
    assert_eq!(b.hits("/api"), 1);
    let held_a = spawn_get(&client, a.url("/api")).await;
    a.assert_stays_at("/api", 1).await;
    clock.advance(Duration::from_secs(10));
    assert_eq!(bounded(held_a).await.unwrap().unwrap().status(), 200);
    assert_eq!(a.hits("/api"), 2);
}

#[tokio::test]
async fn a_shared_rate_limit_key_shares_the_feedback() {
    let a = Server::start().await;
    let b = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder.rate_limit_key("shared").build().unwrap();
    a.script(
        "/api",
        [Reply::ok("ok").header("ratelimit", "limit=5, remaining=0, reset=10")],
    );
    b.script("/api", [Reply::ok("ok")]);

    get_ok(&client, &a).await;
    // B is another host, but the same key: held until A's reset.
    let held_b = spawn_get(&client, b.url("/api")).await;
    b.assert_stays_at("/api", 0).await;
    clock.advance(Duration::from_secs(10));
    assert_eq!(bounded(held_b).await.unwrap().unwrap().status(), 200);
    assert_eq!(b.hits("/api"), 1);
    assert_eq!(
        server_waits(&events),
        [("shared".to_owned(), Duration::from_secs(10))]
    );
}

#[tokio::test]
async fn a_429_with_only_a_ratelimit_reset_is_retried_at_the_reset() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    server.script(
        "/busy",
        [
            Reply::status(429).header("ratelimit", "limit=5, remaining=0, reset=10"),
            Reply::ok("done"),
        ],
    );

    let request = spawn_get(&client, server.url("/busy")).await;
    // No Retry-After: the retry is announced after the ordinary backoff...
    let retry = events.next_retry().await;
    assert!(!retry.from_retry_after);
    clock.advance(retry.delay);
    // ...but the server said when its window resets, and the retry waits for that.
    server.assert_stays_at("/busy", 1).await;
    clock.advance(Duration::from_secs(10) - retry.delay - Duration::from_millis(1));
    server.assert_stays_at("/busy", 1).await;
    clock.advance(Duration::from_millis(1));
    let response = bounded(request).await.unwrap().unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    assert_eq!(
        server_waits(&events),
        [(server.host_key(), Duration::from_secs(10) - retry.delay)]
    );
}

#[tokio::test]
async fn a_retry_after_on_a_success_is_not_a_limit() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder.build().unwrap();
    // A polling hint ("come back in 30 s for the result"), not a throttle.
    server.script("/job", [Reply::status(202).header("retry-after", "30")]);
    for n in 1..=3 {
        let response = bounded(client.get(&server.url("/job")).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        assert_eq!(server.hits("/job"), n);
    }
    assert!(server_waits(&events).is_empty());
}

#[tokio::test]
async fn a_reset_beyond_the_limiters_max_wait_fails_at_once() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder
        .rate_limit(
            Gcra::new(Quota::per_second(NonZeroU32::new(1_000).unwrap())),
            Strategy::Wait {
                max_wait: Duration::from_secs(5),
            },
        )
        .build()
        .unwrap();
    server.script_fn("/api", |hit| match hit {
        1 => Reply::ok("first").header("ratelimit", "limit=5, remaining=0, reset=10"),
        _ => Reply::ok("second"),
    });
    let url = server.url("/api");

    bounded(client.get(&url).send()).await.unwrap();
    // Ten seconds is more than the five the limiter may wait: refused without sleeping.
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::RateLimitWaitTimeout {
            retry_after: Duration::from_secs(10)
        }
    );
    assert_eq!(err.attempts(), 0);
    assert_eq!(server.hits("/api"), 1);

    // Within the limit, it waits instead.
    clock.advance(Duration::from_secs(6));
    let held = spawn_get(&client, url).await;
    server.assert_stays_at("/api", 1).await;
    clock.advance(Duration::from_secs(4));
    assert_eq!(bounded(held).await.unwrap().unwrap().status(), 200);
    assert_eq!(server.hits("/api"), 2);
}
