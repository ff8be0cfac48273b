//! Test mode itself: the network is blocked unless a stub of the same client answers,
//! stubs are per client, and injected transport faults go through the real retry rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::Method;
use httpower::core::clock::ManualClock;
use httpower::testing::{Stub, StubReply, TransportFault};
use httpower::{Client, Reason, TimeoutPhase};
use support::{bounded, drive, test_client, Reply, Server};

#[tokio::test]
async fn an_unstubbed_request_is_blocked_before_the_network() {
    // A real server, to prove nothing reaches it.
    let server = Server::start().await;
    server.script("/users/1", [Reply::ok("real")]);
    let clock = ManualClock::new();
    let (builder, events) = test_client(&clock);
    let client = builder.test_mode().build().unwrap();

    let err = bounded(client.get(&server.url("/users/1")).send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "network_blocked");
    assert_eq!(err.reason(), &Reason::NetworkBlocked);
    assert_eq!(err.attempts(), 0);
    assert!(err.is_local());
    assert_eq!(server.total_hits(), 0);
    assert!(
        events.retries().is_empty(),
        "a blocked request is not retried"
    );

    // A stub for another path does not open the network either.
    let client = Client::builder()
        .stub(Stub::get("/other").reply(StubReply::status(204)))
        .build()
        .unwrap();
    let err = bounded(client.get(&server.url("/users/1")).send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "network_blocked");
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn stubs_belong_to_their_client() {
    let a_stub = Stub::get("/whoami").reply(StubReply::text(200, "client a"));
    let b_stub = Stub::get("/whoami").reply(StubReply::text(200, "client b"));
    let a = Client::builder()
        .base_url("https://api.example.com")
        .stub(a_stub.clone())
        .build()
        .unwrap();
    let b = Client::builder()
        .base_url("https://api.example.com")
        .stub(b_stub.clone())
        .build()
        .unwrap();

    let (from_a, from_b) = tokio::join!(
        async {
            let mut texts = Vec::new();
            for _ in 0..20 {
                texts.push(a.get("/whoami").send().await.unwrap().text().await.unwrap());
            }
            texts
        },
        async {
            let mut texts = Vec::new();
            for _ in 0..20 {
                texts.push(b.get("/whoami").send().await.unwrap().text().await.unwrap());
            }
            texts
        }
    );
    assert!(from_a.iter().all(|t| t == "client a"));
    assert!(from_b.iter().all(|t| t == "client b"));
    assert_eq!((a_stub.hits(), b_stub.hits()), (20, 20));

    // A clone shares its client's stubs.
    let clone = a.clone();
    assert_eq!(
        clone
            .get("/whoami")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "client a"
    );
    assert_eq!(a_stub.hits(), 21);
}

#[tokio::test]
async fn injected_faults_are_retried_like_real_ones() {
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let stub = Stub::get("/flaky").replies([
        StubReply::fault(TransportFault::Reset),
        StubReply::fault(TransportFault::Timeout),
        StubReply::json(200, &serde_json::json!({"ok": true})),
    ]);
    let client = builder.stub(stub.clone()).build().unwrap();

    let response = drive(
        &clock,
        &mut events,
        client.get("http://service.test/flaky").send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 3);
    assert_eq!(stub.hits(), 3);
    let reasons: Vec<String> = events.retries().into_iter().map(|r| r.reason).collect();
    assert_eq!(reasons, ["connection_reset", "timeout"]);
}

#[tokio::test]
async fn injected_faults_follow_the_method_rules() {
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let refused = Stub::post("/refused").replies([
        StubReply::fault(TransportFault::Refused),
        StubReply::status(201),
    ]);
    let reset = Stub::post("/reset").replies([
        StubReply::fault(TransportFault::Reset),
        StubReply::status(201),
    ]);
    let client = builder
        .stub(refused.clone())
        .stub(reset.clone())
        .build()
        .unwrap();

    // Refused: nothing was sent, so even a POST goes again.
    let response = drive(
        &clock,
        &mut events,
        client.post("http://service.test/refused").send(),
    )
    .await
    .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (201, 2));
    assert_eq!(refused.hits(), 2);

    // Reset: the POST may have been acted on, so it is not repeated.
    let err = drive(
        &clock,
        &mut events,
        client.post("http://service.test/reset").send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), &Reason::ConnectionReset);
    assert_eq!(err.attempts(), 1);
    assert_eq!(reset.hits(), 1);
}

#[tokio::test]
async fn injected_faults_exhaust_retries_and_open_breakers() {
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let stub = Stub::any("/down").reply(StubReply::fault(TransportFault::Timeout));
    let client = builder.stub(stub.clone()).build().unwrap();

    let err = drive(
        &clock,
        &mut events,
        client.get("http://service.test/down").send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "retries_exhausted");
    assert_eq!(err.attempts(), 4);
    assert_eq!(
        err.reason().root(),
        &Reason::Timeout {
            phase: TimeoutPhase::Read
        }
    );
    assert!(err.is_timeout());
    assert_eq!(stub.hits(), 4);

    // Five failed requests open the default breaker, as real timeouts would.
    for _ in 0..4 {
        drive(
            &clock,
            &mut events,
            client.get("http://service.test/down").send(),
        )
        .await
        .unwrap_err();
    }
    let err = bounded(client.get("http://service.test/down").send())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "service_unavailable");
    assert_eq!(stub.hits(), 20);
}

