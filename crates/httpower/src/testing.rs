//! Test mode: a client that cannot reach the network, answered by stubs.
//!
//! Tests of code that calls HTTP services should not depend on those services, and a
//! test that accidentally reaches a real one is a bug worth failing loudly on. A client
//! built with [`ClientBuilder::test_mode`](crate::ClientBuilder::test_mode) refuses
//! every request with [`Reason::NetworkBlocked`](crate::Reason::NetworkBlocked) unless
//! one of *its own* stubs answers, so tests running in parallel never see each other's
//! stubs.
//!
//! Everything above the transport runs for real: the limiter, the breaker, the retry
//! loop with its backoff and budget. A stub can inject transport failures
//! ([`TransportFault`]) which the retry logic treats exactly like real ones, so retry
//! paths are tested, not skipped. With a [`ManualClock`](httpower_core::clock::ManualClock)
//! given to [`ClientBuilder::clock`](crate::ClientBuilder::clock), a test advances
//! through backoffs and open breakers without sleeping.
//!
//! ```
//! use httpower::testing::{Stub, StubReply};
//! use httpower::Client;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let user = Stub::get("/users/1")
//!     .reply(StubReply::json(200, &serde_json::json!({"id": 1, "name": "Ada"})));
//! let client = Client::builder()
//!     .base_url("https://api.example.com")
//!     .test_mode()
//!     .stub(user.clone())
//!     .build()
//!     .unwrap();
//!
//! let response = client.get("/users/1").send().await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(user.hits(), 1);
//!
//! // Anything else is refused before it can leave the process.
//! let err = client.get("/users/2").send().await.unwrap_err();
//! assert_eq!(err.name(), "network_blocked");
//! # });
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use url::Url;

/// A request as a stub sees it.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// The method.
    pub method: Method,
    /// The full URL.
    pub url: Url,
    /// The headers sent, defaults and correlation id included.
    pub headers: HeaderMap,
    /// The body, when it is in memory (a streaming body shows as `None`).
    pub body: Option<Bytes>,
}

/// A transport failure a stub can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportFault {
    /// The server did not answer in time (a read timeout).
    Timeout,
    /// The connection was reset after the request was sent.
    Reset,
    /// The connection was refused: nothing was sent.
    Refused,
}

/// What a stub answers.
#[derive(Debug, Clone)]
pub struct StubReply {
    kind: ReplyKind,
}

#[derive(Debug, Clone)]
pub(crate) enum ReplyKind {
    Respond {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    Fail(TransportFault),
}

impl StubReply {
    /// A response with `status` and an empty body. An invalid status becomes 500.
    pub fn status(status: u16) -> Self {
        StubReply {
            kind: ReplyKind::Respond {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers: HeaderMap::new(),
                body: Bytes::new(),
            },
        }
    }

    /// A response with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        StubReply::status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// A response with a JSON body. A value that cannot be serialized gives an empty
    /// JSON object.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        StubReply::status(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// An injected transport failure.
    pub fn fault(fault: TransportFault) -> Self {
        StubReply {
            kind: ReplyKind::Fail(fault),
        }
    }

    /// Adds a response header (ignored on faults and on invalid names or values).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let ReplyKind::Respond { headers, .. } = &mut self.kind {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        self
    }

    /// Sets the response body (ignored on faults).
    pub fn body(mut self, bytes: impl Into<Bytes>) -> Self {
        if let ReplyKind::Respond { body, .. } = &mut self.kind {
            *body = bytes.into();
        }
        self
    }

    pub(crate) fn kind(&self) -> &ReplyKind {
        &self.kind
    }
}

/// One route of a stub table: a method and path, and the replies it gives.
///
/// Replies are given in order; the last one repeats. A stub is a cheap handle: keep a
/// clone to read [`hits`](Stub::hits) after the test.
#[derive(Clone)]
pub struct Stub {
    inner: Arc<StubInner>,
}

