//! A login endpoint protected by two limiters that must both pass:
//!
//! - `login_ip`: 10 attempts per 5 minutes per client address (sliding window). The
//!   address comes from [`ClientIp`], which trusts `127.0.0.1/32`, so a reverse proxy on
//!   the same host (nginx, Caddy) can pass the real client in `X-Forwarded-For` or
//!   `Forwarded`; any other peer is keyed by its own address and its headers are ignored.
//! - `login_user`: 5 attempts per 15 minutes per credential (sliding window,
//!   fail-closed: if the store cannot answer, logins are refused with 503 rather than
//!   admitted unlimited). The layer sees only the request's head (method, URI, headers,
//!   peer), never the body, so the credential is read from the `x-login-user` header,
//!   hashed by [`HeaderKey`] before it becomes a key. A request without it is keyed by
//!   its client address instead of sharing one anonymous budget.
//!
//! A credential denial consumes nothing from the address's quota: guessing one user's
//! password does not lock the whole office behind the same NAT out of logging in.
//!
//! Also mounted: `GET /health` (store reachability) and `GET /metrics` (Prometheus
//! text), and correlation ids (`x-request-id`) on every response.
//!
//! ```text
//! cargo run -p httpower-tower --example login_protection -- --self-test
//! cargo run -p httpower-tower --example login_protection -- --port 3000
//! curl -i -X POST -H 'x-login-user: alice' http://127.0.0.1:3000/login
//! ```
//!
//! Flags: `--port N` (default 3000; 0 picks a free port and prints it), `--self-test`
//! (serve on a free port, make 18 attempts, print and check the answers, exit), `--redis URL`
//! (both limiters on a shared Redis store, so every instance of the app counts against
//! the same budgets; `/health` then reports Redis's reachability and latency).
//!
//! ```text
//! cargo run -p httpower-tower --example login_protection -- --redis redis://127.0.0.1:6379 --self-test
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use http::header::HeaderName;
use httpower_core::rate::{SlidingWindow, WindowQuota};
use httpower_core::store::{CompositeMode, FailMode, Limiter, MemoryStore, Store};
use httpower_redis::RedisStore;
use httpower_tower::correlation::CorrelationLayer;
use httpower_tower::health::{metrics_router, Health};
use httpower_tower::key::{ClientIp, HeaderKey};
use httpower_tower::RateLimitLayer;
use serde_json::json;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The header the login form's front end copies the username into.
const USER_HEADER: &str = "x-login-user";

#[derive(Debug)]
struct Args {
    port: u16,
    self_test: bool,
    redis: Option<String>,
}

const USAGE: &str = "usage: login_protection [--port N] [--self-test] [--redis URL]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 3000,
        self_test: false,
        redis: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--port" => {
                let value = iter.next().ok_or("--port needs a value")?;
                args.port = value
                    .parse()
                    .map_err(|_| format!("--port: `{value}` is not a port number"))?;
            }
            "--self-test" => args.self_test = true,
            "--redis" => args.redis = Some(iter.next().ok_or("--redis needs a URL")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The application: `/login` limited by address and by credential, `/health`,
/// `/metrics`, correlation ids everywhere.
fn app(store: Arc<dyn Store>, store_name: &str) -> Result<Router, BoxError> {
    let per_ip = WindowQuota::new(10, Duration::from_secs(5 * 60))?;
    let per_user = WindowQuota::new(5, Duration::from_secs(15 * 60))?;
    let login_ip =
        Limiter::builder("login_ip", SlidingWindow::new(per_ip)).build(Arc::clone(&store));
    let login_user = Limiter::builder("login_user", SlidingWindow::new(per_user))
        .fail_mode(FailMode::Closed)
        .build(Arc::clone(&store));

    // Trust only a proxy on this host; everyone else is keyed by the connection's peer.
    let client_ip = ClientIp::new(["127.0.0.1/32".parse()?]);
    let credential =
        HeaderKey::new(HeaderName::from_static(USER_HEADER)).or_else(client_ip.clone());

    let limits = RateLimitLayer::builder()
        .limit(login_ip, client_ip)
        .limit(login_user, credential)
        .mode(CompositeMode::AllMustPass)
        .include("/login")
        .build()?;

    let metrics = httpower::observe::prometheus::install()?;
    let health = Health::new().store(store_name, store);

    Ok(Router::new()
        .route("/login", post(login))
        .merge(health.router())
        .merge(metrics_router(metrics))
        .layer(limits)
        .layer(CorrelationLayer::new()))
}

/// Stands in for the real password check.
async fn login(headers: HeaderMap) -> impl IntoResponse {
    match headers.get(USER_HEADER).and_then(|v| v.to_str().ok()) {
        Some(user) if !user.is_empty() => {
            (StatusCode::OK, Json(json!({ "welcome": user }))).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("missing `{USER_HEADER}` header") })),
        )
            .into_response(),
    }
}

