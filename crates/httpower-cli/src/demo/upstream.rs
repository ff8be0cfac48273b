//! The demo's embedded flaky upstream: a small axum server on `127.0.0.1`.
//!
//! Every endpoint answers `GET` and `POST` with a small JSON body and behaves
//! deterministically, driven by a per-endpoint request counter, so a demo run
//! shows the same mix of failures every time:
//!
//! - `/flaky` answers 502 (no `Retry-After`) on every `bad_gateway_every`-th
//!   request, otherwise 503 with `Retry-After` on every `failure_every`-th
//!   request, otherwise 200.
//! - `/slow` waits `slow_delay` before answering 200; every `slow_every`-th
//!   request waits `slow_long_delay` instead, long enough for a client's
//!   attempt timeout to fire. Every wait is capped at [`MAX_SLEEP`] and cut
//!   short when the upstream shuts down.
//! - `/limited` runs a fixed-window limiter (windows aligned to the server's
//!   own start instant) and advertises it with `RateLimit`, `RateLimit-Policy`
//!   and `X-RateLimit-*` headers; over the limit it answers 429 with
//!   `Retry-After`.
//! - `/dead` always answers 503 without `Retry-After`: a dependency that is down.
//! - `/ok` always answers 200.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest any handler ever sleeps, whatever the configuration says.
const MAX_SLEEP: Duration = Duration::from_secs(10);

/// How long [`Upstream::shutdown`] waits for in-flight connections before it
/// aborts the server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// How the embedded upstream misbehaves. Counters are 1-based: the first
/// request to an endpoint is request 1. A period of 0 disables that behaviour.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamConfig {
    /// `/flaky`: every Nth request answers 503 with `Retry-After`.
    pub(crate) failure_every: u64,
    /// `/flaky`: every Nth request answers 502 without `Retry-After`
    /// (checked before `failure_every`).
    pub(crate) bad_gateway_every: u64,
    /// `/flaky`: the `Retry-After` value, in seconds, sent with its 503s.
    pub(crate) retry_after_secs: u64,
    /// `/slow`: the usual delay before answering.
    pub(crate) slow_delay: Duration,
    /// `/slow`: every Nth request waits `slow_long_delay` instead.
    pub(crate) slow_every: u64,
    /// `/slow`: the long delay, meant to exceed the client's attempt timeout.
    pub(crate) slow_long_delay: Duration,
    /// `/limited`: requests allowed per window.
    pub(crate) limit: u64,
    /// `/limited`: the window length.
    pub(crate) window: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            failure_every: 3,
            bad_gateway_every: 7,
            retry_after_secs: 1,
            slow_delay: Duration::from_millis(40),
            slow_every: 5,
            slow_long_delay: Duration::from_millis(1500),
            limit: 10,
            window: Duration::from_secs(1),
        }
    }
}

/// How many requests each endpoint has received (including the ones it failed
/// or refused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UpstreamHits {
    /// Requests to `/flaky`.
    pub(crate) flaky: u64,
    /// Requests to `/slow`.
    pub(crate) slow: u64,
    /// Requests to `/limited`.
    pub(crate) limited: u64,
    /// Requests to `/dead`.
    pub(crate) dead: u64,
    /// Requests to `/ok`.
    pub(crate) ok: u64,
}

impl UpstreamHits {
    /// Requests to every endpoint together.
    pub(crate) fn total(&self) -> u64 {
        self.flaky + self.slow + self.limited + self.dead + self.ok
    }
}