struct StubInner {
    method: Option<Method>,
    path: String,
    prefix: bool,
    replies: Vec<StubReply>,
    next: AtomicUsize,
    hits: AtomicU64,
}

impl fmt::Debug for Stub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stub")
            .field("method", &self.inner.method)
            .field("path", &self.inner.path)
            .field("replies", &self.inner.replies.len())
            .field("hits", &self.hits())
            .finish()
    }
}

impl Stub {
    /// A route for `method` (any method when `None`) and `path`. A path ending in `*`
    /// matches every path with that prefix; otherwise the match is exact. The query
    /// string is not part of the match.
    pub fn new(method: Option<Method>, path: &str) -> Self {
        let (path, prefix) = match path.strip_suffix('*') {
            Some(prefix) => (prefix.to_owned(), true),
            None => (path.to_owned(), false),
        };
        Stub {
            inner: Arc::new(StubInner {
                method,
                path,
                prefix,
                replies: Vec::new(),
                next: AtomicUsize::new(0),
                hits: AtomicU64::new(0),
            }),
        }
    }

    /// A `GET` route.
    pub fn get(path: &str) -> Self {
        Stub::new(Some(Method::GET), path)
    }

    /// A `POST` route.
    pub fn post(path: &str) -> Self {
        Stub::new(Some(Method::POST), path)
    }

    /// A route for any method.
    pub fn any(path: &str) -> Self {
        Stub::new(None, path)
    }

    /// Adds a reply. Call before handing the stub to a client.
    pub fn reply(self, reply: StubReply) -> Self {
        self.replies([reply])
    }

    /// Adds replies, given in order (the last repeats).
    pub fn replies(self, replies: impl IntoIterator<Item = StubReply>) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => StubInner {
                method: shared.method.clone(),
                path: shared.path.clone(),
                prefix: shared.prefix,
                replies: shared.replies.clone(),
                next: AtomicUsize::new(0),
                hits: AtomicU64::new(0),
            },
        };
        inner.replies.extend(replies);
        Stub {
            inner: Arc::new(inner),
        }
    }

    /// How many requests this stub answered.
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    fn matches(&self, request: &StubRequest) -> bool {
        let inner = &*self.inner;
        if inner.method.as_ref().is_some_and(|m| *m != request.method) {
            return false;
        }
        let path = request.url.path();
        if inner.prefix {
            path.starts_with(&inner.path)
        } else {
            path == inner.path
        }
    }

    fn answer(&self) -> StubReply {
        let inner = &*self.inner;
        inner.hits.fetch_add(1, Ordering::Relaxed);
        let index = inner.next.fetch_add(1, Ordering::Relaxed);
        let last = inner.replies.len().saturating_sub(1);
        inner
            .replies
            .get(index.min(last))
            .cloned()
            .unwrap_or_else(|| StubReply::status(200))
    }
}

type Handler = Arc<dyn Fn(&StubRequest) -> Option<StubReply> + Send + Sync>;

/// The stubs of one client: routes first (in the order added), then closures.
#[derive(Default, Clone)]
pub(crate) struct Stubs {
    routes: Vec<Stub>,
    handlers: Vec<Handler>,
}

impl fmt::Debug for Stubs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stubs")
            .field("routes", &self.routes)
            .field("handlers", &self.handlers.len())
            .finish()
    }
}

impl Stubs {
    pub(crate) fn add_route(&mut self, stub: Stub) {
        self.routes.push(stub);
    }

    pub(crate) fn add_handler(
        &mut self,
        handler: impl Fn(&StubRequest) -> Option<StubReply> + Send + Sync + 'static,
    ) {
        self.handlers.push(Arc::new(handler));
    }

    /// The reply of the first stub that answers, or `None` (network blocked).
    pub(crate) fn answer(&self, request: &StubRequest) -> Option<StubReply> {
        if let Some(stub) = self.routes.iter().find(|stub| stub.matches(request)) {
            return Some(stub.answer());
        }
        self.handlers.iter().find_map(|handler| handler(request))
    }
}
