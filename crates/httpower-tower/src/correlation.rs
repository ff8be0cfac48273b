//! Correlation ids for incoming requests.
//!
//! A request that crosses five services should be findable in the logs of all five by
//! one id. [`CorrelationLayer`] takes the caller's id from the incoming header
//! (`x-request-id` unless configured), or makes one (`req_` + 16 hex digits) when there
//! is none or it is unusable; it puts the id in the request's extensions
//! ([`CorrelationId`]) and header, runs the handler inside
//! [`httpower::observe::correlation_scope`] so that every httpower client call made by
//! the handler sends the same id upstream, and echoes the id on the response.
//!
//! ```
//! use axum::{routing::get, Router};
//! use httpower_tower::correlation::CorrelationLayer;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(CorrelationLayer::new());
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

/// The correlation id of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub Arc<str>);

/// Longest id accepted from a caller; longer ones are replaced (they would bloat every
/// log line, and an id is not a payload).
pub const MAX_ID_LEN: usize = 128;

/// Adds correlation ids to a service. Clones share the configuration.
#[derive(Debug, Clone)]
pub struct CorrelationLayer {
    header: HeaderName,
}

impl Default for CorrelationLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CorrelationLayer {
    /// Reads and writes `x-request-id`.
    pub fn new() -> Self {
        CorrelationLayer {
            header: HeaderName::from_static("x-request-id"),
        }
    }

    /// Reads and writes `header` instead.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }
}

impl<S> Layer<S> for CorrelationLayer {
    type Service = Correlation<S>;

    fn layer(&self, inner: S) -> Correlation<S> {
        Correlation {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service made by [`CorrelationLayer`].
#[derive(Debug, Clone)]
pub struct Correlation<S> {
    inner: S,
    header: HeaderName,
}

impl<S> Correlation<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// An id a caller sent that is safe to reuse: visible ASCII, not too long.
fn usable(value: &HeaderValue) -> Option<&str> {
    let id = value.to_str().ok()?;
    let fits = !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    fits.then_some(id)
}

impl<S, B, ResBody> Service<Request<B>> for Correlation<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id: Arc<str> = match request.headers().get(&self.header).and_then(usable) {
            Some(id) => Arc::from(id),
            None => Arc::from(httpower::observe::new_correlation_id()),
        };
        let value = HeaderValue::from_str(&id).ok();
        if let Some(value) = &value {
            request
                .headers_mut()
                .insert(self.header.clone(), value.clone());
        }
        request
            .extensions_mut()
            .insert(CorrelationId(Arc::clone(&id)));
        let future = self.inner.call(request);
        ResponseFuture {
            inner: httpower::observe::correlation_scope(id, future),
            echo: value.map(|value| (self.header.clone(), value)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Correlation`]: the handler runs with the id in scope, and the
    /// id is echoed on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<Arc<str>, F>,
        echo: Option<(HeaderName, HeaderValue)>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        if let Some((name, value)) = this.echo.take() {
            response.headers_mut().entry(name).or_insert(value);
        }
        Poll::Ready(Ok(response))
    }
}