/// A running embedded upstream. Dropping it asks the server to stop;
/// [`Upstream::shutdown`] also waits for it.
#[derive(Debug)]
pub(crate) struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves the demo endpoints in a spawned task.
    pub(crate) async fn start(config: UpstreamConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared::new(config, stopped.clone()));
        let router = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let mut stopped = stopped;
            let signal = async move {
                // An error means the sender is gone: stop as well.
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // A serve error has nowhere useful to go; the demo sees failed
            // requests instead.
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await;
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The socket address the upstream listens on.
    #[cfg(test)]
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` (which starts with `/`) on this upstream.
    #[cfg(test)]
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far, per endpoint.
    pub(crate) fn hits(&self) -> UpstreamHits {
        let h = &self.shared.hits;
        UpstreamHits {
            flaky: h.flaky.load(Ordering::Relaxed),
            slow: h.slow.load(Ordering::Relaxed),
            limited: h.limited.load(Ordering::Relaxed),
            dead: h.dead.load(Ordering::Relaxed),
            ok: h.ok.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting connections, cuts pending sleeps short and waits (for
    /// a bounded time) until the server task has finished.
    pub(crate) async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[derive(Debug, Default)]
struct Counters {
    flaky: AtomicU64,
    slow: AtomicU64,
    limited: AtomicU64,
    dead: AtomicU64,
    ok: AtomicU64,
}

/// Counts the request and returns its 1-based number.
fn next(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

#[derive(Debug)]
struct Shared {
    config: UpstreamConfig,
    hits: Counters,
    window: Mutex<FixedWindow>,
    stopped: watch::Receiver<bool>,
}

impl Shared {
    fn new(config: UpstreamConfig, stopped: watch::Receiver<bool>) -> Self {
        let window = FixedWindow::new(config.limit, config.window, Instant::now());
        Self {
            config,
            hits: Counters::default(),
            window: Mutex::new(window),
            stopped,
        }
    }

    /// Sleeps for `delay` (capped at [`MAX_SLEEP`]), or less if the upstream
    /// is shutting down.
    async fn sleep(&self, delay: Duration) {
        let mut stopped = self.stopped.clone();
        tokio::select! {
            () = tokio::time::sleep(delay.min(MAX_SLEEP)) => {}
            _ = stopped.wait_for(|stop| *stop) => {}
        }
    }
}

/// A fixed-window counter whose windows start at the server's own start
/// instant.
#[derive(Debug)]
struct FixedWindow {
    limit: u64,
    window: Duration,
    origin: Instant,
    index: u64,
    used: u64,
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowVerdict {
    allowed: bool,
    remaining: u64,
    /// Whole seconds until the current window ends, at least 1.
    reset_secs: u64,
}

impl FixedWindow {
    fn new(limit: u64, window: Duration, origin: Instant) -> Self {
        Self {
            limit,
            window: window.max(Duration::from_millis(1)),
            origin,
            index: 0,
            used: 0,
        }
    }

    fn check(&mut self, now: Instant) -> WindowVerdict {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let window = self.window.as_nanos();
        let index = u64::try_from(elapsed / window).unwrap_or(u64::MAX);
        if index != self.index {
            self.index = index;
            self.used = 0;
        }
        let left_nanos = window - elapsed % window;
        let reset_secs = u64::try_from(left_nanos.div_ceil(1_000_000_000))
            .unwrap_or(u64::MAX)
            .max(1);
        let allowed = self.used < self.limit;
        if allowed {
            self.used += 1;
        }
        WindowVerdict {
            allowed,
            remaining: self.limit - self.used.min(self.limit),
            reset_secs,
        }
    }

    /// The window length in whole seconds (at least 1), for `RateLimit-Policy`.
    fn window_secs(&self) -> u64 {
        u64::try_from(self.window.as_nanos().div_ceil(1_000_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/flaky", get(flaky).post(flaky))
        .route("/slow", get(slow).post(slow))
        .route("/limited", get(limited).post(limited))
        .route("/dead", get(dead).post(dead))
        .route("/ok", get(ok).post(ok))
        .with_state(shared)
}

/// Inserts a header whose value is built from ASCII digits and punctuation;
/// a value that is somehow invalid is left out rather than failing the request.
fn put(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

async fn flaky(State(shared): State<Arc<Shared>>) -> Response {
    let n = next(&shared.hits.flaky);
    let config = &shared.config;
    if config.bad_gateway_every > 0 && n % config.bad_gateway_every == 0 {
        let body = json!({ "endpoint": "flaky", "request": n, "error": "bad gateway" });
        return (StatusCode::BAD_GATEWAY, Json(body)).into_response();
    }
    if config.failure_every > 0 && n % config.failure_every == 0 {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from(config.retry_after_secs));
        let body = json!({ "endpoint": "flaky", "request": n, "error": "overloaded" });
        return (StatusCode::SERVICE_UNAVAILABLE, headers, Json(body)).into_response();
    }
    let body = json!({ "endpoint": "flaky", "request": n, "ok": true });
    (StatusCode::OK, Json(body)).into_response()
}

async fn slow(State(shared): State<Arc<Shared>>) -> Response {
    let n = next(&shared.hits.slow);
    let config = &shared.config;
    let delay = if config.slow_every > 0 && n % config.slow_every == 0 {
        config.slow_long_delay
    } else {
        config.slow_delay
    };
    shared.sleep(delay).await;
    let delay_ms = u64::try_from(delay.min(MAX_SLEEP).as_millis()).unwrap_or(u64::MAX);
    let body = json!({ "endpoint": "slow", "request": n, "ok": true, "delay_ms": delay_ms });
    (StatusCode::OK, Json(body)).into_response()
}

async fn limited(State(shared): State<Arc<Shared>>) -> Response {
    let n = next(&shared.hits.limited);
    let (verdict, limit, window_secs) = {
        // A poisoned lock only means another handler panicked mid-update;
        // the counter is still usable.
        let mut window = shared
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            window.check(Instant::now()),
            window.limit,
            window.window_secs(),
        )
    };
    let mut headers = HeaderMap::new();
    put(
        &mut headers,
        RATELIMIT,
        format!(
            "limit={limit}, remaining={}, reset={}",
            verdict.remaining, verdict.reset_secs
        ),
    );
    put(
        &mut headers,
        RATELIMIT_POLICY,
        format!("{limit};w={window_secs}"),
    );
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(limit));
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(verdict.remaining));
    headers.insert(X_RATELIMIT_RESET, HeaderValue::from(verdict.reset_secs));
    if verdict.allowed {
        let body = json!({ "endpoint": "limited", "request": n, "ok": true, "remaining": verdict.remaining });
        (StatusCode::OK, headers, Json(body)).into_response()
    } else {
        headers.insert(RETRY_AFTER, HeaderValue::from(verdict.reset_secs));
        let body = json!({
            "endpoint": "limited",
            "request": n,
            "error": "rate limited",
            "retry_after": verdict.reset_secs,
        });
        (StatusCode::TOO_MANY_REQUESTS, headers, Json(body)).into_response()
    }
}

async fn dead(State(shared): State<Arc<Shared>>) -> Response {
    let n = next(&shared.hits.dead);
    let body = json!({ "endpoint": "dead", "request": n, "error": "dependency down" });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn ok(State(shared): State<Arc<Shared>>) -> Response {
    let n = next(&shared.hits.ok);
    let body = json!({ "endpoint": "ok", "request": n, "ok": true });
    (StatusCode::OK, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    type TestResult = Result<(), Box<dyn Error>>;

    /// One parsed HTTP/1.1 response.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: serde_json::Value,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends one request over a fresh connection and reads the whole answer.
    async fn send(addr: SocketAddr, method: &str, path: &str) -> Result<Reply, Box<dyn Error>> {
        let mut stream = TcpStream::connect(addr).await?;
        let body = if method == "POST" { "{}" } else { "" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no header terminator")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or("no status line")?;
        let status = status_line
            .split(' ')
            .nth(1)
            .ok_or("no status code")?
            .parse()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let body = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(body)?
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn get(addr: SocketAddr, path: &str) -> Result<Reply, Box<dyn Error>> {
        send(addr, "GET", path).await
    }

    #[tokio::test]
    async fn base_url_points_at_localhost() -> TestResult {
        let upstream = Upstream::start(UpstreamConfig::default()).await?;
        let port = upstream.addr().port();
        assert!(port > 0);
        assert_eq!(upstream.base_url(), format!("http://127.0.0.1:{port}"));
        assert_eq!(upstream.url("/ok"), format!("http://127.0.0.1:{port}/ok"));
        assert_eq!(upstream.hits(), UpstreamHits::default());
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn ok_answers_200_to_get_and_post() -> TestResult {
        let upstream = Upstream::start(UpstreamConfig::default()).await?;
        let reply = get(upstream.addr(), "/ok").await?;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["endpoint"], "ok");
        assert_eq!(reply.body["request"], 1);
        assert!(reply
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json")));
        let reply = send(upstream.addr(), "POST", "/ok").await?;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["request"], 2);
        assert_eq!(upstream.hits().ok, 2);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn flaky_fails_deterministically_by_counter() -> TestResult {
        let upstream = Upstream::start(UpstreamConfig::default()).await?;
        for n in 1..=21_u64 {
            let method = if n % 2 == 0 { "POST" } else { "GET" };
            let reply = send(upstream.addr(), method, "/flaky").await?;
            assert_eq!(reply.body["request"], n);
            if n % 7 == 0 {
                assert_eq!(reply.status, 502, "request {n}");
                assert_eq!(reply.header("retry-after"), None, "request {n}");
            } else if n % 3 == 0 {
                assert_eq!(reply.status, 503, "request {n}");
                assert_eq!(reply.header("retry-after"), Some("1"), "request {n}");
            } else {
                assert_eq!(reply.status, 200, "request {n}");
                assert_eq!(reply.header("retry-after"), None, "request {n}");
            }
        }
        assert_eq!(upstream.hits().flaky, 21);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn flaky_periods_are_configurable_and_zero_disables() -> TestResult {
        let config = UpstreamConfig {
            failure_every: 2,
            bad_gateway_every: 0,
            retry_after_secs: 4,
            ..UpstreamConfig::default()
        };
        let upstream = Upstream::start(config).await?;
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let reply = get(upstream.addr(), "/flaky").await?;
            if reply.status == 503 {
                assert_eq!(reply.header("retry-after"), Some("4"));
            }
            statuses.push(reply.status);
        }
        assert_eq!(statuses, [200, 503, 200, 503, 200, 503, 200, 503]);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn slow_waits_and_every_nth_waits_longer() -> TestResult {
        let config = UpstreamConfig {
            slow_delay: Duration::from_millis(20),
            slow_every: 2,
            slow_long_delay: Duration::from_millis(400),
            ..UpstreamConfig::default()
        };
        let upstream = Upstream::start(config).await?;
        let started = Instant::now();
        let reply = get(upstream.addr(), "/slow").await?;
        let short = started.elapsed();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["delay_ms"], 20);
        assert!(short >= Duration::from_millis(20), "{short:?}");
        assert!(short < Duration::from_millis(350), "{short:?}");

        let started = Instant::now();
        let reply = get(upstream.addr(), "/slow").await?;
        let long = started.elapsed();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["delay_ms"], 400);
        assert!(long >= Duration::from_millis(400), "{long:?}");
        assert_eq!(upstream.hits().slow, 2);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_cuts_a_long_sleep_short() -> TestResult {
        let config = UpstreamConfig {
            slow_every: 1,
            slow_long_delay: Duration::from_secs(60),
            ..UpstreamConfig::default()
        };
        let upstream = Upstream::start(config).await?;
        let addr = upstream.addr();
        let pending = tokio::spawn(async move { get(addr, "/slow").await.map(|r| r.status).ok() });
        // Let the request reach the handler before stopping.
        while upstream.hits().slow == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        upstream.shutdown().await;
        assert!(
            started.elapsed() < SHUTDOWN_GRACE,
            "{:?}",
            started.elapsed()
        );
        let status = tokio::time::timeout(Duration::from_secs(5), pending).await??;
        // The in-flight request is still answered (graceful shutdown).
        assert_eq!(status, Some(200));
        Ok(())
    }

    #[tokio::test]
    async fn limited_answers_429_with_headers_after_its_limit() -> TestResult {
        let config = UpstreamConfig {
            limit: 3,
            window: Duration::from_secs(60),
            ..UpstreamConfig::default()
        };
        let upstream = Upstream::start(config).await?;
        for remaining in [2_u64, 1, 0] {
            let reply = get(upstream.addr(), "/limited").await?;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("retry-after"), None);
            assert_eq!(reply.header("ratelimit-policy"), Some("3;w=60"));
            assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
            let remaining_text = remaining.to_string();
            assert_eq!(
                reply.header("x-ratelimit-remaining"),
                Some(remaining_text.as_str())
            );
            let reset: u64 = reply.header("x-ratelimit-reset").ok_or("reset")?.parse()?;
            assert!((1..=60).contains(&reset), "{reset}");
            assert_eq!(
                reply.header("ratelimit"),
                Some(format!("limit=3, remaining={remaining}, reset={reset}").as_str())
            );
        }
        let reply = send(upstream.addr(), "POST", "/limited").await?;
        assert_eq!(reply.status, 429);
        let retry_after: u64 = reply.header("retry-after").ok_or("retry-after")?.parse()?;
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(
            reply.header("x-ratelimit-reset"),
            Some(retry_after.to_string().as_str())
        );
        assert_eq!(
            reply.header("ratelimit"),
            Some(format!("limit=3, remaining=0, reset={retry_after}").as_str())
        );
        assert_eq!(reply.header("ratelimit-policy"), Some("3;w=60"));
        assert_eq!(reply.body["retry_after"], retry_after);
        // Refused requests are hits too.
        assert_eq!(upstream.hits().limited, 4);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn dead_always_answers_503_without_retry_after() -> TestResult {
        let upstream = Upstream::start(UpstreamConfig::default()).await?;
        for _ in 0..5 {
            let reply = get(upstream.addr(), "/dead").await?;
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("retry-after"), None);
            assert_eq!(reply.body["error"], "dependency down");
        }
        assert_eq!(upstream.hits().dead, 5);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn counters_are_per_endpoint_and_unknown_paths_are_not_counted() -> TestResult {
        let upstream = Upstream::start(UpstreamConfig::default()).await?;
        for path in ["/ok", "/ok", "/dead", "/flaky", "/limited", "/nope"] {
            get(upstream.addr(), path).await?;
        }
        let reply = get(upstream.addr(), "/nope").await?;
        assert_eq!(reply.status, 404);
        let hits = upstream.hits();
        assert_eq!(
            hits,
            UpstreamHits {
                flaky: 1,
                slow: 0,
                limited: 1,
                dead: 1,
                ok: 2,
            }
        );
        assert_eq!(hits.total(), 5);
        upstream.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn dropping_the_upstream_stops_the_server() -> TestResult {
        let upstream = Upstream::start(UpstreamConfig::default()).await?;
        let addr = upstream.addr();
        assert_eq!(get(addr, "/ok").await?.status, 200);
        drop(upstream);
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the listener is still open after drop");
        Ok(())
    }

    #[test]
    fn fixed_window_counts_per_window_aligned_to_its_origin() {
        let origin = Instant::now();
        let mut window = FixedWindow::new(2, Duration::from_secs(1), origin);
        let at = |ms| origin + Duration::from_millis(ms);
        let first = window.check(at(100));
        assert_eq!(
            first,
            WindowVerdict {
                allowed: true,
                remaining: 1,
                reset_secs: 1
            }
        );
        assert!(window.check(at(200)).allowed);
        let refused = window.check(at(999));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // The next window starts exactly one window after the origin.
        let next = window.check(at(1000));
        assert!(next.allowed);
        assert_eq!(next.remaining, 1);
        // Skipping windows resets as well.
        assert_eq!(window.check(at(5_500)).remaining, 1);
        assert_eq!(window.window_secs(), 1);
    }

    #[test]
    fn fixed_window_reset_rounds_up_to_whole_seconds() {
        let origin = Instant::now();
        let mut window = FixedWindow::new(1, Duration::from_secs(10), origin);
        assert_eq!(window.check(origin).reset_secs, 10);
        assert_eq!(
            window
                .check(origin + Duration::from_millis(2_500))
                .reset_secs,
            8
        );
        assert_eq!(
            window
                .check(origin + Duration::from_millis(9_999))
                .reset_secs,
            1
        );
        let mut tiny = FixedWindow::new(1, Duration::from_millis(1500), origin);
        assert_eq!(tiny.window_secs(), 2);
        assert_eq!(tiny.check(origin).reset_secs, 2);
    }
}
