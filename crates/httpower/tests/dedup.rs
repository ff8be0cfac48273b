//! Deduplication against a real local server that holds its answer until the test
//! opens a gate: identical requests in flight share one upstream call and its outcome;
//! different credentials never share; nothing is kept once the call completes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use httpower::core::clock::ManualClock;
use httpower::{Client, Error, Reason, Response, TimeoutPhase};
use support::{bounded, test_client, Events, Gate, Reply, Server};
use tokio::task::JoinHandle;

fn client(clock: &ManualClock) -> (Client, Events) {
    let (builder, events) = test_client(clock);
    (builder.dedup(true).build().unwrap(), events)
}

fn spawn_get(
    client: &Client,
    url: &str,
    token: Option<&str>,
) -> JoinHandle<Result<Response, Error>> {
    let client = client.clone();
    let url = url.to_owned();
    let token = token.map(str::to_owned);
    tokio::spawn(async move {
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(&token);
        }
        request.send().await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_identical_gets_make_one_upstream_call() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, mut events) = client(&clock);
    let gate = Gate::new();
    server.script_fn("/user/1", {
        let gate = gate.clone();
        move |hit| {
            Reply::ok("")
                .body(format!("{{\"id\":1,\"served_by_hit\":{hit}}}"))
                .header("content-type", "application/json")
                .after(&gate)
        }
    });
    let url = server.url("/user/1");

    let requests: Vec<_> = (0..100).map(|_| spawn_get(&client, &url, None)).collect();
    server.wait_hits("/user/1", 1).await;
    events.wait_count("deduplicated", 99).await;
    assert_eq!(server.hits("/user/1"), 1, "everyone is waiting on one call");
    gate.open();

    let mut bodies = Vec::new();
    for request in requests {
        let response = bounded(request).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(server.hits("/user/1"), 1);
    assert_eq!(bodies.len(), 100);
    assert!(bodies.iter().all(|b| b == "{\"id\":1,\"served_by_hit\":1}"));
    assert_eq!(events.count("deduplicated"), 99);
}

#[tokio::test]
async fn different_credentials_are_never_shared() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, mut events) = client(&clock);
    let gate = Gate::new();
    server.script_fn("/me", {
        let gate = gate.clone();
        move |hit| Reply::ok("").body(format!("hit {hit}")).after(&gate)
    });
    let url = server.url("/me");

    let alice = spawn_get(&client, &url, Some("alice"));
    let bob = spawn_get(&client, &url, Some("bob"));
    let alice_again = spawn_get(&client, &url, Some("alice"));
    server.wait_hits("/me", 2).await;
    events.wait_count("deduplicated", 1).await;
    gate.open();

    let alice = bounded(alice).await.unwrap().unwrap().text().await.unwrap();
    let bob = bounded(bob).await.unwrap().unwrap().text().await.unwrap();
    let alice_again = bounded(alice_again)
        .await
        .unwrap()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(server.hits("/me"), 2);
    assert_ne!(alice, bob, "each credential got its own call");
    assert_eq!(alice, alice_again);
    let mut seen: Vec<String> = server
        .requests("/me")
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ["Bearer alice", "Bearer bob"]);
}

#[tokio::test]
async fn different_urls_and_bodies_are_separate_calls() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    let gate = Gate::new();
    server.script("/a", [Reply::ok("a").after(&gate)]);
    server.script("/b", [Reply::ok("b").after(&gate)]);

    let a = spawn_get(&client, &server.url("/a"), None);
    let b = spawn_get(&client, &server.url("/b"), None);
    let a_query = spawn_get(&client, &server.url("/a?page=2"), None);
    server.wait_hits("/b", 1).await;
    server.wait_hits("/a", 2).await;
    gate.open();
    for request in [a, b, a_query] {
        assert_eq!(bounded(request).await.unwrap().unwrap().status(), 200);
    }
    assert_eq!((server.hits("/a"), server.hits("/b")), (2, 1));
}

#[tokio::test]
async fn the_owners_status_is_everyones_status() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.dedup(true).no_retry().build().unwrap();
    let gate = Gate::new();
    server.script("/broken", [Reply::status(500).body("boom").after(&gate)]);
    let url = server.url("/broken");

    let requests: Vec<_> = (0..10).map(|_| spawn_get(&client, &url, None)).collect();
    server.wait_hits("/broken", 1).await;
    events.wait_count("deduplicated", 9).await;
    gate.open();
    for request in requests {
        let response = bounded(request).await.unwrap().unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.text().await.unwrap(), "boom");
    }
    assert_eq!(server.hits("/broken"), 1);
}

