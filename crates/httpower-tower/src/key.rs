//! Ready-made key extractors: the peer's IP, the client's IP behind trusted proxies,
//! and a hashed header value (an API key or credential).
//!
//! Every key carries a prefix naming its kind, so keys made by different extractors
//! never collide in a shared store:
//!
//! | Extractor | Key |
//! |---|---|
//! | [`PeerIp`], [`ClientIp`] | `ip:203.0.113.7`, `ip:2001:db8::1` |
//! | [`PeerIp`], [`ClientIp`] with [`ipv6_prefix`](PeerIp::ipv6_prefix) | `net6:2001:db8::/64` (IPv4 stays `ip:…`) |
//! | no peer address recorded | [`UNKNOWN_PEER_KEY`] (`ip:unknown`) |
//! | [`HeaderKey`] | `hdr:x-api-key:<32 hex digits>` |
//! | [`HeaderKey`], header missing | `hdr:x-api-key:missing`, or the [`or_else`](HeaderKey::or_else) extractor's key |
//!
//! ```
//! use http::header::HeaderName;
//! use httpower_tower::extract::{KeyExtractor, RequestParts};
//! use httpower_tower::key::{ClientIp, ForwardedHeader, HeaderKey};
//!
//! // Behind one load balancer at 10.0.0.5 that appends to X-Forwarded-For.
//! let client_ip = ClientIp::new(["10.0.0.5/32".parse().unwrap()])
//!     .headers([ForwardedHeader::XForwardedFor])
//!     .ipv6_prefix(64);
//!
//! let request = http::Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7")
//!     .extension(httpower_tower::extract::PeerAddr("10.0.0.5:40000".parse().unwrap()))
//!     .body(())
//!     .unwrap();
//! let parts = RequestParts::of(&request);
//! assert_eq!(client_ip.extract(&parts), "ip:203.0.113.7");
//!
//! // By API key, or by client IP for requests without one.
//! let by_key = HeaderKey::new(HeaderName::from_static("x-api-key")).or_else(client_ip);
//! assert_eq!(by_key.extract(&parts), "ip:203.0.113.7");
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use http::header::{HeaderName, FORWARDED};
use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::extract::{KeyExtractor, RequestParts};

/// The key used when the server recorded no peer address (no [`PeerAddr`] nor axum
/// `ConnectInfo` extension): every such request shares this one key, so a server that
/// forgot to record peers gets one global limit rather than none.
///
/// [`PeerAddr`]: crate::extract::PeerAddr
pub const UNKNOWN_PEER_KEY: &str = "ip:unknown";

/// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), so one client
/// has one key whether it reached a dual-stack socket over IPv4 or IPv6.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(_) => ip,
    }
}

/// A trusted network written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) as the IPv4
/// network it means, since addresses are normalised before they are compared.
fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.network().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(net4) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(net4.trunc());
                }
            }
        }
    }
    net.trunc()
}

/// The key of an address: `ip:<addr>`, or `net6:<network>/<len>` for IPv6 when grouped.
fn ip_key(ip: IpAddr, ipv6_prefix: Option<u8>) -> String {
    // Sized once for the longest form (`net6:` + an IPv6 network), so formatting never
    // grows the string: this runs for every request.
    let mut key = String::with_capacity(56);
    let _ = match (normalize(ip), ipv6_prefix) {
        (IpAddr::V6(v6), Some(len)) => match Ipv6Net::new(v6, len.min(128)) {
            Ok(net) => write!(key, "net6:{}", net.trunc()),
            Err(_) => write!(key, "ip:{v6}"),
        },
        (ip, _) => write!(key, "ip:{ip}"),
    };
    key
}

/// Keys a request by its connection's peer address — the right choice when clients
/// connect directly (no proxy in front).
///
/// IPv4-mapped IPv6 peers (`::ffff:192.0.2.1`) are keyed as their IPv4 address. With
/// [`ipv6_prefix`](Self::ipv6_prefix), IPv6 peers are keyed by their network, so a host
/// holding a whole /64 cannot get a fresh budget by rotating addresses. A request
/// without a recorded peer gets [`UNKNOWN_PEER_KEY`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerIp {
    ipv6_prefix: Option<u8>,
}

