//! The rate-limit layer in front of a real axum server, exercised over real HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
mod support;

use httpower_core::clock::ManualClock;
use httpower_core::rate::{AnyAlgorithm, Decision, FixedWindow, WindowQuota};
use httpower_core::store::{
    Check, CompositeDecision, CompositeMode, FailMode, LeaseId, Limiter, MemoryStore, SlotGrant,
    Store, StoreFuture, StoreHealth,
};
use httpower_tower::extract::{GlobalKey, KeyExtractor, RequestParts};
use httpower_tower::layer::{BuildError, RateLimitLayer};
use serde_json::json;
use support::DownStore;
use tokio::net::TcpListener;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn serve(app: Router) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(format!("http://{addr}"))
}

fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().no_proxy().build()
}

/// A fixed window of `limit` per 300 s on `store`.
fn window(name: &str, limit: u32, store: &Arc<dyn Store>) -> Limiter {
    let quota =
        WindowQuota::new(limit, Duration::from_secs(300)).unwrap_or_else(|_| unreachable!());
    Limiter::builder(name, FixedWindow::new(quota)).build(Arc::clone(store))
}

fn by_peer(request: &RequestParts<'_>) -> String {
    request
        .peer
        .map_or_else(|| "no-peer".to_owned(), |peer| peer.ip().to_string())
}

fn by_user(request: &RequestParts<'_>) -> String {
    request
        .headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A memory store on a manual clock 258 s into a 300 s window (so its reset is 42 s away).
fn store_at_258s() -> (Arc<dyn Store>, ManualClock) {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(258));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
    (store, clock)
}

#[tokio::test]
async fn over_the_limit_answers_429_with_headers_and_json() -> TestResult {
    let (store, clock) = store_at_258s();
    let layer = RateLimitLayer::builder()
        .limit(window("login", 3, &store), by_peer)
        .legacy_headers(true)
        .build()?;
    let app = Router::new()
        .route("/login", post(|| async { "welcome" }))
        .layer(layer);
    let base = serve(app).await?;
    let http = client()?;

    for remaining in [2, 1, 0] {
        let response = http.post(format!("{base}/login")).send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "ratelimit"),
            Some(format!("\"login\";r={remaining};t=42").as_str())
        );
        assert_eq!(
            header(&response, "ratelimit-policy"),
            Some("\"login\";q=3;w=300")
        );
        assert_eq!(header(&response, "x-ratelimit-limit"), Some("3"));
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        assert_eq!(header(&response, "x-ratelimit-reset"), Some("42"));
        assert_eq!(header(&response, "retry-after"), None);
        assert_eq!(response.text().await?, "welcome");
    }

    let response = http.post(format!("{base}/login")).send().await?;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), Some("42"));
    assert_eq!(header(&response, "ratelimit"), Some("\"login\";r=0;t=42"));
    assert_eq!(
        header(&response, "ratelimit-policy"),
        Some("\"login\";q=3;w=300")
    );
    assert_eq!(header(&response, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&response, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&response, "x-ratelimit-reset"), Some("42"));
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body: serde_json::Value = response.json().await?;
    assert_eq!(
        body,
        json!({
            "error": "rate_limited",
            "limiter": "login",
            "retry_after": 42,
            "message": "Too many requests for `login`; retry in 42 seconds.",
        })
    );

    // The window turns over: admitted again, with a full window ahead.
    clock.advance(Duration::from_secs(42));
    let response = http.post(format!("{base}/login")).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "ratelimit"), Some("\"login\";r=2;t=300"));
    Ok(())
}

#[tokio::test]
async fn legacy_headers_are_off_by_default() -> TestResult {
    let (store, _clock) = store_at_258s();
    let layer = RateLimitLayer::new(window("api", 1, &store), GlobalKey::default());
    let base = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer),
    )
    .await?;
    let http = client()?;
    let first = http.get(&base).send().await?;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "ratelimit"), Some("\"api\";r=0;t=42"));
    assert_eq!(header(&first, "x-ratelimit-limit"), None);
    let second = http.get(&base).send().await?;
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "x-ratelimit-remaining"), None);
    Ok(())
}