#[tokio::test]
async fn the_owners_error_is_everyones_error() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.dedup(true).no_retry().build().unwrap();
    let gate = Gate::new();
    server.script("/reset", [Reply::reset().after(&gate)]);
    let url = server.url("/reset");

    let requests: Vec<_> = (0..10).map(|_| spawn_get(&client, &url, None)).collect();
    server.wait_hits("/reset", 1).await;
    events.wait_count("deduplicated", 9).await;
    gate.open();
    for request in requests {
        let err = bounded(request).await.unwrap().unwrap_err();
        assert_eq!(err.reason(), &Reason::ConnectionReset);
        assert_eq!(err.attempts(), 1);
    }
    assert_eq!(server.hits("/reset"), 1);
}

#[tokio::test]
async fn nothing_is_kept_once_the_call_completes() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, events) = client(&clock);
    server.script_fn("/n", |hit| Reply::ok("").body(format!("{hit}")));
    let url = server.url("/n");

    let first = bounded(client.get(&url).send()).await.unwrap();
    let second = bounded(client.get(&url).send()).await.unwrap();
    assert_eq!(first.text().await.unwrap(), "1");
    assert_eq!(second.text().await.unwrap(), "2");
    assert_eq!(server.hits("/n"), 2);
    assert_eq!(events.count("deduplicated"), 0);
}

#[tokio::test]
async fn dedup_can_be_chosen_per_request() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, _events) = test_client(&clock);
    let client = builder.build().unwrap();
    let gate = Gate::new();
    server.script("/x", [Reply::ok("x").after(&gate)]);
    let url = server.url("/x");

    // Off by default on the client...
    let plain: Vec<_> = (0..3).map(|_| spawn_get(&client, &url, None)).collect();
    server.wait_hits("/x", 3).await;
    // ... on for these two.
    let deduped: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { client.get(&url).dedup(true).send().await })
        })
        .collect();
    server.wait_hits("/x", 4).await;
    server.assert_stays_at("/x", 4).await;
    gate.open();
    for request in plain.into_iter().chain(deduped) {
        assert_eq!(bounded(request).await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(server.hits("/x"), 4);
}

#[tokio::test]
async fn a_waiter_gives_up_after_the_dedup_wait() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder
        .dedup(true)
        .dedup_wait_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let gate = Gate::new();
    server.script("/slow", [Reply::ok("late").after(&gate)]);
    let url = server.url("/slow");

    let owner = spawn_get(&client, &url, None);
    server.wait_hits("/slow", 1).await;
    let waiter = spawn_get(&client, &url, None);
    events.wait_count("deduplicated", 1).await;
    clock.advance(Duration::from_secs(2));
    let err = bounded(waiter).await.unwrap().unwrap_err();
    assert_eq!(
        err.reason(),
        &Reason::Timeout {
            phase: TimeoutPhase::DedupWait
        }
    );
    assert!(!owner.is_finished(), "the owner keeps its own deadline");
    gate.open();
    assert_eq!(bounded(owner).await.unwrap().unwrap().status(), 200);
    assert_eq!(server.hits("/slow"), 1);
}

#[tokio::test]
async fn a_cancelled_owner_does_not_strand_the_waiters() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, mut events) = client(&clock);
    let gate = Gate::new();
    server.script("/slow", [Reply::ok("shared").after(&gate)]);
    let url = server.url("/slow");

    let owner = spawn_get(&client, &url, None);
    server.wait_hits("/slow", 1).await;
    let waiter = spawn_get(&client, &url, None);
    events.wait_count("deduplicated", 1).await;
    owner.abort();
    assert!(bounded(owner).await.unwrap_err().is_cancelled());
    gate.open();
    let response = bounded(waiter).await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), "shared");
    assert_eq!(server.hits("/slow"), 1);
}

#[tokio::test]
async fn identical_posts_are_not_merged() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let (client, _events) = client(&clock);
    let gate = Gate::new();
    server.script("/orders", [Reply::status(201).after(&gate)]);
    let url = server.url("/orders");

    let posts: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { client.post(&url).body("one book").send().await })
        })
        .collect();
    // Both orders must reach the server: wait for the second one, then release them.
    let both = tokio::time::timeout(Duration::from_millis(500), server.wait_hits("/orders", 2));
    let arrived = both.await.is_ok();
    gate.open();
    for post in posts {
        bounded(post).await.unwrap().unwrap();
    }
    assert!(arrived, "the second POST was merged into the first");
    assert_eq!(server.hits("/orders"), 2);
}
