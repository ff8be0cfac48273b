//! End-to-end cost of a request through `httpower::Client`, next to bare reqwest and
//! reqwest-middleware with reqwest-retry, all against the same local server in the same
//! run.
//!
//! The server is hyper 1 (HTTP/1.1, keep-alive) on `127.0.0.1:0`, on its own
//! multi-threaded tokio runtime with one worker thread (on a two-core machine a second
//! worker only competes with the client for the cores); it answers `GET /` with `200`
//! and a 13-byte body. The clients run on one current-thread tokio runtime, so the
//! client side of every request costs time on one thread. Every request is a `GET`
//! whose body is read to the end and checked.
//!
//! * `client_c1`: one request per iteration, one at a time (latency).
//! * `client_c64`: 64 concurrent futures (`join_all`), each sending its share of the
//!   iterations' requests one after another; one iteration is 256 requests (throughput).
//! * `client_breakdown_c1`, `client_breakdown_c64`: where httpower's extra time goes —
//!   reqwest with the settings httpower gives it (read and connect timeouts), and
//!   httpower with every policy off.
//!
//! ```sh
//! cargo bench -p httpower --bench client
//! scripts/bench-client            # the same, then the ratios against the targets
//! ```
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures_util::future::join_all;
use http_body_util::Full;
use httpower_core::rate::{Gcra, Quota, Strategy};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// The body of every answer.
const BODY: &[u8] = b"hello, world\n";
/// Concurrent requests in the `client_c64` group.
const CONCURRENCY: usize = 64;
/// Requests each of the concurrent futures sends per iteration.
const PER_TASK: usize = 4;
/// Requests per iteration of the `client_c64` group.
const PER_ITERATION: usize = CONCURRENCY * PER_TASK;

/// The local server: its runtime lives as long as this value.
struct Server {
    addr: SocketAddr,
    _runtime: Runtime,
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = if request.method() == Method::GET && request.uri().path() == "/" {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    *response.status_mut() = status;
    Ok(response)
}

fn start_server() -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                // A connection ends when the client drops it; that is not an error here.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Server {
        addr,
        _runtime: runtime,
    }
}

/// One of the clients under test.
enum Subject {
    Reqwest(reqwest::Client),
    Middleware(ClientWithMiddleware),
    Httpower(httpower::Client),
}

async fn reqwest_get(client: &reqwest::Client, url: &str) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], BODY);
}

async fn middleware_get(client: &ClientWithMiddleware, url: &str) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], BODY);
}

async fn httpower_get(client: &httpower::Client, url: &str) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], BODY);
}

fn bare_reqwest() -> Subject {
    Subject::Reqwest(reqwest::Client::new())
}

fn reqwest_middleware_retry() -> Subject {
    let policy = ExponentialBackoff::builder().build_with_max_retries(3);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .build();
    Subject::Middleware(client)
}

