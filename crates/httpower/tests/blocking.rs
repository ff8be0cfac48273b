//! The blocking client from plain threads (the server runs on a runtime of its own
//! thread), and its refusal to block inside an async runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use httpower::blocking;
use httpower::Reason;
use support::{Reply, ThreadServer};

#[test]
fn a_get_from_a_plain_thread() {
    let server = ThreadServer::start();
    server.script(
        "/users/1",
        [Reply::ok(r#"{"id":1,"name":"Ada"}"#).header("content-type", "application/json")],
    );
    let client = blocking::Client::builder()
        .base_url(server.url("/"))
        .build()
        .unwrap();

    let response = client.get("/users/1").send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 1);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let user: serde_json::Value = response.json().unwrap();
    assert_eq!(user["name"], "Ada");
    assert_eq!(server.hits("/users/1"), 1);
}

#[test]
fn the_blocking_client_runs_the_same_policies() {
    let server = ThreadServer::start();
    // `Retry-After: 0`: retried at once, so no clock is needed.
    server.script(
        "/flaky",
        [
            Reply::status(503).header("retry-after", "0"),
            Reply::ok("second time"),
        ],
    );
    server.script("/echo", [Reply::status(201)]);
    let client = blocking::Client::new().unwrap();

    let response = client.get(&server.url("/flaky")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert_eq!(response.text(), "second time");
    assert_eq!(server.hits("/flaky"), 2);

    let response = client
        .post(&server.url("/echo"))
        .json(&serde_json::json!({"a": 1}))
        .header("x-trace", "t1")
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let received = &server.requests("/echo")[0];
    assert_eq!(received.body, r#"{"a":1}"#);
    assert_eq!(received.headers["x-trace"], "t1");
    assert_eq!(received.headers["content-type"], "application/json");

    let err = client
        .get(&server.url("/missing"))
        .send()
        .unwrap()
        .error_for_status()
        .unwrap_err();
    assert_eq!(err.name(), "status");

    let err = client
        .get(&server.url("/x"))
        .header("x-bad", "a\r\nb")
        .send()
        .unwrap_err();
    assert_eq!(err.name(), "invalid_header");
}

#[test]
fn calling_it_inside_an_async_runtime_is_refused() {
    let server = ThreadServer::start();
    server.script("/x", [Reply::ok("ok")]);
    let client = blocking::Client::new().unwrap();
    let url = server.url("/x");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(async { client.get(&url).send() })
        .unwrap_err();
    assert_eq!(err.name(), "blocking_in_async_context");
    assert_eq!(err.reason(), &Reason::BlockingInAsyncContext);
    assert_eq!(err.attempts(), 0);
    assert_eq!(server.hits("/x"), 0);

    // Outside the runtime, the same client works.
    drop(runtime);
    assert_eq!(client.get(&url).send().unwrap().status(), 200);
    assert_eq!(server.hits("/x"), 1);
}

#[test]
fn the_async_client_underneath_shares_the_pool_and_policies() {
    let server = ThreadServer::start();
    server.script("/x", [Reply::status(500)]);
    let client = blocking::Client::builder()
        .configure(|b| b.no_retry())
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(client.get(&server.url("/x")).send().unwrap().status(), 500);
    }
    // The default breaker (5 failures) is shared with the async view.
    let state = client
        .as_async()
        .breakers()
        .unwrap()
        .state(&server.host_key())
        .unwrap();
    assert_eq!(state.state, httpower::core::breaker::BreakerState::Open);
    let err = client.get(&server.url("/x")).send().unwrap_err();
    assert_eq!(err.name(), "service_unavailable");
    assert_eq!(server.hits("/x"), 5);
}

#[test]
fn dropping_it_inside_an_async_runtime_does_not_panic() {
    let client = blocking::Client::new().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let err = client.get("http://127.0.0.1:9/").send().unwrap_err();
        assert_eq!(err.name(), "blocking_in_async_context");
        drop(client);
    });
}