impl PeerIp {
    /// Keys by the full peer address.
    pub fn new() -> Self {
        PeerIp::default()
    }

    /// Keys IPv6 peers by their network of `len` bits (64 is the usual choice; values
    /// above 128 mean 128). IPv4 peers keep their full address.
    #[must_use]
    pub fn ipv6_prefix(mut self, len: u8) -> Self {
        self.ipv6_prefix = Some(len.min(128));
        self
    }
}

impl KeyExtractor for PeerIp {
    fn extract(&self, request: &RequestParts<'_>) -> String {
        match request.peer {
            Some(peer) => ip_key(peer.ip(), self.ipv6_prefix),
            None => UNKNOWN_PEER_KEY.to_owned(),
        }
    }
}

/// A forwarding header [`ClientIp`] may read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `Forwarded` (RFC 7239): the `for=` parameter of each element.
    Forwarded,
    /// `X-Forwarded-For`: a comma-separated list of addresses.
    XForwardedFor,
    /// `X-Real-IP`: one address.
    XRealIp,
    /// Another header holding a comma-separated list of addresses, nearest hop last
    /// (for example `CF-Connecting-IP` or `True-Client-IP`).
    Other(HeaderName),
}

impl ForwardedHeader {
    fn name(&self) -> HeaderName {
        match self {
            ForwardedHeader::Forwarded => FORWARDED,
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::XRealIp => HeaderName::from_static("x-real-ip"),
            ForwardedHeader::Other(name) => name.clone(),
        }
    }
}

/// Keys a request by the client's address, read from forwarding headers **only** when
/// the connection comes from a trusted proxy.
///
/// The rules:
///
/// 1. The peer (the connection's remote address) is not in `trusted_proxies` → the key
///    is the peer's address; headers are not read at all, so a client cannot choose its
///    key by sending `X-Forwarded-For`.
/// 2. The peer is trusted → the first configured header present in the request is
///    read (by default `Forwarded`, then `X-Forwarded-For`, then `X-Real-IP`). Several
///    lines of the same header are joined in order, as one list. The list is walked
///    from the **right** (the hop nearest to this server), skipping trusted proxies; the
///    first untrusted address is the client. The left-most entries are whatever the
///    client sent and are never believed over a nearer hop.
/// 3. Every address in the list is trusted → the left-most one.
/// 4. An entry reached during the walk that is not an address — malformed text, a
///    non-UTF-8 value, an obfuscated `Forwarded` identifier (`_hidden`) or `unknown`, or
///    a `Forwarded` element without `for=` — means the client cannot be identified: the
///    key falls back to the peer's address. Extraction never fails. Entries to the left
///    of the first untrusted address are never parsed, so a client cannot force this
///    fallback by prepending garbage.
///
/// Ports are stripped (`192.0.2.1:5678`, `[2001:db8::1]:4711`), IPv4-mapped IPv6 is
/// keyed as IPv4, and [`ipv6_prefix`](Self::ipv6_prefix) groups IPv6 clients by network
/// as in [`PeerIp`].
///
/// **Honour only the headers your proxy sets** (with [`headers`](Self::headers)). A
/// proxy that appends to `X-Forwarded-For` but passes a client's `Forwarded` header
/// through untouched lets that client choose its key under the default order, since
/// the first header present is the one read.
#[derive(Clone)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
    headers: Arc<[ForwardedHeader]>,
    ipv6_prefix: Option<u8>,
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted", &self.trusted)
            .field("headers", &self.headers)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish()
    }
}

impl ClientIp {
    /// Trusts the proxies in these networks (for a single proxy, a /32 or /128).
    pub fn new(trusted_proxies: impl IntoIterator<Item = IpNet>) -> Self {
        ClientIp {
            trusted: trusted_proxies.into_iter().map(normalize_net).collect(),
            headers: Arc::from(vec![
                ForwardedHeader::Forwarded,
                ForwardedHeader::XForwardedFor,
                ForwardedHeader::XRealIp,
            ]),
            ipv6_prefix: None,
        }
    }

