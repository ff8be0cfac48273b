//! `ClientIp` behind a real axum server on 127.0.0.1, over real HTTP: forwarding headers
//! are believed only from a trusted peer, the right-most untrusted hop is the client, and
//! a malformed header falls back to the peer without ever turning into an error page.
//!
//! Every server admits 2 requests per minute per key, on a memory store whose clock never
//! moves, so the third request with the same key is a 429 however slow the machine. The
//! handler answers with the key the extractor made, so each case checks both the key and
//! what the layer did with it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::routing::post;
use axum::Router;
use http::HeaderValue;
use httpower_core::clock::ManualClock;
use httpower_core::rate::{FixedWindow, WindowQuota};
use httpower_core::store::{Limiter, MemoryStore, Store};
use httpower_tower::extract::{KeyExtractor, RequestParts};
use httpower_tower::key::ClientIp;
use httpower_tower::RateLimitLayer;
use tokio::net::TcpListener;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Answers with the key `ClientIp` makes of the request, as the layer saw it.
async fn echo_key(State(extractor): State<ClientIp>, request: Request) -> String {
    extractor.extract(&RequestParts::of(&request))
}

/// A server on 127.0.0.1 whose `POST /login` admits 2 per minute per `ClientIp` key,
/// trusting `trusted` as proxies. Returns the base URL.
async fn serve(trusted: &[&str]) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let nets = trusted
        .iter()
        .map(|net| net.parse())
        .collect::<Result<Vec<ipnet::IpNet>, _>>()?;
    let extractor = ClientIp::new(nets);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(ManualClock::new()));
    let quota = WindowQuota::new(2, Duration::from_secs(60))?;
    let limiter = Limiter::builder("login", FixedWindow::new(quota)).build(store);
    let app = Router::new()
        .route("/login", post(echo_key))
        .with_state(extractor.clone())
        .layer(RateLimitLayer::new(limiter, extractor));

    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
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

/// A client that connects from 127.0.0.1 only, never through a proxy.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(LOOPBACK)
        .build()
}