/// httpower as an application would use it: memory-store GCRA limiter (a quota no run
/// reaches), the per-host circuit breaker and retries (both on by default), server
/// feedback on (the default), the default timeouts.
fn httpower_full() -> Subject {
    let quota = Quota::new(10_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let client = httpower::Client::builder()
        .rate_limit(Gcra::new(quota), Strategy::Error)
        .server_feedback(true)
        .build()
        .unwrap();
    assert!(client.limiter().is_some() && client.breakers().is_some());
    Subject::Httpower(client)
}

/// httpower with every policy it lets a caller turn off turned off (the attempt
/// timeout cannot be, and the read and connect timeouts stay on reqwest).
fn httpower_no_policies() -> Subject {
    let client = httpower::Client::builder()
        .no_retry()
        .no_circuit_breaker()
        .server_feedback(false)
        .no_total_timeout()
        .build()
        .unwrap();
    assert!(client.limiter().is_none() && client.breakers().is_none());
    Subject::Httpower(client)
}

/// httpower as `httpower_full`, with its request lines switched off (no `tracing`
/// subscriber and no metrics recorder installed either): what an application that
/// does not look pays for the observability that is compiled in.
fn httpower_logging_off() -> Subject {
    let quota = Quota::new(10_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let client = httpower::Client::builder()
        .rate_limit(Gcra::new(quota), Strategy::Error)
        .logging(httpower::observe::LogOptions::off())
        .build()
        .unwrap();
    Subject::Httpower(client)
}

/// The same client with every span, metric and log line switched off.
fn httpower_telemetry_off() -> Subject {
    let quota = Quota::new(10_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let client = httpower::Client::builder()
        .rate_limit(Gcra::new(quota), Strategy::Error)
        .telemetry(false)
        .build()
        .unwrap();
    Subject::Httpower(client)
}

/// reqwest configured as httpower configures the one under it by default.
fn reqwest_httpower_settings() -> Subject {
    let client = reqwest::Client::builder()
        .user_agent(concat!("httpower/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .unwrap();
    Subject::Reqwest(client)
}

fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A bench id and the constructor of its client.
type Case = (&'static str, fn() -> Subject);

/// How the requests of one iteration are sent.
#[derive(Clone, Copy)]
enum Load {
    /// One request per iteration.
    Sequential,
    /// `PER_ITERATION` requests per iteration, `CONCURRENCY` at a time.
    Concurrent,
}

/// Sends `iters` iterations' worth of requests with `request` under `load`; their
/// total time. Generic, so that each client's request future has its own size.
fn measure<F, Fut>(runtime: &Runtime, load: Load, iters: u64, request: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    runtime.block_on(async {
        let start = Instant::now();
        match load {
            Load::Sequential => {
                for _ in 0..iters {
                    request().await;
                }
            }
            Load::Concurrent => {
                let per_future = iters * PER_TASK as u64;
                let request = &request;
                join_all((0..CONCURRENCY).map(|_| async move {
                    for _ in 0..per_future {
                        request().await;
                    }
                }))
                .await;
            }
        }
        start.elapsed()
    })
}

fn run_group(
    c: &mut Criterion,
    name: &str,
    load: Load,
    subjects: &[Case],
    runtime: &Runtime,
    url: &str,
) {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(5));
    match load {
        Load::Sequential => {
            group.sample_size(100);
            group.throughput(Throughput::Elements(1));
        }
        Load::Concurrent => {
            group.sampling_mode(SamplingMode::Flat);
            group.sample_size(50);
            group.throughput(Throughput::Elements(PER_ITERATION as u64));
        }
    }
    for (id, make) in subjects {
        let subject = make();
        group.bench_function(*id, |b| {
            b.iter_custom(|iters| match &subject {
                Subject::Reqwest(client) => {
                    measure(runtime, load, iters, || reqwest_get(client, url))
                }
                Subject::Middleware(client) => {
                    measure(runtime, load, iters, || middleware_get(client, url))
                }
                Subject::Httpower(client) => {
                    measure(runtime, load, iters, || httpower_get(client, url))
                }
            });
        });
    }
    group.finish();
}

fn clients(c: &mut Criterion) {
    let server = start_server();
    let url = format!("http://{}/", server.addr);
    let runtime = client_runtime();
    let _guard = runtime.enter();

    let compared: [Case; 3] = [
        ("reqwest", bare_reqwest),
        ("reqwest_middleware_retry", reqwest_middleware_retry),
        ("httpower", httpower_full),
    ];
    let breakdown: [Case; 2] = [
        ("reqwest_httpower_settings", reqwest_httpower_settings),
        ("httpower_no_policies", httpower_no_policies),
    ];
    run_group(c, "client_c1", Load::Sequential, &compared, &runtime, &url);
    run_group(c, "client_c64", Load::Concurrent, &compared, &runtime, &url);
    run_group(
        c,
        "client_breakdown_c1",
        Load::Sequential,
        &breakdown,
        &runtime,
        &url,
    );
    run_group(
        c,
        "client_breakdown_c64",
        Load::Concurrent,
        &breakdown,
        &runtime,
        &url,
    );
}

/// Observability's cost, alone: `cargo bench -p httpower --bench client -- telemetry`.
fn telemetry(c: &mut Criterion) {
    let server = start_server();
    let url = format!("http://{}/", server.addr);
    let runtime = client_runtime();
    let _guard = runtime.enter();
    let cases: [Case; 2] = [
        ("httpower_logging_off", httpower_logging_off),
        ("httpower_telemetry_off", httpower_telemetry_off),
    ];
    run_group(
        c,
        "client_telemetry_c1",
        Load::Sequential,
        &cases,
        &runtime,
        &url,
    );
    run_group(
        c,
        "client_telemetry_c64",
        Load::Concurrent,
        &cases,
        &runtime,
        &url,
    );
}

criterion_group!(benches, clients, telemetry);
criterion_main!(benches);