    /// The headers to honour, in order of preference: the first one present in a
    /// request is the one read. An empty list means the peer address is always the key.
    #[must_use]
    pub fn headers(mut self, headers: impl IntoIterator<Item = ForwardedHeader>) -> Self {
        self.headers = headers.into_iter().collect();
        self
    }

    /// Keys IPv6 clients by their network of `len` bits (values above 128 mean 128).
    #[must_use]
    pub fn ipv6_prefix(mut self, len: u8) -> Self {
        self.ipv6_prefix = Some(len.min(128));
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, or one read from the headers when the peer is
    /// a trusted proxy. `None` when the server recorded no peer.
    pub fn client_ip(&self, request: &RequestParts<'_>) -> Option<IpAddr> {
        let peer = normalize(request.peer?.ip());
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        for header in self.headers.iter() {
            let name = header.name();
            if request.headers.contains_key(&name) {
                let found = match header {
                    ForwardedHeader::Forwarded => self.walk(request.headers, &name, forwarded_for),
                    _ => self.walk(request.headers, &name, parse_node),
                };
                return Some(found.unwrap_or(peer));
            }
        }
        Some(peer)
    }

    /// Walks the joined lines of header `name` from the right; `hop` reads one
    /// comma-separated entry. `None` when the client cannot be identified.
    fn walk(
        &self,
        headers: &HeaderMap,
        name: &HeaderName,
        hop: fn(&str) -> Option<IpAddr>,
    ) -> Option<IpAddr> {
        let mut lines = Vec::new();
        for value in headers.get_all(name) {
            lines.push(value.to_str().ok()?);
        }
        let mut leftmost = None;
        for line in lines.iter().rev() {
            for entry in line.rsplit(',') {
                let ip = normalize(hop(entry)?);
                if !self.is_trusted(ip) {
                    return Some(ip);
                }
                leftmost = Some(ip);
            }
        }
        leftmost
    }
}

impl KeyExtractor for ClientIp {
    fn extract(&self, request: &RequestParts<'_>) -> String {
        match self.client_ip(request) {
            Some(ip) => ip_key(ip, self.ipv6_prefix),
            None => UNKNOWN_PEER_KEY.to_owned(),
        }
    }
}

/// One node: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`. The port may be anything non-empty (RFC 7239 allows obfuscated
/// ports such as `_p1`).
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip = inside.parse::<Ipv6Addr>().ok()?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Some(IpAddr::V6(ip)),
            Some(port) if valid_port(port) => Some(IpAddr::V6(ip)),
            _ => None,
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = text.split_once(':')?;
    if !valid_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port: digits, or an RFC 7239 obfuscated port (`_` followed by
/// `ALPHA / DIGIT / "." / "_" / "-"`).
fn valid_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty()
                && obfuscated
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok(),
    }
}

/// The address in the `for=` parameter of one `Forwarded` element
/// (`for=192.0.2.60;proto=http;by=203.0.113.43`). Parameter names are case-insensitive;
/// the value may be quoted. An element without `for=`, or whose `for=` is an obfuscated
/// identifier or `unknown`, yields `None`.
///
/// Elements are split on commas without regard to quotes: a `for=` value never holds
/// a comma, and an element whose quoted `host=` does is unreadable, which falls back to
/// the peer like any other malformed entry.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        if pair.trim().is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // two `for=` in one element: ambiguous
            }
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"')?,
                None => value,
            };
            found = Some(parse_node(value)?);
        }
    }
    found
}

