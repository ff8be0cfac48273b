//! The layer on the Redis store, against a real `redis-server`: instances share one
//! budget, and when Redis dies fail-closed routes answer 503, fail-open routes pass and
//! `/health` turns 503 — until Redis is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../httpower-redis/tests/support/mod.rs"]
mod redis_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use httpower_core::rate::{SlidingWindow, WindowQuota};
use httpower_core::store::{FailMode, Limiter, Store};
use httpower_redis::RedisStore;
use httpower_tower::extract::GlobalKey;
use httpower_tower::health::Health;
use httpower_tower::RateLimitLayer;
use redis_support::RedisServer;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

fn store(server: &RedisServer, prefix: &str) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::builder(server.url())
            .key_prefix(prefix)
            .connect_timeout(Duration::from_millis(200))
            .command_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
}

fn limiter(store: &Arc<dyn Store>, name: &str, limit: u32, mode: FailMode) -> Limiter {
    Limiter::builder(
        name,
        SlidingWindow::new(WindowQuota::new(limit, Duration::from_secs(600)).unwrap()),
    )
    .timeout(Duration::from_millis(100))
    .fail_mode(mode)
    .build(Arc::clone(store))
}

/// One "instance" of a service: its own store connection and its own layer.
async fn instance(server: &RedisServer) -> String {
    let store = store(server, "shared");
    let layer = RateLimitLayer::new(
        limiter(&store, "api", 5, FailMode::Closed),
        GlobalKey::default(),
    );
    serve(Router::new().route("/api", get(|| async { "ok" }).layer(layer))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_one_budget() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server).await, instance(&server).await);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut admitted = 0;
    let mut refused = 0;
    for i in 0..12 {
        let base = if i % 2 == 0 { &a } else { &b };
        match http
            .get(format!("{base}/api"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (admitted, refused),
        (5, 7),
        "a limit of 5 shared by two instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_closed_is_503_fail_open_passes_and_health_turns_503() {
    // The only test of this binary that installs the global recorder.
    let metrics = httpower::observe::prometheus::install().unwrap();
    let mut server = RedisServer::start();
    let store = store(&server, "outage");
    let login = RateLimitLayer::new(
        limiter(&store, "login", 100, FailMode::Closed),
        GlobalKey::default(),
    );
    let browse = RateLimitLayer::new(
        limiter(&store, "browse", 100, FailMode::Open),
        GlobalKey::default(),
    );
    let health = Health::new().store("redis", Arc::clone(&store));
    let app = Router::new()
        .route("/login", post(|| async { "welcome" }).layer(login))
        .route("/browse", get(|| async { "items" }).layer(browse))
        .merge(health.router());
    let base = serve(app).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // Redis up: both routes decided by Redis, with quota headers; healthy.
    let ok = http.post(format!("{base}/login")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok
        .headers()
        .get("ratelimit")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("r=99"));
    let health_up = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health_up.status(), 200);

    server.kill();
    let login = http.post(format!("{base}/login")).send().await.unwrap();
    assert_eq!(login.status(), 503);
    assert!(login.headers().contains_key("retry-after"));
    let body: serde_json::Value = login.json().await.unwrap();
    assert_eq!(body["error"], "rate_limiter_unavailable");
    assert_eq!(body["limiter"], "login");
    let browse = http.get(format!("{base}/browse")).send().await.unwrap();
    assert_eq!(
        browse.status(),
        200,
        "fail-open route refused during the outage"
    );
    assert!(
        browse.headers().get("ratelimit").is_none(),
        "quota headers without a decision"
    );
    let health_down = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health_down.status(), 503);
    let body: serde_json::Value = health_down.json().await.unwrap();
    assert_eq!(body["stores"]["redis"]["reachable"], false, "{body}");

    // Each fallback is counted, by limiter and mode.
    let exposition = metrics.render();
    for line in [
        r#"httpower_store_fallbacks_total{limiter="login",mode="fail_closed"} 1"#,
        r#"httpower_store_fallbacks_total{limiter="browse",mode="fail_open"} 1"#,
        r#"httpower_rate_limit_decisions_total{limiter="login",result="allowed"} 1"#,
    ] {
        assert!(
            exposition.contains(line),
            "{line} missing from\n{exposition}"
        );
    }

    // Back up: decisions from Redis again (the state did not survive the restart).
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let response = http.post(format!("{base}/login")).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "login still {} after the restart",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
