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

use std::fmt;
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
    match (normalize(ip), ipv6_prefix) {
        (IpAddr::V6(v6), Some(len)) => match Ipv6Net::new(v6, len.min(128)) {
            Ok(net) => format!("net6:{}", net.trunc()),
            Err(_) => format!("ip:{v6}"),
        },
        (ip, _) => format!("ip:{ip}"),
    }
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