#[tokio::test]
async fn clones_in_two_routers_share_one_budget() -> TestResult {
    let (store, _clock) = store_at_258s();
    let layer = RateLimitLayer::new(window("shared", 5, &store), GlobalKey::default());
    let one = serve(
        Router::new()
            .route("/a", get(|| async { "a" }))
            .route("/b", get(|| async { "b" }))
            .layer(layer.clone()),
    )
    .await?;
    let two = serve(
        Router::new()
            .route("/c", get(|| async { "c" }))
            .layer(layer),
    )
    .await?;
    let http = client()?;

    let mut admitted = 0;
    let mut denied = 0;
    for round in 0..4 {
        for url in [format!("{one}/a"), format!("{one}/b"), format!("{two}/c")] {
            // A fresh connection per request on some rounds: per-connection services
            // must not get their own counters either.
            let response = if round % 2 == 0 {
                http.get(&url).send().await?
            } else {
                client()?.get(&url).send().await?
            };
            match response.status().as_u16() {
                200 => admitted += 1,
                429 => denied += 1,
                other => return Err(format!("unexpected status {other}").into()),
            }
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(denied, 7);
    Ok(())
}

#[tokio::test]
async fn composite_login_credential_denial_does_not_consume_the_ip_quota() -> TestResult {
    let (store, _clock) = store_at_258s();
    let ip = window("login_ip", 4, &store);
    let user = window("login_user", 2, &store);
    let layer = RateLimitLayer::builder()
        .limit(ip.clone(), by_peer)
        .limit(user.clone(), by_user)
        .mode(CompositeMode::AllMustPass)
        .include("/login")
        .build()?;
    let app = Router::new()
        .route("/login", post(|| async { "welcome" }))
        .layer(layer);
    let base = serve(app).await?;
    let http = client()?;
    let login = |user: &'static str| {
        http.post(format!("{base}/login"))
            .header("x-user", user)
            .send()
    };

    let first = login("alice").await?;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"login_ip\";q=4;w=300, \"login_user\";q=2;w=300")
    );
    assert_eq!(
        header(&first, "ratelimit"),
        Some("\"login_ip\";r=3;t=42, \"login_user\";r=1;t=42")
    );
    assert_eq!(login("alice").await?.status(), 200);

    // alice's credential is spent: denied, by the credential limiter, three times over.
    for _ in 0..3 {
        let denied = login("alice").await?;
        assert_eq!(denied.status(), 429);
        assert_eq!(
            header(&denied, "ratelimit"),
            Some("\"login_ip\";r=2;t=42, \"login_user\";r=0;t=42")
        );
        let body: serde_json::Value = denied.json().await?;
        assert_eq!(body["limiter"], "login_user");
    }

    // Those denials took nothing from the IP quota: 2 of 4 left, not 0.
    let ip_state = ip.key("127.0.0.1").inspect().await?;
    assert_eq!(ip_state.remaining, 2);
    assert_eq!(login("bob").await?.status(), 200);
    assert_eq!(login("carol").await?.status(), 200);

    // Now the IP is spent; its denial does not consume dave's credential quota.
    let denied = login("dave").await?;
    assert_eq!(denied.status(), 429);
    let body: serde_json::Value = denied.json().await?;
    assert_eq!(body["limiter"], "login_ip");
    assert_eq!(user.key("dave").inspect().await?.remaining, 2);
    Ok(())
}

#[tokio::test]
async fn include_and_exclude_patterns() -> TestResult {
    let (store, _clock) = store_at_258s();
    let layer = RateLimitLayer::builder()
        .limit(window("api", 1, &store), GlobalKey::default())
        .include("/api/*")
        .include("/login")
        .exclude("/api/health")
        .build()?;
    assert!(layer.applies_to("/api/users"));
    assert!(!layer.applies_to("/api/health"));
    assert!(!layer.applies_to("/about"));
    let app = Router::new()
        .route("/api/users", get(|| async { "users" }))
        .route("/api/health", get(|| async { "healthy" }))
        .route("/login", get(|| async { "login" }))
        .route("/about", get(|| async { "about" }))
        .layer(layer);
    let base = serve(app).await?;
    let http = client()?;

    let first = http.get(format!("{base}/api/users")).send().await?;
    assert_eq!(first.status(), 200);
    assert!(header(&first, "ratelimit").is_some());
    assert_eq!(
        http.get(format!("{base}/api/users")).send().await?.status(),
        429
    );
    assert_eq!(
        http.get(format!("{base}/login")).send().await?.status(),
        429
    );
    for path in ["/api/health", "/about"] {
        for _ in 0..3 {
            let response = http.get(format!("{base}{path}")).send().await?;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(header(&response, "ratelimit"), None, "{path}");
        }
    }
    Ok(())
}