#[tokio::test]
async fn replies_come_in_order_and_the_last_repeats() {
    let stub =
        Stub::get("/seq").replies([StubReply::text(200, "one"), StubReply::text(200, "two")]);
    let client = Client::builder().stub(stub.clone()).build().unwrap();
    let mut texts = Vec::new();
    for _ in 0..4 {
        texts.push(
            client
                .get("http://service.test/seq")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert_eq!(texts, ["one", "two", "two", "two"]);
}

#[tokio::test]
async fn routes_match_method_and_path_and_prefixes() {
    let get = Stub::get("/items").reply(StubReply::text(200, "list"));
    let post = Stub::post("/items").reply(StubReply::status(201));
    let any = Stub::any("/files/*").reply(StubReply::text(200, "file"));
    let client = Client::builder()
        .base_url("https://api.example.com/v1/")
        .stub(get.clone())
        .stub(post.clone())
        .stub(any.clone())
        .build()
        .unwrap();

    let status = |r: httpower::Response| r.status().as_u16();
    // The route matches the path only: base path and query are not stub matters.
    assert_eq!(
        client
            .get("https://api.example.com/items?page=2")
            .send()
            .await
            .map(status)
            .unwrap(),
        200
    );
    assert_eq!(
        client
            .post("https://api.example.com/items")
            .send()
            .await
            .map(status)
            .unwrap(),
        201
    );
    assert_eq!(
        client
            .delete("https://api.example.com/files/a/b.txt")
            .send()
            .await
            .map(status)
            .unwrap(),
        200
    );
    let err = client
        .put("https://api.example.com/items")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.name(), "network_blocked", "no PUT route");
    assert_eq!((get.hits(), post.hits(), any.hits()), (1, 1, 1));
}

#[tokio::test]
async fn closure_stubs_see_the_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let client = Client::builder()
        .base_url("https://api.example.com")
        .default_header("x-api-version", "7")
        .stub_fn(move |request| {
            seen.fetch_add(1, Ordering::Relaxed);
            if request.method != Method::POST || request.url.path() != "/echo" {
                return None;
            }
            let version = request.headers.get("x-api-version")?.to_str().ok()?;
            let body = String::from_utf8(request.body.clone()?.to_vec()).ok()?;
            Some(StubReply::text(200, format!("v{version}: {body}")).header("x-echo", "yes"))
        })
        .build()
        .unwrap();

    let response = client.post("/echo").body("hello").send().await.unwrap();
    assert_eq!(response.header("x-echo"), Some("yes"));
    assert_eq!(response.text().await.unwrap(), "v7: hello");

    let err = client.get("/echo").send().await.unwrap_err();
    assert_eq!(err.name(), "network_blocked", "the closure declined");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn route_stubs_are_tried_before_closures() {
    let route = Stub::get("/x").reply(StubReply::text(200, "route"));
    let client = Client::builder()
        .stub_fn(|_| Some(StubReply::text(200, "closure")))
        .stub(route.clone())
        .build()
        .unwrap();
    let text = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(&format!("http://service.test{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(text("/x").await, "route");
    assert_eq!(text("/y").await, "closure");
    assert_eq!(route.hits(), 1);
}

#[tokio::test]
async fn json_and_text_helpers() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct User {
        id: u32,
        name: String,
    }
    let client = Client::builder()
        .base_url("https://api.example.com")
        .stub(Stub::get("/users/1").reply(StubReply::json(
            200,
            &serde_json::json!({"id": 1, "name": "Ada"}),
        )))
        .stub(Stub::get("/motd").reply(StubReply::text(503, "maintenance")))
        .build()
        .unwrap();

    let response = client.get("/users/1").send().await.unwrap();
    assert_eq!(response.header("content-type"), Some("application/json"));
    let user: User = response.json().await.unwrap();
    assert_eq!(
        user,
        User {
            id: 1,
            name: "Ada".to_owned()
        }
    );

    let response = client.get("/motd").max_retries(0).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.text().await.unwrap(), "maintenance");
}

#[tokio::test]
async fn stubbed_requests_carry_the_correlation_id_and_headers() {
    let client = Client::builder()
        .default_header("user-agent-extra", "tests")
        .stub_fn(|request| {
            let id = request.headers.get("x-request-id")?.to_str().ok()?;
            Some(StubReply::text(200, id.to_owned()))
        })
        .build()
        .unwrap();

    let generated = client
        .get("http://service.test/")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(generated.starts_with("req_"), "{generated}");
    assert_eq!(generated.len(), 4 + 16);

    let given = client
        .get("http://service.test/")
        .correlation_id("order-42")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(given, "order-42");
}
