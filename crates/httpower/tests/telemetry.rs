//! Telemetry: nothing secret leaves the process in logs, spans, metrics or events,
//! while the server still receives every secret unchanged; correlation ids reach the
//! server and every line of their request; the metrics exposition parses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use httpower::observe::{with_correlation_id, LogOptions};
use httpower::Client;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Reply, Server};

/// The tests of this file install thread-local subscribers and recorders; `tracing`
/// caches per call site whether anyone is interested, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything written by the `tracing` subscriber of one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A subscriber writing everything httpower emits, at TRACE, with span fields on every
/// line. (The transport's own TRACE lines are left out: they are reqwest's and hyper's,
/// and only make the capture slower.)
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter(tracing_subscriber::EnvFilter::new("httpower=trace"))
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// The alphanumeric runs of `text` (secrets are `Zq` + hex; cards and order ids are
/// digit runs).
fn tokens(text: &str) -> std::collections::HashSet<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|token| token.len() >= 12)
        .collect()
}

fn secret(rng: &mut StdRng) -> String {
    format!("Zq{:016x}{:08x}", rng.gen::<u64>(), rng.gen::<u32>())
}

/// A card number of `len` digits that passes the Luhn check.
fn luhn_card(rng: &mut StdRng, len: usize) -> String {
    let mut digits: Vec<u32> = (0..len - 1).map(|_| rng.gen_range(0..10)).collect();
    digits[0] = rng.gen_range(3..7);
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                *d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

/// A digit run that fails the Luhn check (an order id).
fn order_id(rng: &mut StdRng) -> String {
    let mut card = luhn_card(rng, 16).into_bytes();
    let last = card.len() - 1;
    card[last] = b'0' + (card[last] - b'0' + 1) % 10;
    String::from_utf8(card).unwrap()
}

fn random_case(rng: &mut StdRng, name: &str) -> String {
    name.chars()
        .map(|c| {
            if rng.gen_bool(0.5) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "cookie",
    "proxy-authorization",
    "x-auth-token",
    "api-key",
];

/// Where a planted secret went, to check what the server received.
enum Planted {
    Header(String),
    Json,
    Form,
    Query,
    Userinfo,
    PathKey,
    Card,
}

#[tokio::test(flavor = "current_thread")]
async fn telemetry_leaks_no_secret() {
    let _serial = SERIAL.lock().await;
    const REQUESTS: usize = 10_000;
    let server = Server::start().await;
    let (captured, _guard) = capture();
    let recorder = httpower::observe::prometheus::recorder().unwrap();
    let metrics_handle = recorder.handle();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let client = Client::builder()
        .name("leaktest")
        .no_retry()
        .no_circuit_breaker()
        .logging(LogOptions {
            enabled: true,
            level: tracing::Level::TRACE,
            headers: true,
            body: true,
        })
        .build()
        .unwrap();
    let mut events = client.subscribe();

    let mut rng = StdRng::seed_from_u64(0x5EC2E7);
    let mut secrets = Vec::with_capacity(REQUESTS);
    let mut kept = Vec::new();
    let mut card_of_last: Option<String> = None;
    for i in 0..REQUESTS {
        let value = secret(&mut rng);
        let path = format!("/r/{i}");
        let kind = i % 7;
        let (request, planted, expected_path) = match kind {
            0 => {
                let name = SECRET_HEADERS[rng.gen_range(0..SECRET_HEADERS.len())];
                let sent_name = random_case(&mut rng, name);
                let header_value = if name.contains("authorization") {
                    format!("Bearer {value}")
                } else {
                    value.clone()
                };
                (
                    client
                        .get(&server.url(&path))
                        .header(&sent_name, &header_value),
                    Planted::Header(name.to_owned()),
                    path.clone(),
                )
            }
            1 => {
                let body = serde_json::json!({
                    "order": {"id": i, "items": [{"sku": "A-1", "meta": {"password": value}}]},
                    "customer": {"credentials": [{"client_secret": value}]},
                });
                (
                    client.post(&server.url(&path)).json(&body),
                    Planted::Json,
                    path.clone(),
                )
            }
            2 => (
                client
                    .post(&server.url(&path))
                    .form(&[("user", "ada"), ("password", value.as_str())]),
                Planted::Form,
                path.clone(),
            ),
            3 => (
                client
                    .get(&server.url(&path))
                    .query([("access_token", value.as_str()), ("page", "2")]),
                Planted::Query,
                path.clone(),
            ),
            4 => {
                let url = format!("http://ada:{value}@{}{path}", server.addr());
                (client.get(&url), Planted::Userinfo, path.clone())
            }
            5 => {
                let key_path = format!("/keys/sk_live_{value}");
                (
                    client.get(&server.url(&key_path)),
                    Planted::PathKey,
                    key_path,
                )
            }
            _ => {
                let card = luhn_card(&mut rng, 16);
                card_of_last = Some(card.clone());
                let order = order_id(&mut rng);
                kept.push(order.clone());
                let body = format!("paid with {card} for order {order}");
                (
                    client
                        .post(&server.url(&path))
                        .header("content-type", "text/plain")
                        .body(body),
                    Planted::Card,
                    path.clone(),
                )
            }
        };
        // The card is the secret of the free-text request.
        let planted_value = match planted {
            Planted::Card => card_of_last.take().unwrap_or_default(),
            _ => value,
        };
        secrets.push((planted_value, planted, expected_path));
        let response = request.send().await.unwrap();
        let _ = response.bytes().await.unwrap();
        // Keep the event channel drained as we go.
        while let Ok(event) = events.try_recv() {
            captured
                .clone()
                .write_all(format!("{event:?}\n").as_bytes())
                .unwrap();
        }
    }

    let mut telemetry = captured.text();
    telemetry.push_str(&metrics_handle.render());
    assert!(telemetry.contains("→ GET"), "request lines were captured");
    assert!(
        telemetry.contains("httpower_requests_total"),
        "metrics were captured"
    );
    // One pass over the output: every token that looks like a planted secret (`Zq` and
    // hex) and every digit run, then set lookups (10,000 substring searches of
    // megabytes of output would take minutes).
    let tokens = tokens(&telemetry);

    for (value, planted, path) in &secrets {
        assert!(
            !tokens.contains(value.as_str()),
            "a planted secret leaked into telemetry: {value}"
        );
        let received = server.requests(path);
        assert_eq!(received.len(), 1, "the server got {path}");
        let got = &received[0];
        let body = String::from_utf8_lossy(&got.body);
        let unchanged = match planted {
            Planted::Header(name) => got
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(value.as_str())),
            Planted::Json | Planted::Form | Planted::Card => body.contains(value.as_str()),
            Planted::Query => got
                .query
                .as_deref()
                .is_some_and(|q| q.contains(value.as_str())),
            Planted::Userinfo => got
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .is_some_and(|decoded| decoded == format!("ada:{value}").into_bytes()),
            Planted::PathKey => got.path.contains(value.as_str()),
        };
        assert!(
            unchanged,
            "the server did not receive {path}'s secret unchanged"
        );
    }
    // A planted secret can only leak inside a longer token if the sanitizer cut it;
    // check that no token even contains the start of one.
    for token in &tokens {
        if token.starts_with("Zq") {
            panic!("a secret-looking token leaked: {token}");
        }
    }
    // Order ids fail the Luhn check: they are not cards, and stay readable.
    for order in &kept {
        assert!(
            telemetry.contains(order.as_str()),
            "order id {order} was redacted"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn correlation_ids_reach_the_server_and_every_line() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let (captured, _guard) = capture();
    let client = Client::builder()
        .no_circuit_breaker()
        .logging(LogOptions {
            level: tracing::Level::INFO,
            ..LogOptions::default()
        })
        .build()
        .unwrap();
    for i in 0..40 {
        server.script(
            &format!("/c/{i}"),
            [
                Reply::status(503).header("retry-after", "0"),
                Reply::ok("done"),
            ],
        );
    }

    // Forty concurrent requests, each under its own id from the caller's context.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            let url = server.url(&format!("/c/{i}"));
            tokio::spawn(with_correlation_id(
                format!("req_caller{i:04}"),
                async move { client.get(&url).send().await.unwrap().status() },
            ))
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }

    let text = captured.text();
    for i in 0..40 {
        let id = format!("req_caller{i:04}");
        for got in server.requests(&format!("/c/{i}")) {
            assert_eq!(got.headers.get("x-request-id").unwrap(), id.as_str());
        }
        let path = format!("/c/{i}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| line.ends_with(&path) || line.contains(&format!("{path} ")))
            .collect();
        assert!(lines.len() >= 2, "request and response lines for /c/{i}");
        for line in lines {
            assert!(line.contains(&id), "line without its id: {line}");
            for other in (0..40).filter(|j| *j != i) {
                assert!(
                    !line.contains(&format!("req_caller{other:04}")),
                    "ids mixed: {line}"
                );
            }
        }
        // The retry line of that request carries the id too.
        assert!(text
            .lines()
            .any(|line| line.contains("retrying") && line.contains(&id)));
    }

    // Without a context, an id is generated: req_ + 16 hex digits.
    server.script("/gen", [Reply::ok("ok")]);
    client.get(&server.url("/gen")).send().await.unwrap();
    let id = server.requests("/gen")[0]
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 20);
    assert!(id.starts_with("req_"));
    assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test(flavor = "current_thread")]
async fn prometheus_exposition_parses() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let recorder = httpower::observe::prometheus::recorder().unwrap();
    let handle = recorder.handle();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    httpower::observe::metrics::describe();
    server.script("/ok", [Reply::ok("ok")]);
    server.script(
        "/flaky",
        [
            Reply::status(503).header("retry-after", "0"),
            Reply::ok("ok"),
        ],
    );
    server.script("/dead", [Reply::status(500)]);
    let client = Client::builder()
        .name("parsetest")
        .rate_limit(
            httpower_core::rate::Gcra::new(httpower_core::rate::Quota::per_second(
                std::num::NonZeroU32::new(1000).unwrap(),
            )),
            httpower_core::rate::Strategy::Error,
        )
        .circuit_breaker(
            httpower_core::breaker::BreakerConfig::builder()
                .failure_threshold(2)
                .build()
                .unwrap(),
        )
        .retry(
            httpower_core::retry::RetryPolicy::builder()
                .max_retries(1)
                .base_delay(std::time::Duration::from_millis(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    for path in ["/ok", "/flaky", "/dead", "/dead", "/dead"] {
        let _ = client.get(&server.url(path)).send().await;
    }
    // Let the breaker watcher record the transition.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let text = handle.render();
    for name in [
        "httpower_requests_total",
        "httpower_request_duration_seconds",
        "httpower_attempt_duration_seconds",
        "httpower_retries_total",
        "httpower_rate_limit_decisions_total",
        "httpower_circuit_breaker_transitions_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(!text.contains("127.0.0.1/"), "no URL in labels");

    let path = std::env::temp_dir().join(format!("httpower-exposition-{}.txt", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let check = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             families = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n\
             assert families, 'no metric families'\n\
             print(len(families))\n",
        )
        .arg(&path)
        .output()
        .expect(
            "python3 is needed to parse the exposition (scripts/test installs prometheus-client)",
        );
    let _ = std::fs::remove_file(&path);
    assert!(
        check.status.success(),
        "the Prometheus parser rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
    let families: usize = String::from_utf8_lossy(&check.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(families >= 6, "{families} families parsed");
}

#[tokio::test(flavor = "current_thread")]
async fn events_reach_subscribers_sanitized() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    server.script(
        "/pay",
        [
            Reply::status(503).header("retry-after", "0"),
            Reply::status(503),
        ],
    );
    let client = Client::builder()
        .name("events")
        .circuit_breaker(
            httpower_core::breaker::BreakerConfig::builder()
                .failure_threshold(1)
                .build()
                .unwrap(),
        )
        .retry(
            httpower_core::retry::RetryPolicy::builder()
                .max_retries(1)
                .base_delay(std::time::Duration::from_millis(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut events = client.subscribe();
    let url = format!(
        "http://ada:hunter2@{}/pay?api_key=Zq0123456789abcdef&page=2",
        server.addr()
    );
    let response = client.get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 2));
    // The breaker opened: the next call fails fast and says so.
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.name(), "service_unavailable");

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(std::time::Duration::from_millis(100), events.recv()).await {
            Ok(Ok(event)) => seen.push(event),
            _ => tokio::task::yield_now().await,
        }
    }
    let names: Vec<&str> = seen.iter().map(|event| event.name()).collect();
    assert!(names.contains(&"retry"), "{names:?}");
    assert!(names.contains(&"breaker_state_change"), "{names:?}");
    assert!(names.contains(&"circuit_open"), "{names:?}");
    for event in &seen {
        let shown = format!("{event:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("Zq0123456789abcdef"), "{shown}");
        if let Some(request) = event.request() {
            assert!(request.url.contains("/pay"), "{shown}");
            assert!(request.correlation_id.starts_with("req_"), "{shown}");
        }
    }
}
