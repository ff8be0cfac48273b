//! The key extractors through the public API, on requests as axum hands them over
//! (peer from `ConnectInfo`) and as other servers do (peer from `PeerAddr`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use http::header::HeaderName;
use httpower_tower::extract::{KeyExtractor, PeerAddr, RequestParts};
use httpower_tower::key::{ClientIp, ForwardedHeader, HeaderKey, PeerIp, UNKNOWN_PEER_KEY};

fn request(peer: Option<&str>, connect_info: bool, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut builder = http::Request::builder().uri("/login");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().unwrap();
        builder = if connect_info {
            builder.extension(ConnectInfo(addr))
        } else {
            builder.extension(PeerAddr(addr))
        };
    }
    builder.body(()).unwrap()
}

fn key(extractor: &dyn KeyExtractor, request: &http::Request<()>) -> String {
    extractor.extract(&RequestParts::of(request))
}

#[test]
fn peer_from_connect_info_or_peer_addr() {
    for connect_info in [true, false] {
        let req = request(Some("[::ffff:203.0.113.9]:5555"), connect_info, &[]);
        assert_eq!(key(&PeerIp::new(), &req), "ip:203.0.113.9");
    }
    assert_eq!(
        key(&PeerIp::new(), &request(None, false, &[])),
        UNKNOWN_PEER_KEY
    );
}

#[test]
fn client_ip_through_a_proxy_chain() {
    let extractor = ClientIp::new([
        "10.0.0.0/8".parse().unwrap(),
        "192.168.0.0/16".parse().unwrap(),
    ]);
    let spoofed = [("x-forwarded-for", "1.2.3.4, 203.0.113.9, 192.168.1.1")];
    // Directly connected: headers ignored.
    assert_eq!(
        key(&extractor, &request(Some("203.0.113.50:1"), true, &spoofed)),
        "ip:203.0.113.50"
    );
    // Behind the proxy: right-most untrusted.
    assert_eq!(
        key(&extractor, &request(Some("10.0.0.2:1"), true, &spoofed)),
        "ip:203.0.113.9"
    );
    // Forwarded with IPv6 and a port, grouped by /64.
    let grouped = extractor.clone().ipv6_prefix(64);
    let forwarded = [(
        "forwarded",
        r#"for="[2001:db8:aa:bb::1]:4711";proto=https, for=10.1.1.1"#,
    )];
    assert_eq!(
        key(&grouped, &request(Some("10.0.0.2:1"), false, &forwarded)),
        "net6:2001:db8:aa:bb::/64"
    );
    // Only X-Real-IP honoured.
    let real_only = extractor.headers([ForwardedHeader::XRealIp]);
    let both = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-real-ip", "198.51.100.2"),
    ];
    assert_eq!(
        key(&real_only, &request(Some("10.0.0.2:1"), true, &both)),
        "ip:198.51.100.2"
    );
}

#[test]
fn api_key_hashed_with_ip_fallback() {
    let extractor = HeaderKey::new(HeaderName::from_static("x-api-key")).or_else(PeerIp::new());
    let with_key = request(
        Some("203.0.113.9:1"),
        true,
        &[("x-api-key", "super-secret-token")],
    );
    let k = key(&extractor, &with_key);
    assert!(
        k.starts_with("hdr:x-api-key:") && !k.contains("secret"),
        "{k}"
    );
    assert_eq!(
        key(&extractor, &request(Some("203.0.113.9:1"), true, &[])),
        "ip:203.0.113.9"
    );
}