/// Keys a request by a header's value — an API key, a token, a credential — hashed, so
/// the secret never reaches the store or the logs.
///
/// The key is `hdr:<header name>:<hash>`, where the hash is FNV-1a (128 bits) of the
/// value, written as 32 hex digits. The hash is fixed (no per-process seed), so every
/// instance of a fleet sharing a store (Redis) makes the same key for the same value.
/// It keeps secrets out of the store and logs; it is not a password hash, and a
/// low-entropy value (a short PIN) can be recovered from its key by trying candidates.
///
/// Several lines of the header are hashed together, in order. A request without the
/// header (or with only empty values) gets the key of the [`or_else`](Self::or_else)
/// extractor when one is set, and `hdr:<header name>:missing` otherwise — one shared
/// budget for all anonymous requests.
#[derive(Clone)]
pub struct HeaderKey {
    name: HeaderName,
    fallback: Option<Arc<dyn KeyExtractor>>,
}

impl fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderKey")
            .field("name", &self.name)
            .field("fallback", &self.fallback.as_ref().map(|_| "..."))
            .finish()
    }
}

impl HeaderKey {
    /// Keys by the value of header `name`.
    pub fn new(name: HeaderName) -> Self {
        HeaderKey {
            name,
            fallback: None,
        }
    }

    /// When the header is missing, keys by `fallback` instead (for example
    /// [`ClientIp`], so anonymous clients are limited one by one).
    #[must_use]
    pub fn or_else(mut self, fallback: impl KeyExtractor) -> Self {
        self.fallback = Some(Arc::new(fallback));
        self
    }
}

impl KeyExtractor for HeaderKey {
    fn extract(&self, request: &RequestParts<'_>) -> String {
        let mut hash = Fnv1a128::new();
        let mut present = false;
        for value in request.headers.get_all(&self.name) {
            if value.is_empty() {
                continue;
            }
            if present {
                hash.write(b"\n"); // never inside a header value
            }
            hash.write(value.as_bytes());
            present = true;
        }
        if present {
            return format!("hdr:{}:{:032x}", self.name, hash.finish());
        }
        match &self.fallback {
            Some(fallback) => fallback.extract(request),
            None => format!("hdr:{}:missing", self.name),
        }
    }
}

/// FNV-1a, 128 bits: stable across processes, machines and Rust versions (unlike
/// `DefaultHasher`, whose algorithm std may change).
struct Fnv1a128(u128);