/// A store that never answers.
#[derive(Debug)]
struct HangingStore;

fn hang<'a, T: 'a>() -> StoreFuture<'a, T> {
    StoreFuture::pending(std::future::pending())
}

impl Store for HangingStore {
    fn name(&self) -> &str {
        "hanging"
    }
    fn check<'a>(
        &'a self,
        _: &'a str,
        _: &'a AnyAlgorithm,
        _: &'a str,
        _: u32,
    ) -> StoreFuture<'a, Decision> {
        hang()
    }
    fn check_composite<'a>(
        &'a self,
        _: &'a [Check<'a>],
        _: CompositeMode,
    ) -> StoreFuture<'a, CompositeDecision> {
        hang()
    }
    fn inspect<'a>(
        &'a self,
        _: &'a str,
        _: &'a AnyAlgorithm,
        _: &'a str,
    ) -> StoreFuture<'a, Decision> {
        hang()
    }
    fn acquire_slot<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
        _: Duration,
    ) -> StoreFuture<'a, SlotGrant> {
        hang()
    }
    fn release_slot<'a>(&'a self, _: &'a str, _: &'a str, _: LeaseId) -> StoreFuture<'a, ()> {
        hang()
    }
    fn reset<'a>(&'a self, _: &'a str, _: Option<&'a str>) -> StoreFuture<'a, u64> {
        hang()
    }
    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        hang()
    }
}

fn limiter_on(store: &Arc<dyn Store>, name: &str, fail_mode: FailMode) -> Limiter {
    let quota = WindowQuota::new(5, Duration::from_secs(60)).unwrap_or_else(|_| unreachable!());
    Limiter::builder(name, FixedWindow::new(quota))
        .fail_mode(fail_mode)
        .timeout(Duration::from_millis(50))
        .build(Arc::clone(store))
}

async fn assert_unavailable(response: reqwest::Response, limiter: &str) -> TestResult {
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), Some("1"));
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(header(&response, "ratelimit"), None);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(
        body,
        json!({
            "error": "rate_limiter_unavailable",
            "limiter": limiter,
            "retry_after": 1,
            "message": format!("The rate limiter `{limiter}` is unavailable; retry in 1 seconds."),
        })
    );
    Ok(())
}

#[tokio::test]
async fn store_down_fail_closed_answers_503_and_fail_open_passes() -> TestResult {
    let store: Arc<dyn Store> = Arc::new(DownStore);
    let closed = RateLimitLayer::new(
        limiter_on(&store, "login", FailMode::Closed),
        GlobalKey::default(),
    );
    let open = RateLimitLayer::new(
        limiter_on(&store, "browse", FailMode::Open),
        GlobalKey::default(),
    );
    let app = Router::new()
        .route("/login", post(|| async { "welcome" }).layer(closed))
        .route("/browse", get(|| async { "items" }).layer(open));
    let base = serve(app).await?;
    let http = client()?;

    assert_unavailable(http.post(format!("{base}/login")).send().await?, "login").await?;
    for _ in 0..10 {
        let response = http.get(format!("{base}/browse")).send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit"), None);
        assert_eq!(response.text().await?, "items");
    }
    Ok(())
}

