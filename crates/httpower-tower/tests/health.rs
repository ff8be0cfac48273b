//! `/health` and `/metrics` on a real axum server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
mod support;

use std::sync::Arc;

use axum::Router;
use httpower_core::store::MemoryStore;
use httpower_tower::health::{metrics_router, Health};
use support::DownStore;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn health_is_ok_with_reachable_stores_and_shows_breakers() {
    let client = httpower::Client::builder()
        .name("payments")
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    let breakers = client.breakers().unwrap();
    breakers.get("api.example.com:443").force_open();
    let health = Health::new()
        .store("memory", Arc::new(MemoryStore::new()))
        .client(&client);
    let addr = serve(Router::new().merge(health.router())).await;

    let (status, body) = get_json(format!("http://{addr}/health")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["stores"]["memory"]["reachable"], true);
    assert!(body["stores"]["memory"]["latency_ms"].is_number());
    // An open breaker is reported, but the service itself is healthy.
    assert_eq!(
        body["breakers"]["payments"]["api.example.com:443"]["state"],
        "open"
    );
}

#[tokio::test]
async fn an_unreachable_store_makes_health_503() {
    let health = Health::new()
        .store("memory", Arc::new(MemoryStore::new()))
        .store("redis", Arc::new(DownStore));
    let addr = serve(Router::new().merge(health.router())).await;
    let (status, body) = get_json(format!("http://{addr}/health")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["stores"]["memory"]["reachable"], true);
    assert_eq!(body["stores"]["redis"]["reachable"], false);
    assert!(body["stores"]["redis"]["detail"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
}

#[tokio::test]
async fn metrics_serves_the_prometheus_exposition() {
    let recorder = httpower::observe::prometheus::recorder().unwrap();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("httpower_requests_total", "client" => "probe").increment(3);
    });
    let addr = serve(Router::new().merge(metrics_router(handle))).await;
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains("httpower_requests_total{client=\"probe\"} 3"),
        "{text}"
    );
}
