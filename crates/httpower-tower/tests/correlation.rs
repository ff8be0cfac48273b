//! The correlation layer on a real axum server: the caller's id (or a new one) reaches
//! the handler, every httpower call the handler makes, and the response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Router};
use httpower_tower::correlation::{CorrelationId, CorrelationLayer};
use tokio::sync::Mutex;

/// Serves `app` on 127.0.0.1:0 and returns its address.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// An upstream that records the `x-request-id` of every request it gets.
async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/",
            get(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                    let id = headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().await.push(id);
                    "upstream"
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    (serve(app).await, seen)
}

/// The service under test: a handler that calls the upstream twice through httpower
/// and reports the id it saw in its extensions.
async fn service(upstream: SocketAddr) -> SocketAddr {
    let client = httpower::Client::builder()
        .base_url(format!("http://{upstream}"))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/call",
            get(
                |State(client): State<httpower::Client>,
                 Extension(id): Extension<CorrelationId>| async move {
                    for _ in 0..2 {
                        client.get("/").send().await.unwrap();
                    }
                    id.0.to_string()
                },
            ),
        )
        .with_state(client)
        .layer(CorrelationLayer::new());
    serve(app).await
}

#[tokio::test]
async fn the_callers_id_reaches_the_handler_upstream_and_response() {
    let (upstream, seen) = upstream().await;
    let service = service(upstream).await;
    let response = reqwest::Client::new()
        .get(format!("http://{service}/call"))
        .header("x-request-id", "req_from_the_edge")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req_from_the_edge");
    assert_eq!(response.text().await.unwrap(), "req_from_the_edge");
    assert_eq!(
        *seen.lock().await,
        ["req_from_the_edge", "req_from_the_edge"]
    );
}

#[tokio::test]
async fn a_missing_or_unusable_id_is_replaced_by_a_new_one() {
    let (upstream, seen) = upstream().await;
    let service = service(upstream).await;
    let client = reqwest::Client::new();
    let too_long = "x".repeat(200);
    let mut ids = Vec::new();
    for sent in [None, Some(too_long.as_str()), Some("has space")] {
        let mut request = client.get(format!("http://{service}/call"));
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = request.send().await.unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.text().await.unwrap(), echoed);
        assert!(echoed.starts_with("req_") && echoed.len() == 20, "{echoed}");
        ids.push(echoed);
    }
    // Each request got its own id, and the upstream saw each one twice.
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    let seen = seen.lock().await.clone();
    let expected: Vec<String> = ids.iter().flat_map(|id| [id.clone(), id.clone()]).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn concurrent_requests_keep_their_own_ids() {
    let (upstream, seen) = upstream().await;
    let service = service(upstream).await;
    let client = reqwest::Client::new();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .get(format!("http://{service}/call"))
                    .header("x-request-id", format!("req_caller{i:02}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), format!("req_caller{i:02}"));
    }
    let seen = seen.lock().await.clone();
    assert_eq!(seen.len(), 40);
    for i in 0..20 {
        let id = format!("req_caller{i:02}");
        assert_eq!(seen.iter().filter(|s| **s == id).count(), 2, "{id}");
    }
}