#[tokio::test]
async fn composite_store_failures_follow_the_fail_modes() -> TestResult {
    let store: Arc<dyn Store> = Arc::new(DownStore);
    let one_closed = RateLimitLayer::builder()
        .limit(limiter_on(&store, "ip", FailMode::Open), by_peer)
        .limit(limiter_on(&store, "user", FailMode::Closed), by_user)
        .build()?;
    let all_open = RateLimitLayer::builder()
        .limit(limiter_on(&store, "ip2", FailMode::Open), by_peer)
        .limit(limiter_on(&store, "user2", FailMode::Open), by_user)
        .build()?;
    let any_one_open = RateLimitLayer::builder()
        .limit(limiter_on(&store, "ip3", FailMode::Open), by_peer)
        .limit(limiter_on(&store, "user3", FailMode::Closed), by_user)
        .mode(CompositeMode::AnyMustPass)
        .build()?;
    let app = Router::new()
        .route("/closed", get(|| async { "x" }).layer(one_closed))
        .route("/open", get(|| async { "y" }).layer(all_open))
        .route("/any", get(|| async { "z" }).layer(any_one_open));
    let base = serve(app).await?;
    let http = client()?;

    assert_unavailable(http.get(format!("{base}/closed")).send().await?, "user").await?;
    let open = http.get(format!("{base}/open")).send().await?;
    assert_eq!(open.status(), 200);
    assert_eq!(header(&open, "ratelimit"), None);
    assert_eq!(http.get(format!("{base}/any")).send().await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_hanging_store_is_cut_off_by_the_timeout() -> TestResult {
    let store: Arc<dyn Store> = Arc::new(HangingStore);
    let single = RateLimitLayer::new(
        limiter_on(&store, "single", FailMode::Closed),
        GlobalKey::default(),
    );
    let composite = RateLimitLayer::builder()
        .limit(limiter_on(&store, "ip", FailMode::Open), by_peer)
        .limit(limiter_on(&store, "user", FailMode::Closed), by_user)
        .build()?;
    let open = RateLimitLayer::new(
        limiter_on(&store, "open", FailMode::Open),
        GlobalKey::default(),
    );
    let app = Router::new()
        .route("/single", get(|| async { "x" }).layer(single))
        .route("/composite", get(|| async { "y" }).layer(composite))
        .route("/open", get(|| async { "z" }).layer(open));
    let base = serve(app).await?;
    let http = client()?;
    let bounded = |url: String| {
        let http = http.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), http.get(url).send())
                .await
                .map_err(|_| "the layer hung on a store that never answers")
        }
    };

    assert_unavailable(bounded(format!("{base}/single")).await??, "single").await?;
    assert_unavailable(bounded(format!("{base}/composite")).await??, "user").await?;
    assert_eq!(bounded(format!("{base}/open")).await??.status(), 200);
    Ok(())
}

#[tokio::test]
async fn composite_constructor_and_build_errors() -> TestResult {
    let (store, _clock) = store_at_258s();
    let other: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key: Arc<dyn KeyExtractor> = Arc::new(GlobalKey::default());

    let layer = RateLimitLayer::composite(
        CompositeMode::MostRestrictive,
        [
            (window("a", 1, &store), Arc::clone(&key)),
            (window("b", 2, &store), Arc::clone(&key)),
        ],
    )?;
    assert_eq!(
        layer
            .limiters()
            .map(|l| l.name().to_string())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    let mixed = RateLimitLayer::composite(
        CompositeMode::AllMustPass,
        [
            (window("a", 1, &store), Arc::clone(&key)),
            (window("b", 1, &other), Arc::clone(&key)),
        ],
    );
    assert_eq!(
        mixed.err(),
        Some(BuildError::MixedStores {
            first: "a".to_owned(),
            other: "b".to_owned()
        })
    );
    assert_eq!(
        RateLimitLayer::builder().build().err(),
        Some(BuildError::NoLimiters)
    );
    assert_eq!(
        RateLimitLayer::builder()
            .limit(window("a", 1, &store), GlobalKey::default())
            .limit(window("a", 2, &store), GlobalKey::default())
            .build()
            .err(),
        Some(BuildError::DuplicateLimiter("a".to_owned()))
    );
    assert!(matches!(
        RateLimitLayer::builder()
            .limit(window("a", 1, &store), GlobalKey::default())
            .exclude("/a*/b")
            .build(),
        Err(BuildError::InvalidPattern { .. })
    ));
    Ok(())
}

/// Outside axum: any tower service, its error type passed through untouched.
#[tokio::test]
async fn plain_tower_service_errors_pass_through() -> TestResult {
    use tower::{Layer, ServiceExt};

    #[derive(Debug, PartialEq)]
    struct Boom;

    let (store, _clock) = store_at_258s();
    let layer = RateLimitLayer::new(window("tower", 1, &store), GlobalKey::default());
    let failing = layer.layer(tower::service_fn(|_: http::Request<Vec<u8>>| async {
        Err::<http::Response<String>, Boom>(Boom)
    }));
    let result = failing
        .oneshot(http::Request::new(b"payload".to_vec()))
        .await;
    assert_eq!(result.err(), Some(Boom));

    // The budget was spent by that call: the next one is answered by the layer.
    let ok = layer.layer(tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(String::from("fine")))
    }));
    let response = ok.oneshot(http::Request::new(())).await?;
    assert_eq!(response.status(), 429);
    Ok(())
}

/// A memory store that answers only after yielding, like a store on the network: the
/// layer's slow path (boxed check with a timeout) must decide exactly as the fast one.
#[derive(Debug)]
struct AsyncStore(MemoryStore);

