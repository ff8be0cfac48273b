//! Throughput of an axum hello-world behind `RateLimitLayer`, next to the same app with
//! no layer and with `tower_governor`, all in the same run over loopback.
//!
//! Every variant is its own server: axum 0.8 (`GET /` → `"hello"`) on `127.0.0.1:0`,
//! served with `into_make_service_with_connect_info::<SocketAddr>()` on its own
//! multi-threaded tokio runtime with one worker thread. The load generator is hyper 1's
//! HTTP/1.1 client on one current-thread tokio runtime: 64 keep-alive connections,
//! opened before measuring, each sending its share of the requests one after another.
//! One criterion iteration is one request (`iter_custom`, split over the 64
//! connections), so the figures are requests per second. Every answer is checked: a
//! `200` with the body `hello`, so a denial fails the bench.
//!
//! * `none`: no layer.
//! * `httpower`: `RateLimitLayer::new` with a GCRA limiter on a `MemoryStore`, keyed by
//!   `PeerIp`; quota 10,000,000 per second, burst 1,000,000 (all requests come from
//!   127.0.0.1, one key; nothing is denied). It adds `RateLimit` and `RateLimit-Policy`
//!   headers to every answer.
//! * `tower_governor`: `GovernorLayer` with `PeerIpKeyExtractor`, one cell per 100 ns,
//!   burst 1,000,000 (the same GCRA), no headers (its default `NoOpMiddleware`).
//! * `tower_governor_headers`: the same with `use_headers()` (`x-ratelimit-*` headers),
//!   the closest to what httpower sends.
//!
//! ```sh
//! cargo bench -p httpower-tower --bench layer
//! scripts/bench-layer            # the same, then the ratios against the targets
//! ```
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty};
use httpower_core::rate::{Gcra, Quota};
use httpower_core::store::{Limiter, MemoryStore};
use httpower_tower::key::PeerIp;
use httpower_tower::layer::RateLimitLayer;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

/// Keep-alive connections (and concurrent requests).
const CONNECTIONS: usize = 64;
/// The quota of both limiters: far above anything this load reaches.
const RATE_PER_SECOND: u32 = 10_000_000;
const BURST: u32 = 1_000_000;

/// One server: its runtime lives as long as this value.
struct Server {
    addr: SocketAddr,
    _runtime: Runtime,
}

fn serve(app: Router) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server {
        addr,
        _runtime: runtime,
    }
}

async fn hello() -> &'static str {
    "hello"
}

fn app() -> Router {
    Router::new().route("/", get(hello))
}

fn httpower_layer() -> RateLimitLayer {
    let quota = Quota::new(RATE_PER_SECOND, Duration::from_secs(1), BURST).unwrap();
    let limiter = Limiter::builder("bench", Gcra::new(quota)).build(Arc::new(MemoryStore::new()));
    RateLimitLayer::new(limiter, PeerIp::new())
}

/// One cell per `1 s / RATE_PER_SECOND`, the same GCRA as [`httpower_layer`].
fn governor_period() -> Duration {
    Duration::from_nanos(1_000_000_000 / u64::from(RATE_PER_SECOND))
}

/// The load generator: 64 open connections to one server.
struct Load {
    senders: Vec<SendRequest<Empty<Bytes>>>,
    uri: String,
}

impl Load {
    async fn connect(addr: SocketAddr) -> Load {
        let mut senders = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(async move {
                let _ = connection.await;
            });
            senders.push(sender);
        }
        Load {
            senders,
            uri: format!("http://{addr}/"),
        }
    }

    /// Sends `total` requests over the connections; returns the last answer's headers.
    async fn send(&mut self, total: u64) -> Option<http::HeaderMap> {
        let connections = self.senders.len() as u64;
        let uri = self.uri.as_str();
        let answers = join_all(self.senders.iter_mut().enumerate().map(|(i, sender)| {
            let share = total / connections + u64::from((i as u64) < total % connections);
            async move {
                let mut headers = None;
                for _ in 0..share {
                    sender.ready().await.unwrap();
                    let request = Request::get(uri)
                        .header(http::header::HOST, "127.0.0.1")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    let (parts, body) = response.into_parts();
                    assert_eq!(parts.status, StatusCode::OK, "denied or failed");
                    let body = body.collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], b"hello");
                    headers = Some(parts.headers);
                }
                headers
            }
        }))
        .await;
        answers.into_iter().flatten().last()
    }
}

fn layer_throughput(c: &mut Criterion) {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let governor = Arc::new(
        GovernorConfigBuilder::default()
            .period(governor_period())
            .burst_size(BURST)
            .finish()
            .unwrap(),
    );
    let governor_headers = Arc::new(
        GovernorConfigBuilder::default()
            .period(governor_period())
            .burst_size(BURST)
            .use_headers()
            .finish()
            .unwrap(),
    );

    let servers: Vec<(&str, Server)> = vec![
        ("none", serve(app())),
        ("httpower", serve(app().layer(httpower_layer()))),
        (
            "tower_governor",
            serve(app().layer(GovernorLayer::new(Arc::clone(&governor)))),
        ),
        (
            "tower_governor_headers",
            serve(app().layer(GovernorLayer::new(Arc::clone(&governor_headers)))),
        ),
    ];

    let mut loads: Vec<(&str, Load)> = servers
        .iter()
        .map(|(name, server)| (*name, client.block_on(Load::connect(server.addr))))
        .collect();

    // Each variant does what it claims before it is measured.
    for (name, load) in &mut loads {
        let headers = client.block_on(load.send(CONNECTIONS as u64)).unwrap();
        let has = |header: &str| headers.contains_key(header);
        match *name {
            "none" | "tower_governor" => assert!(!has("ratelimit") && !has("x-ratelimit-limit")),
            "httpower" => assert!(has("ratelimit") && has("ratelimit-policy"), "{headers:?}"),
            _ => assert!(has("x-ratelimit-remaining"), "{headers:?}"),
        }
    }
    assert_eq!(governor.limiter().len(), 1, "tower_governor keyed one peer");
    assert_eq!(governor_headers.limiter().len(), 1);

    let mut group = c.benchmark_group("layer_c64");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(6));
    for (name, load) in &mut loads {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                client.block_on(load.send(iters));
                start.elapsed()
            });
        });
    }
    group.finish();
    drop(loads);
    drop(servers);
}

criterion_group!(benches, layer_throughput);
criterion_main!(benches);