/// `POST /login` with `headers`: the status and the body (the key when admitted).
async fn login(
    client: &reqwest::Client,
    base: &str,
    headers: &[(&str, HeaderValue)],
) -> reqwest::Result<(u16, String)> {
    let mut request = client.post(format!("{base}/login"));
    for (name, value) in headers {
        request = request.header(*name, value.clone());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

fn xff(value: &str) -> [(&'static str, HeaderValue); 1] {
    [(
        "x-forwarded-for",
        HeaderValue::from_str(value).unwrap_or_else(|_| unreachable!()),
    )]
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_key_with_x_forwarded_for() -> TestResult {
    let base = serve(&["10.0.0.0/8"]).await?;
    let client = client()?;
    let first = login(&client, &base, &xff("198.51.100.1")).await?;
    assert_eq!(first, (200, "ip:127.0.0.1".to_owned()));
    let second = login(&client, &base, &xff("198.51.100.2")).await?;
    assert_eq!(second, (200, "ip:127.0.0.1".to_owned()));
    let (status, body) = login(&client, &base, &xff("198.51.100.3")).await?;
    assert_eq!(
        status, 429,
        "a fresh X-Forwarded-For bought a fresh budget: {body}"
    );
    // Nor with the other headers.
    let forwarded = [("forwarded", HeaderValue::from_static("for=198.51.100.4"))];
    assert_eq!(login(&client, &base, &forwarded).await?.0, 429);
    let real_ip = [("x-real-ip", HeaderValue::from_static("198.51.100.5"))];
    assert_eq!(login(&client, &base, &real_ip).await?.0, 429);
    Ok(())
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_key() -> TestResult {
    let base = serve(&["127.0.0.1/32"]).await?;
    let client = client()?;
    for n in 1..=5 {
        let ip = format!("203.0.113.{n}");
        let (status, key) = login(&client, &base, &xff(&ip)).await?;
        assert_eq!((status, key), (200, format!("ip:{ip}")));
    }
    // The same client again: its own budget of 2 runs out, the others' are untouched.
    assert_eq!(login(&client, &base, &xff("203.0.113.1")).await?.0, 200);
    assert_eq!(login(&client, &base, &xff("203.0.113.1")).await?.0, 429);
    assert_eq!(login(&client, &base, &xff("203.0.113.2")).await?.0, 200);
    // The proxy's own requests (no header) are keyed by the proxy.
    let (status, key) = login(&client, &base, &[]).await?;
    assert_eq!((status, key.as_str()), (200, "ip:127.0.0.1"));
    Ok(())
}

#[tokio::test]
async fn the_right_most_untrusted_hop_is_the_client() -> TestResult {
    let base = serve(&["127.0.0.1/32", "10.0.0.0/8"]).await?;
    let client = client()?;
    let (status, key) = login(&client, &base, &xff("203.0.113.9, 10.1.1.1")).await?;
    assert_eq!((status, key.as_str()), (200, "ip:203.0.113.9"));
    // Whatever the client prepends is never read: same key, same budget.
    let spoofed = xff("6.6.6.6, 203.0.113.9, 10.1.1.1");
    let (status, key) = login(&client, &base, &spoofed).await?;
    assert_eq!((status, key.as_str()), (200, "ip:203.0.113.9"));
    let garbage_left = xff("not-an-ip, 203.0.113.9, 10.2.2.2");
    assert_eq!(login(&client, &base, &garbage_left).await?.0, 429);
    // IPv4-mapped IPv6 is the same client as its IPv4 address.
    assert_eq!(
        login(&client, &base, &xff("::ffff:203.0.113.9, 10.1.1.1"))
            .await?
            .0,
        429
    );
    // Several header lines are one list, nearest hop last.
    let lines = [
        ("x-forwarded-for", HeaderValue::from_static("198.51.100.7")),
        ("x-forwarded-for", HeaderValue::from_static("10.3.3.3")),
    ];
    let (status, key) = login(&client, &base, &lines).await?;
    assert_eq!((status, key.as_str()), (200, "ip:198.51.100.7"));
    Ok(())
}

#[tokio::test]
async fn forwarded_with_an_ipv6_client_and_a_port() -> TestResult {
    let base = serve(&["127.0.0.1/32"]).await?;
    let client = client()?;
    let v6 = [(
        "forwarded",
        HeaderValue::from_static(r#"for="[2001:db8::1]:4711";proto=https"#),
    )];
    for _ in 0..2 {
        let (status, key) = login(&client, &base, &v6).await?;
        assert_eq!((status, key.as_str()), (200, "ip:2001:db8::1"));
    }
    assert_eq!(login(&client, &base, &v6).await?.0, 429);
    // Another IPv6 client, written differently (unquoted names, mixed case), has its own.
    let other = [(
        "forwarded",
        HeaderValue::from_static(r#"For="[2001:DB8::2]";by=_proxy"#),
    )];
    let (status, key) = login(&client, &base, &other).await?;
    assert_eq!((status, key.as_str()), (200, "ip:2001:db8::2"));
    Ok(())
}

#[tokio::test]
async fn malformed_headers_fall_back_to_the_peer_and_never_error() -> TestResult {
    let base = serve(&["127.0.0.1/32"]).await?;
    let client = client()?;
    let malformed: Vec<(&str, HeaderValue)> = vec![
        ("x-forwarded-for", HeaderValue::from_static("not-an-ip")),
        (
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, garbage"),
        ),
        ("x-forwarded-for", HeaderValue::from_static("999.1.1.1")),
        (
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9:99999"),
        ),
        ("x-forwarded-for", HeaderValue::from_static("[2001:db8::1")),
        ("x-forwarded-for", HeaderValue::from_static(",")),
        (
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.\xff")?,
        ),
        ("forwarded", HeaderValue::from_static("for=_hidden")),
        ("forwarded", HeaderValue::from_static("for=unknown")),
        ("forwarded", HeaderValue::from_static("proto=https")),
        (
            "forwarded",
            HeaderValue::from_static(r#"for="[2001:db8::1]:4711"#),
        ),
        ("x-real-ip", HeaderValue::from_static("localhost")),
    ];
    let mut statuses = Vec::new();
    for (n, (name, value)) in malformed.iter().enumerate() {
        let (status, body) = login(&client, &base, &[(*name, value.clone())]).await?;
        if status == 200 {
            assert_eq!(body, "ip:127.0.0.1", "{name}: {value:?}");
        }
        assert!(
            status == 200 || status == 429,
            "request {n} ({name}: {value:?}) answered {status}: {body}"
        );
        statuses.push(status);
    }
    // One key, the peer's, for all of them: 2 admitted, the rest over the limit.
    let mut expected = vec![200, 200];
    expected.resize(malformed.len(), 429);
    assert_eq!(statuses, expected);
    Ok(())
}