impl Store for AsyncStore {
    fn name(&self) -> &str {
        "async"
    }
    fn check<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
        cost: u32,
    ) -> StoreFuture<'a, Decision> {
        StoreFuture::pending(async move {
            tokio::task::yield_now().await;
            self.0.check(limiter, algorithm, key, cost).await
        })
    }
    fn check_composite<'a>(
        &'a self,
        checks: &'a [Check<'a>],
        mode: CompositeMode,
    ) -> StoreFuture<'a, CompositeDecision> {
        StoreFuture::pending(async move {
            tokio::task::yield_now().await;
            self.0.check_composite(checks, mode).await
        })
    }
    fn inspect<'a>(
        &'a self,
        limiter: &'a str,
        algorithm: &'a AnyAlgorithm,
        key: &'a str,
    ) -> StoreFuture<'a, Decision> {
        self.0.inspect(limiter, algorithm, key)
    }
    fn acquire_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        max: u32,
        lease: Duration,
    ) -> StoreFuture<'a, SlotGrant> {
        self.0.acquire_slot(limiter, key, max, lease)
    }
    fn release_slot<'a>(
        &'a self,
        limiter: &'a str,
        key: &'a str,
        lease: LeaseId,
    ) -> StoreFuture<'a, ()> {
        self.0.release_slot(limiter, key, lease)
    }
    fn reset<'a>(&'a self, limiter: &'a str, key: Option<&'a str>) -> StoreFuture<'a, u64> {
        self.0.reset(limiter, key)
    }
    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        self.0.health()
    }
}

#[tokio::test]
async fn a_store_that_answers_later_decides_like_one_that_answers_at_once() -> TestResult {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(258));
    let store: Arc<dyn Store> = Arc::new(AsyncStore(MemoryStore::with_clock(clock.clone())));
    let single = window("single", 2, &store);
    let ip = window("ip", 3, &store);
    let user = window("user", 1, &store);
    let app = Router::new()
        .route(
            "/single",
            get(|| async { "s" }).layer(RateLimitLayer::new(single.clone(), GlobalKey::default())),
        )
        .route(
            "/login",
            post(|| async { "l" }).layer(
                RateLimitLayer::builder()
                    .limit(ip.clone(), by_peer)
                    .limit(user, by_user)
                    .build()?,
            ),
        );
    let base = serve(app).await?;
    let http = client()?;

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = http.get(format!("{base}/single")).send().await?;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    // Each admitted request was charged once: the pending store futures the fast path
    // dropped unpolled charged nothing.
    assert_eq!(single.key("global").inspect().await?.remaining, 0);

    let login = |user: &'static str| {
        http.post(format!("{base}/login"))
            .header("x-user", user)
            .send()
    };
    assert_eq!(login("alice").await?.status(), 200);
    let denied = login("alice").await?;
    assert_eq!(denied.status(), 429);
    assert_eq!(
        header(&denied, "ratelimit"),
        Some("\"ip\";r=2;t=42, \"user\";r=0;t=42")
    );
    assert_eq!(ip.key("127.0.0.1").inspect().await?.remaining, 2);
    Ok(())
}

#[tokio::test]
async fn token_bucket_headers() -> TestResult {
    use httpower_core::rate::{Gcra, Quota};

    let clock = ManualClock::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
    // One every 10 s, bursts of 2: the whole bucket refills in 20 s.
    let bucket = Gcra::new(Quota::new(1, Duration::from_secs(10), 2)?);
    let limiter = Limiter::builder("bucket", bucket).build(store);
    let layer = RateLimitLayer::new(limiter, GlobalKey::default());
    let base = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer),
    )
    .await?;
    let http = client()?;

    let first = http.get(&base).send().await?;
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"bucket\";q=2;w=20")
    );
    assert_eq!(header(&first, "ratelimit"), Some("\"bucket\";r=1;t=10"));
    let second = http.get(&base).send().await?;
    assert_eq!(header(&second, "ratelimit"), Some("\"bucket\";r=0;t=20"));

    // Denied: `t` and `Retry-After` say when one cell is back (10 s), not the whole
    // bucket (20 s).
    clock.advance(Duration::from_millis(2500));
    let denied = http.get(&base).send().await?;
    assert_eq!(denied.status(), 429);
    assert_eq!(header(&denied, "retry-after"), Some("8"));
    assert_eq!(header(&denied, "ratelimit"), Some("\"bucket\";r=0;t=8"));

    clock.advance(Duration::from_millis(7500));
    assert_eq!(http.get(&base).send().await?.status(), 200);
    Ok(())
}