async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// One login attempt as `user`: the status and, on a denial, the limiter that denied.
async fn attempt(
    client: &reqwest::Client,
    base: &str,
    user: &str,
) -> Result<(u16, String), BoxError> {
    let response = client
        .post(format!("{base}/login"))
        .header(USER_HEADER, user)
        .send()
        .await?;
    let status = response.status().as_u16();
    let detail = match status {
        429 | 503 => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            let body: serde_json::Value = response.json().await?;
            format!(
                "denied by {} (Retry-After: {retry_after})",
                body["limiter"].as_str().unwrap_or("?")
            )
        }
        _ => {
            let ratelimit = response
                .headers()
                .get("ratelimit")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            format!("RateLimit: {ratelimit}")
        }
    };
    Ok((status, detail))
}

/// Serves on a free port and checks the answers: 12 attempts as one user (the
/// credential limit admits 5), then 5 as a second user (admitted: the first user's
/// denials spent nothing of the address's 10), then 1 as a third (the address's quota is
/// now spent).
async fn self_test(app: Router) -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("self-test: serving on {base}");
    tokio::spawn(serve(listener, app));

    let client = reqwest::Client::builder().no_proxy().build()?;
    // (user, attempts, how many are admitted, the limiter that denies the rest)
    let plan = [
        ("alice", 12, 5, "login_user"),
        ("bob", 5, 5, ""),
        ("carol", 1, 0, "login_ip"),
    ];
    let mut failures = Vec::new();
    for (user, attempts, admitted, denier) in plan {
        for n in 1..=attempts {
            let (status, detail) = attempt(&client, &base, user).await?;
            println!("{user:>5} attempt {n:>2}: {status} {detail}");
            let ok = if n <= admitted {
                status == 200
            } else {
                status == 429 && detail.starts_with(&format!("denied by {denier} "))
            };
            if !ok {
                failures.push(format!("{user} attempt {n}: {status} {detail}"));
            }
        }
    }

    for path in ["/health", "/metrics"] {
        let response = client.get(format!("{base}{path}")).send().await?;
        let status = response.status().as_u16();
        println!("GET {path}: {status}");
        if status != 200 {
            failures.push(format!("GET {path}: {status}"));
        }
    }

    if !failures.is_empty() {
        return Err(format!("unexpected answers:\n  {}", failures.join("\n  ")).into());
    }
    println!(
        "self-test passed: alice 5×200 then 429 from login_user; bob 5×200 (alice's denials \
         cost the address nothing); carol 429 from login_ip (10 per address spent)"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let (store, store_name): (Arc<dyn Store>, &str) = match &args.redis {
        Some(url) => {
            // A self-test starts from empty budgets: its keys get a prefix of their own.
            let prefix = if args.self_test {
                format!("login-example-{}", std::process::id())
            } else {
                "login-example".to_owned()
            };
            match RedisStore::builder(url.as_str()).key_prefix(prefix).build() {
                Ok(store) => (Arc::new(store), "redis"),
                Err(err) => {
                    eprintln!("--redis: {err}");
                    return ExitCode::from(2);
                }
            }
        }
        None => (Arc::new(MemoryStore::new()), "memory"),
    };
    let app = match app(store, store_name) {
        Ok(app) => app,
        Err(err) => {
            eprintln!("cannot build the app: {err}");
            return ExitCode::FAILURE;
        }
    };

    let result = if args.self_test {
        self_test(app).await
    } else {
        run(app, args.port).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(app: Router, port: u16) -> Result<(), BoxError> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!("  POST /login  (header {USER_HEADER}: <username>)");
    println!("  GET  /health");
    println!("  GET  /metrics");
    serve(listener, app).await?;
    Ok(())
}
