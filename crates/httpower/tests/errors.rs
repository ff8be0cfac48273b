//! Errors a caller can act on: invalid input refused before anything is sent (CR/LF in
//! headers, two bodies, bad URLs), stable reason names, and the accessors (`attempts`,
//! `last_status`, `retry_after`, `url`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use http::StatusCode;
use httpower::core::clock::ManualClock;
use httpower::{Client, Error, Reason, TimeoutPhase};
use support::{bounded, test_client, Reply, Server};

#[tokio::test]
async fn a_header_value_with_crlf_is_refused_naming_the_header() {
    let server = Server::start().await;
    server.script("/x", [Reply::ok("ok")]);
    let client = Client::new().unwrap();

    for value in ["a\r\nx-injected: 1", "a\nx-injected: 1", "a\rb", "a\0b"] {
        let err = bounded(
            client
                .get(&server.url("/x"))
                .header("x-custom", value)
                .send(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.name(), "invalid_header", "{value:?}");
        assert_eq!(
            err.reason(),
            &Reason::InvalidHeader {
                name: "x-custom".to_owned()
            }
        );
        assert_eq!(err.attempts(), 0);
        // The message names the header, never the value (it may be a secret).
        assert!(err.to_string().contains("x-custom"));
        assert!(!err.to_string().contains("injected"));
    }

    // The same through every way of setting a header.
    let err = bounded(
        client
            .get(&server.url("/x"))
            .append_header("x-multi", "a\r\nb")
            .send(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::InvalidHeader {
            name: "x-multi".to_owned()
        }
    );
    let err = bounded(
        client
            .get(&server.url("/x"))
            .bearer_auth("token\r\nx-injected: 1")
            .send(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::InvalidHeader {
            name: "authorization".to_owned()
        }
    );
    let err = bounded(
        client
            .post(&server.url("/x"))
            .idempotency_key("k\r\n")
            .send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "invalid_header");
    assert_eq!(server.total_hits(), 0, "nothing was sent");

    // A default header is checked when the client is built.
    let err = Client::builder()
        .default_header("x-tenant", "acme\r\nx-admin: true")
        .build()
        .unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::InvalidHeader {
            name: "x-tenant".to_owned()
        }
    );
}

#[tokio::test]
async fn an_invalid_header_name_is_refused() {
    let client = Client::builder().test_mode().build().unwrap();
    let err = client
        .get("http://service.test/")
        .header("bad name", "v")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::InvalidHeader {
            name: "bad name".to_owned()
        }
    );
}

#[tokio::test]
async fn two_bodies_are_a_conflict_not_a_silent_pick() {
    let server = Server::start().await;
    server.script("/x", [Reply::ok("ok")]);
    let client = Client::new().unwrap();
    let url = server.url("/x");
    let value = serde_json::json!({"a": 1});

    let attempts = [
        client.post(&url).json(&value).body("raw"),
        client.post(&url).body("raw").json(&value),
        client.post(&url).form(&[("a", "1")]).json(&value),
        client.post(&url).json(&value).form(&[("a", "1")]),
        client
            .post(&url)
            .body("raw")
            .body_stream(reqwest::Body::from("stream")),
    ];
    for request in attempts {
        let err = bounded(request.send()).await.unwrap_err();
        assert_eq!(err.name(), "conflicting_body");
        assert_eq!(err.reason(), &Reason::ConflictingBody);
    }
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn json_and_form_bodies_are_sent_with_their_content_type() {
    let server = Server::start().await;
    server.script("/x", [Reply::ok("ok")]);
    let client = Client::new().unwrap();

    bounded(
        client
            .post(&server.url("/x"))
            .json(&serde_json::json!({"name": "Ada"}))
            .send(),
    )
    .await
    .unwrap();
    bounded(
        client
            .post(&server.url("/x"))
            .form(&[("q", "a b&c")])
            .send(),
    )
    .await
    .unwrap();
    let requests = server.requests("/x");
    assert_eq!(requests[0].headers["content-type"], "application/json");
    assert_eq!(requests[0].body, r#"{"name":"Ada"}"#);
    assert_eq!(
        requests[1].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(requests[1].body, "q=a+b%26c");
}

#[tokio::test]
async fn invalid_urls_are_refused() {
    let client = Client::new().unwrap();
    for url in [
        "not a url",
        "ftp://example.com/file",
        "/relative/without/base",
    ] {
        let err = bounded(client.get(url).send()).await.unwrap_err();
        assert_eq!(err.name(), "invalid_url", "{url}");
        assert_eq!(err.attempts(), 0);
    }
    let err = Client::builder()
        .base_url("mailto:someone@example.com")
        .build()
        .unwrap_err();
    assert_eq!(err.reason(), &Reason::InvalidUrl);
}

#[tokio::test]
async fn relative_paths_join_the_base_url() {
    let server = Server::start().await;
    server.script("/api/v2/users", [Reply::ok("users")]);
    let client = Client::builder()
        .base_url(server.url("/api/v2"))
        .build()
        .unwrap();
    for path in ["users", "/users"] {
        let response = bounded(client.get(path).query([("page", "2")]).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let requests = server.requests("/api/v2/users");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].query.as_deref(), Some("page=2"));
}

#[tokio::test]
async fn statuses_are_responses_until_asked_otherwise() {
    let server = Server::start().await;
    server.script("/missing", [Reply::status(404).body("nope")]);
    server.script("/busy", [Reply::status(503).header("retry-after", "120")]);
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder.build().unwrap();

    let response = bounded(client.get(&server.url("/missing")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let err = response.error_for_status().unwrap_err();
    assert_eq!(err.name(), "status");
    assert_eq!(
        err.reason(),
        &Reason::Status {
            status: StatusCode::NOT_FOUND
        }
    );
    assert_eq!(err.last_status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.retry_after(), None);

    // 120 s is past the default 60 s cap: not retried, and the wait is on the error.
    let err = bounded(client.get(&server.url("/busy")).send())
        .await
        .unwrap()
        .error_for_status()
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(err.last_status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(server.hits("/busy"), 1);
}

#[tokio::test]
async fn invalid_json_is_an_inspectable_error() {
    let server = Server::start().await;
    server.script(
        "/broken",
        [Reply::ok("{\"id\": 1,").header("content-type", "application/json")],
    );
    let client = Client::new().unwrap();
    let response = bounded(client.get(&server.url("/broken")).send())
        .await
        .unwrap();
    let err = response.json::<serde_json::Value>().await.unwrap_err();
    assert_eq!(err.name(), "decode");
    let source = std::error::Error::source(&err).expect("the decoder's error");
    assert!(source.to_string().contains("EOF"), "{source}");
}

#[tokio::test]
async fn error_urls_and_messages_hold_no_secrets() {
    let port = support::closed_port().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();
    let url = format!("http://user:hunter2@127.0.0.1:{port}/pay?token=sk_live_abc#frag");

    let err = support::drive(&clock, &mut events, client.get(&url).send())
        .await
        .unwrap_err();
    assert_eq!(
        err.url(),
        Some(format!("http://127.0.0.1:{port}/pay").as_str())
    );
    let shown = err.to_string();
    assert!(
        !shown.contains("hunter2") && !shown.contains("sk_live"),
        "{shown}"
    );
    for event in events.all() {
        let request = event.request().expect("request events only");
        assert!(!request.url.contains("sk_live"));
        assert!(!request.url.contains("hunter2"));
    }
}

#[test]
fn reason_names_are_stable() {
    let table: Vec<(Reason, &str)> = vec![
        (
            Reason::Timeout {
                phase: TimeoutPhase::Total,
            },
            "timeout",
        ),
        (Reason::Connect, "connect"),
        (Reason::ConnectionReset, "connection_reset"),
        (Reason::Dns, "dns"),
        (Reason::Tls, "tls"),
        (
            Reason::TooManyRequests {
                retry_after: Duration::ZERO,
            },
            "too_many_requests",
        ),
        (
            Reason::RateLimitWaitTimeout {
                retry_after: Duration::ZERO,
            },
            "rate_limit_wait_timeout",
        ),
        (
            Reason::ServiceUnavailable {
                retry_after: Duration::ZERO,
            },
            "service_unavailable",
        ),
        (
            Reason::RetriesExhausted {
                attempts: 4,
                last: Box::new(Reason::Connect),
            },
            "retries_exhausted",
        ),
        (Reason::RetryBudgetExhausted, "retry_budget_exhausted"),
        (Reason::BodyNotReplayable, "body_not_replayable"),
        (Reason::InvalidUrl, "invalid_url"),
        (
            Reason::InvalidHeader {
                name: "x".to_owned(),
            },
            "invalid_header",
        ),
        (Reason::ConflictingBody, "conflicting_body"),
        (
            Reason::HostNotAllowed {
                host: "h".to_owned(),
            },
            "host_not_allowed",
        ),
        (
            Reason::BlockedPrivateIp {
                host: "h".to_owned(),
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
            },
            "blocked_private_ip",
        ),
        (Reason::NetworkBlocked, "network_blocked"),
        (
            Reason::StoreUnavailable {
                store: "redis".to_owned(),
            },
            "store_unavailable",
        ),
        (
            Reason::Config {
                path: "retry.max_retries".to_owned(),
                expected: "an integer".to_owned(),
                found: "\"three\"".to_owned(),
            },
            "config",
        ),
        (
            Reason::Status {
                status: StatusCode::IM_A_TEAPOT,
            },
            "status",
        ),
        (Reason::Decode, "decode"),
        (Reason::Body, "body"),
        (Reason::Redirect, "redirect"),
        (Reason::BlockingInAsyncContext, "blocking_in_async_context"),
        (Reason::Transport, "transport"),
    ];
    let mut names = std::collections::HashSet::new();
    for (reason, name) in &table {
        assert_eq!(reason.name(), *name);
        assert!(names.insert(*name), "{name} is used twice");
        // Every reason has a human message, and the error shows it.
        let message = reason.to_string();
        assert!(!message.is_empty() && message != *name, "{name}: {message}");
        let err = Error::from(reason.clone());
        assert_eq!(err.name(), *name);
        assert_eq!(err.to_string(), message);
    }
    // The message carries what the caller needs.
    assert_eq!(
        Reason::Config {
            path: "retry.max_retries".to_owned(),
            expected: "an integer".to_owned(),
            found: "\"three\"".to_owned(),
        }
        .to_string(),
        "retry.max_retries: expected an integer, found \"three\""
    );
    assert!(Reason::Timeout {
        phase: TimeoutPhase::Attempt
    }
    .to_string()
    .starts_with("attempt"));
}

#[test]
fn retry_after_comes_with_the_reasons_that_have_one() {
    let wait = Duration::from_secs(3);
    for reason in [
        Reason::TooManyRequests { retry_after: wait },
        Reason::RateLimitWaitTimeout { retry_after: wait },
        Reason::ServiceUnavailable { retry_after: wait },
    ] {
        assert_eq!(reason.retry_after(), Some(wait));
        assert_eq!(Error::new(reason).retry_after(), Some(wait));
    }
    for reason in [
        Reason::Connect,
        Reason::NetworkBlocked,
        Reason::RetryBudgetExhausted,
    ] {
        assert_eq!(Error::new(reason).retry_after(), None);
    }
    let nested = Reason::RetriesExhausted {
        attempts: 2,
        last: Box::new(Reason::RetriesExhausted {
            attempts: 1,
            last: Box::new(Reason::ConnectionReset),
        }),
    };
    assert_eq!(nested.root(), &Reason::ConnectionReset);
}
