//! What a key extractor sees of a request, and the trait every extractor implements.

use std::net::SocketAddr;

use http::{HeaderMap, Method, Uri};

/// The peer address of a connection, for servers that are not axum: insert it into the
/// request's extensions. (axum's `ConnectInfo<SocketAddr>` is read too.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The parts of a request a key is made from.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The address of the connection's peer (the client, or the last proxy), when the
    /// server recorded it.
    pub peer: Option<SocketAddr>,
}

impl<'a> RequestParts<'a> {
    /// The parts of `request`; the peer comes from a [`PeerAddr`] or an axum
    /// `ConnectInfo<SocketAddr>` extension.
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        let extensions = request.extensions();
        let peer = extensions.get::<PeerAddr>().map(|peer| peer.0).or_else(|| {
            extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
        });
        RequestParts {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            peer,
        }
    }
}

/// Makes the rate-limit key of a request.
///
/// Extraction never fails: a malformed header falls back to something safe (the peer
/// address), because answering an error page to a malformed `X-Forwarded-For` would
/// hand attackers a way around the limit.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of this request.
    fn extract(&self, request: &RequestParts<'_>) -> String;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestParts<'_>) -> String + Send + Sync + 'static,
{
    fn extract(&self, request: &RequestParts<'_>) -> String {
        self(request)
    }
}

/// One key for every request: a global limit.
#[derive(Debug, Clone)]
pub struct GlobalKey(pub String);

impl Default for GlobalKey {
    fn default() -> Self {
        GlobalKey("global".to_owned())
    }
}

impl KeyExtractor for GlobalKey {
    fn extract(&self, _request: &RequestParts<'_>) -> String {
        self.0.clone()
    }
}
