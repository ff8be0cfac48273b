//! The `httpower` command.
//!
//! For now a smoke run of the demo's pieces: it starts the embedded upstream,
//! sends one request to each endpoint and prints a summary.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod demo;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use demo::report::{render_summary, ClientReport};
use demo::upstream::{Upstream, UpstreamConfig};

/// Sends `GET path` over a fresh connection and returns the status code.
async fn status_of(upstream: &Upstream, path: &str) -> std::io::Result<u16> {
    let addr = upstream.addr();
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))
}

async fn smoke() -> std::io::Result<()> {
    let started = Instant::now();
    let config = UpstreamConfig {
        slow_long_delay: Duration::from_millis(200),
        ..UpstreamConfig::default()
    };
    let upstream = Upstream::start(config).await?;
    println!(
        "upstream on {} (limit {} per {:?})",
        upstream.base_url(),
        upstream.config().limit,
        upstream.config().window
    );
    let mut report = ClientReport::new("smoke");
    for path in ["/ok", "/flaky", "/slow", "/limited", "/dead"] {
        let sent = Instant::now();
        let status = status_of(&upstream, path).await?;
        report.record_attempts(1);
        if status < 400 {
            report.record_success(sent.elapsed());
        } else {
            report.record_failure(status.to_string(), sent.elapsed());
            report.record_retry(status.to_string());
        }
        println!("{} -> {status}", upstream.url(path));
    }
    report.record_transition("closed", "open");
    report.record_limiter_wait(Duration::from_millis(5));
    report.record_limiter_denial();
    println!("{} retries recorded", report.retries());
    let hits = upstream.hits();
    upstream.shutdown().await;
    print!(
        "{}",
        render_summary(&[report], Some(&hits), started.elapsed())
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match smoke().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("httpower: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