impl Fnv1a128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Fnv1a128(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::{HeaderValue, Method, Uri};
    use proptest::prelude::*;

    use super::*;

    /// Runs `extractor` on a GET from `peer` carrying `headers` (name, value) lines.
    fn key_of(
        extractor: &dyn KeyExtractor,
        peer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let method = Method::GET;
        let uri = Uri::from_static("/login");
        let parts = RequestParts {
            method: &method,
            uri: &uri,
            headers: &map,
            peer: peer.map(|p| p.parse::<SocketAddr>().unwrap()),
        };
        extractor.extract(&parts)
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    /// Proxies at 10.0.0.0/8 and 2001:db8:ffff::/48.
    fn behind_proxies() -> ClientIp {
        ClientIp::new(nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]))
    }

    #[test]
    fn peer_ip() {
        let cases: &[(PeerIp, Option<&str>, &str)] = &[
            (PeerIp::new(), Some("192.0.2.1:5000"), "ip:192.0.2.1"),
            (PeerIp::new(), Some("[2001:db8::1]:5000"), "ip:2001:db8::1"),
            (
                PeerIp::new(),
                Some("[::ffff:192.0.2.1]:5000"),
                "ip:192.0.2.1",
            ),
            (PeerIp::new(), None, UNKNOWN_PEER_KEY),
            (
                PeerIp::new().ipv6_prefix(64),
                Some("[2001:db8:1:2:3:4:5:6]:1"),
                "net6:2001:db8:1:2::/64",
            ),
            (
                PeerIp::new().ipv6_prefix(64),
                Some("[2001:db8:1:2:ffff::9]:1"),
                "net6:2001:db8:1:2::/64",
            ),
            (
                PeerIp::new().ipv6_prefix(64),
                Some("192.0.2.1:1"),
                "ip:192.0.2.1",
            ),
            (
                PeerIp::new().ipv6_prefix(64),
                Some("[::ffff:192.0.2.1]:1"),
                "ip:192.0.2.1",
            ),
            (
                PeerIp::new().ipv6_prefix(200),
                Some("[2001:db8::1]:1"),
                "net6:2001:db8::1/128",
            ),
            (
                PeerIp::new().ipv6_prefix(48),
                Some("[2001:db8:1:2::1]:1"),
                "net6:2001:db8:1::/48",
            ),
        ];
        for (extractor, peer, want) in cases {
            assert_eq!(
                key_of(extractor, *peer, &[]),
                *want,
                "{extractor:?} {peer:?}"
            );
        }
    }

    #[test]
    fn peer_ip_ignores_forwarding_headers() {
        let key = key_of(
            &PeerIp::new(),
            Some("192.0.2.1:1"),
            &[("x-forwarded-for", "198.51.100.1")],
        );
        assert_eq!(key, "ip:192.0.2.1");
    }

    #[test]
    fn client_ip_table() {
        type Case<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            // Untrusted peers cannot change their key, whatever they send.
            (
                "untrusted xff",
                Some("192.0.2.1:1"),
                &[("x-forwarded-for", "198.51.100.7")],
                "ip:192.0.2.1",
            ),
            (
                "untrusted forwarded",
                Some("192.0.2.1:1"),
                &[("forwarded", "for=198.51.100.7")],
                "ip:192.0.2.1",
            ),
            (
                "untrusted real-ip",
                Some("192.0.2.1:1"),
                &[("x-real-ip", "198.51.100.7")],
                "ip:192.0.2.1",
            ),
            (
                "untrusted v6",
                Some("[2001:db8::1]:1"),
                &[("x-forwarded-for", "198.51.100.7")],
                "ip:2001:db8::1",
            ),
            (
                "no peer",
                None,
                &[("x-forwarded-for", "198.51.100.7")],
                UNKNOWN_PEER_KEY,
            ),
            // Trusted peer: the right-most untrusted address.
            (
                "trusted, one hop",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7")],
                "ip:198.51.100.7",
            ),
            (
                "spoofed left part ignored",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 198.51.100.7")],
                "ip:198.51.100.7",
            ),
            (
                "several trusted proxies skipped",
                Some("10.0.0.1:1"),
                &[(
                    "x-forwarded-for",
                    "1.1.1.1, 198.51.100.7, 10.1.2.3, 10.9.9.9",
                )],
                "ip:198.51.100.7",
            ),
            (
                "all trusted: left-most",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "10.5.5.5, 10.1.2.3, 10.9.9.9")],
                "ip:10.5.5.5",
            ),
            (
                "lines joined in order",
                Some("10.0.0.1:1"),
                &[
                    ("x-forwarded-for", "1.1.1.1, 198.51.100.7"),
                    ("x-forwarded-for", "10.1.1.1"),
                ],
                "ip:198.51.100.7",
            ),
            (
                "lines joined: right-most line first",
                Some("10.0.0.1:1"),
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
                ],
                "ip:198.51.100.7",
            ),
            (
                "ports stripped",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7:5678")],
                "ip:198.51.100.7",
            ),
            (
                "bracketed v6 port",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "[2001:db8::7]:80")],
                "ip:2001:db8::7",
            ),
            (
                "bare v6",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "2001:db8::7")],
                "ip:2001:db8::7",
            ),
            (
                "bracketed v6",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "[::1]")],
                "ip:::1",
            ),
            (
                "mapped in header",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "::ffff:198.51.100.7")],
                "ip:198.51.100.7",
            ),
            (
                "mapped trusted hop skipped",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7, ::ffff:10.2.2.2")],
                "ip:198.51.100.7",
            ),
            (
                "mapped peer trusted",
                Some("[::ffff:10.0.0.1]:1"),
                &[("x-forwarded-for", "198.51.100.7")],
                "ip:198.51.100.7",
            ),
            (
                "v6 proxy",
                Some("[2001:db8:ffff::1]:1"),
                &[("x-forwarded-for", "2001:db8::7, 2001:db8:ffff::2")],
                "ip:2001:db8::7",
            ),
            // Malformed entries reached in the walk: the peer.
            (
                "garbage",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "not-an-ip")],
                "ip:10.0.0.1",
            ),
            (
                "empty",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "")],
                "ip:10.0.0.1",
            ),
            (
                "empty entry",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7, ")],
                "ip:10.0.0.1",
            ),
            (
                "unknown",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "unknown")],
                "ip:10.0.0.1",
            ),
            (
                "bad port",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7:99999")],
                "ip:10.0.0.1",
            ),
            (
                "zone id",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "fe80::1%eth0")],
                "ip:10.0.0.1",
            ),
            (
                "garbage behind the client is never read",
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "%%%, 198.51.100.7")],
                "ip:198.51.100.7",
            ),
            // Forwarded (RFC 7239).
            (
                "forwarded v4",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=198.51.100.7")],
                "ip:198.51.100.7",
            ),
            (
                "forwarded quoted v6 with port",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")],
                "ip:2001:db8:cafe::17",
            ),
            (
                "forwarded quoted v4 port",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=\"198.51.100.7:80\"")],
                "ip:198.51.100.7",
            ),
            (
                "forwarded obfuscated port",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=\"198.51.100.7:_p1\"")],
                "ip:198.51.100.7",
            ),
            (
                "forwarded mixed case and params",
                Some("10.0.0.1:1"),
                &[("forwarded", "proto=https; For=198.51.100.7 ;by=10.0.0.1")],
                "ip:198.51.100.7",
            ),
            (
                "forwarded several elements",
                Some("10.0.0.1:1"),
                &[(
                    "forwarded",
                    "for=1.1.1.1, for=198.51.100.7;proto=http, for=10.3.3.3",
                )],
                "ip:198.51.100.7",
            ),
            (
                "forwarded several lines",
                Some("10.0.0.1:1"),
                &[
                    ("forwarded", "for=1.1.1.1, for=198.51.100.7"),
                    ("forwarded", "FOR=\"[2001:db8:ffff::5]\""),
                ],
                "ip:198.51.100.7",
            ),
            (
                "forwarded all trusted",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=10.1.1.1, for=10.2.2.2")],
                "ip:10.1.1.1",
            ),
            (
                "forwarded obfuscated",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=_hidden, for=10.2.2.2")],
                "ip:10.0.0.1",
            ),
            (
                "forwarded unknown",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=unknown")],
                "ip:10.0.0.1",
            ),
            (
                "forwarded no for",
                Some("10.0.0.1:1"),
                &[("forwarded", "proto=https")],
                "ip:10.0.0.1",
            ),
            (
                "forwarded no equals",
                Some("10.0.0.1:1"),
                &[("forwarded", "for")],
                "ip:10.0.0.1",
            ),
            (
                "forwarded bad quote",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=\"198.51.100.7")],
                "ip:10.0.0.1",
            ),
            (
                "forwarded two fors",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=1.1.1.1;for=2.2.2.2")],
                "ip:10.0.0.1",
            ),
            (
                "forwarded garbage left of client unread",
                Some("10.0.0.1:1"),
                &[("forwarded", "for=\"x, for=198.51.100.7")],
                "ip:198.51.100.7",
            ),
            // Header preference: Forwarded, then X-Forwarded-For, then X-Real-IP.
            (
                "forwarded preferred",
                Some("10.0.0.1:1"),
                &[
                    ("x-forwarded-for", "198.51.100.1"),
                    ("forwarded", "for=198.51.100.2"),
                    ("x-real-ip", "198.51.100.3"),
                ],
                "ip:198.51.100.2",
            ),
            (
                "xff before real-ip",
                Some("10.0.0.1:1"),
                &[
                    ("x-real-ip", "198.51.100.3"),
                    ("x-forwarded-for", "198.51.100.1"),
                ],
                "ip:198.51.100.1",
            ),
            (
                "real-ip from trusted",
                Some("10.0.0.1:1"),
                &[("x-real-ip", "198.51.100.3")],
                "ip:198.51.100.3",
            ),
            (
                "real-ip malformed",
                Some("10.0.0.1:1"),
                &[("x-real-ip", "nope")],
                "ip:10.0.0.1",
            ),
            ("trusted, no header", Some("10.0.0.1:1"), &[], "ip:10.0.0.1"),
        ];
        let extractor = behind_proxies();
        for (name, peer, headers, want) in cases {
            assert_eq!(key_of(&extractor, *peer, headers), *want, "case {name}");
        }
    }

    #[test]
    fn client_ip_non_utf8_header_falls_back() {
        let mut map = HeaderMap::new();
        map.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.7\xff").unwrap(),
        );
        let (method, uri) = (Method::GET, Uri::from_static("/"));
        let parts = RequestParts {
            method: &method,
            uri: &uri,
            headers: &map,
            peer: Some("10.0.0.1:1".parse().unwrap()),
        };
        assert_eq!(behind_proxies().extract(&parts), "ip:10.0.0.1");
    }

    #[test]
    fn client_ip_configured_headers() {
        let only_xff = behind_proxies().headers([ForwardedHeader::XForwardedFor]);
        let headers = [
            ("forwarded", "for=198.51.100.2"),
            ("x-forwarded-for", "198.51.100.1"),
        ];
        assert_eq!(
            key_of(&only_xff, Some("10.0.0.1:1"), &headers),
            "ip:198.51.100.1"
        );
        let none = behind_proxies().headers([]);
        assert_eq!(key_of(&none, Some("10.0.0.1:1"), &headers), "ip:10.0.0.1");
        let custom = behind_proxies().headers([ForwardedHeader::Other(HeaderName::from_static(
            "cf-connecting-ip",
        ))]);
        assert_eq!(
            key_of(
                &custom,
                Some("10.0.0.1:1"),
                &[("cf-connecting-ip", "198.51.100.9")]
            ),
            "ip:198.51.100.9"
        );
    }

    #[test]
    fn client_ip_mapped_trusted_network_and_v6_grouping() {
        let mapped = ClientIp::new(nets(&["::ffff:10.0.0.0/104"]));
        assert_eq!(
            key_of(
                &mapped,
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7")]
            ),
            "ip:198.51.100.7"
        );
        let grouped = behind_proxies().ipv6_prefix(64);
        assert_eq!(
            key_of(
                &grouped,
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "2001:db8:1:2::99")]
            ),
            "net6:2001:db8:1:2::/64"
        );
        assert_eq!(
            key_of(&grouped, Some("[2001:db8:7::1]:1"), &[]),
            "net6:2001:db8:7::/64"
        );
        assert_eq!(
            key_of(
                &grouped,
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7")]
            ),
            "ip:198.51.100.7"
        );
    }

    #[test]
    fn header_key_hashes() {
        let api = HeaderKey::new(HeaderName::from_static("x-api-key"));
        let secret = "sk_live_0123456789abcdef";
        let a = key_of(&api, Some("192.0.2.1:1"), &[("x-api-key", secret)]);
        let again = key_of(&api, Some("198.51.100.1:1"), &[("x-api-key", secret)]);
        let other = key_of(
            &api,
            Some("192.0.2.1:1"),
            &[("x-api-key", "sk_live_0123456789abcdeg")],
        );
        assert_eq!(a, again, "same value, same key, whoever sends it");
        assert_ne!(a, other);
        assert!(a.starts_with("hdr:x-api-key:"), "{a}");
        assert_eq!(a.len(), "hdr:x-api-key:".len() + 32);
        assert!(!a.contains(secret) && !a.contains("sk_live"), "{a}");
        // Stable across processes and versions: FNV-1a 128 of "a".
        assert_eq!(
            key_of(&api, None, &[("x-api-key", "a")]),
            "hdr:x-api-key:d228cb696f1a8caf78912b704e4a8964"
        );
        // Two lines differ from either alone.
        let both = key_of(&api, None, &[("x-api-key", "k1"), ("x-api-key", "k2")]);
        assert_ne!(both, key_of(&api, None, &[("x-api-key", "k1")]));
        assert_ne!(both, key_of(&api, None, &[("x-api-key", "k1k2")]));
    }

    #[test]
    fn header_key_missing() {
        let api = HeaderKey::new(HeaderName::from_static("x-api-key"));
        assert_eq!(
            key_of(&api, Some("192.0.2.1:1"), &[]),
            "hdr:x-api-key:missing"
        );
        assert_eq!(
            key_of(&api, Some("192.0.2.1:1"), &[("x-api-key", "")]),
            "hdr:x-api-key:missing"
        );
        let with_ip = api.or_else(behind_proxies());
        assert_eq!(key_of(&with_ip, Some("192.0.2.1:1"), &[]), "ip:192.0.2.1");
        assert_eq!(
            key_of(
                &with_ip,
                Some("10.0.0.1:1"),
                &[("x-forwarded-for", "198.51.100.7")]
            ),
            "ip:198.51.100.7"
        );
        assert!(key_of(&with_ip, Some("192.0.2.1:1"), &[("x-api-key", "k")])
            .starts_with("hdr:x-api-key:"));
        let closure = HeaderKey::new(HeaderName::from_static("authorization"))
            .or_else(|_: &RequestParts<'_>| "anonymous".to_owned());
        assert_eq!(key_of(&closure, None, &[]), "anonymous");
        assert!(format!("{closure:?}").contains("authorization"));
    }

    fn untrusted_peer() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_filter("outside 10/8", |(o, _)| o[0] != 10)
                .prop_map(|(o, port)| SocketAddr::from((Ipv4Addr::from(o), port))),
            (any::<u128>(), any::<u16>())
                .prop_map(|(bits, port)| SocketAddr::from((Ipv6Addr::from(bits), port)))
                .prop_filter("outside the trusted networks", |addr| {
                    !behind_proxies().is_trusted(normalize(addr.ip()))
                }),
        ]
    }

    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,60}",
            "((for|For|FOR)=\"?\\[?[0-9a-f:.]{1,20}\\]?(:[0-9]{1,5})?\"?[;,] ?){1,4}",
            any::<Ipv4Addr>().prop_map(|ip| format!("for={ip}")),
            any::<Ipv6Addr>().prop_map(|ip| format!("for=\"[{ip}]:80\"")),
            proptest::collection::vec(any::<Ipv4Addr>(), 1..5).prop_map(|ips| {
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ]
    }

    /// Up to three forwarding headers, each maybe absent.
    fn forwarding_headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
        (
            proptest::option::of(header_text()),
            proptest::option::of(header_text()),
            proptest::option::of(header_text()),
        )
            .prop_map(|(forwarded, xff, real)| {
                [
                    ("forwarded", forwarded),
                    ("x-forwarded-for", xff),
                    ("x-real-ip", real),
                ]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?)))
                .collect()
            })
    }

    proptest! {
        #[test]
        fn untrusted_peers_cannot_spoof(
            peer in untrusted_peer(),
            headers in forwarding_headers(),
        ) {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let peer_text = peer.to_string();
            let want = format!("ip:{}", normalize(peer.ip()));
            let client = key_of(&behind_proxies(), Some(&peer_text), &headers);
            let direct = key_of(&PeerIp::new(), Some(&peer_text), &headers);
            prop_assert_eq!(&client, &want);
            prop_assert_eq!(&direct, &want);
        }

        #[test]
        fn trusted_peers_never_panic_and_yield_an_ip_key(
            last in 0u8..=255,
            headers in forwarding_headers(),
        ) {
            let peer = format!("10.0.0.{last}:443");
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let key = key_of(&behind_proxies().ipv6_prefix(64), Some(&peer), &headers);
            prop_assert!(key.starts_with("ip:") || key.starts_with("net6:"), "{}", key);
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,80}") {
            let _ = parse_node(&text);
            let _ = forwarded_for(&text);
        }

        #[test]
        fn header_key_never_leaks(value in "[!-~]{8,40}") {
            let key = key_of(&HeaderKey::new(HeaderName::from_static("x-api-key")), None, &[("x-api-key", value.as_str())]);
            prop_assert!(!key.contains(&value));
        }
    }
}
