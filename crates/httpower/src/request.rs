//! [`RequestBuilder`]: one logical request, with its per-request overrides.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use parking_lot::Mutex;
use url::Url;

use crate::client::{parse_header, Client};
use crate::error::{Error, Reason};
use crate::response::Response;
use crate::transport::ReplayBody;

/// The body as set on the builder.
enum BodyKind {
    None,
    Bytes(Bytes),
    Json(Result<Vec<u8>, Error>),
    Form(Result<String, Error>),
    Stream(reqwest::Body),
}

impl BodyKind {
    fn is_set(&self) -> bool {
        !matches!(self, BodyKind::None)
    }
}

/// Per-request settings that override the client's.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) retry_safe: Option<bool>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) dedup: Option<bool>,
    pub(crate) breaker_key: Option<String>,
    pub(crate) rate_limit_key: Option<String>,
    pub(crate) correlation_id: Option<String>,
}

/// A request ready for the pipeline.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: ReplayBody,
    pub(crate) overrides: Overrides,
}

/// Builds one logical request: headers, query, one body, per-request policy overrides.
///
/// Mistakes (an invalid header, two bodies) are remembered and reported by
/// [`send`](RequestBuilder::send), so calls chain without `?` at every step.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: Result<Url, Error>,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    body: BodyKind,
    overrides: Overrides,
    error: Option<Error>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field(
                "url",
                &self.url.as_ref().map(crate::error::display_url).ok(),
            )
            .finish_non_exhaustive()
    }
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, url: &str) -> Self {
        let resolved = resolve_url(client.inner.base_url.as_ref(), url);
        RequestBuilder {
            client,
            method,
            url: resolved,
            headers: HeaderMap::new(),
            query: Vec::new(),
            body: BodyKind::None,
            overrides: Overrides::default(),
            error: None,
        }
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Sets a header (replacing the client's default of the same name). CR, LF and NUL
    /// are refused with [`Reason::InvalidHeader`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match parse_header(name, value) {
            Ok((name, value)) => {
                self.headers.insert(name, value);
            }
            Err(err) => self.fail(err),
        }
        self
    }

    /// Adds a value to a header that may repeat.
    pub fn append_header(mut self, name: &str, value: &str) -> Self {
        match parse_header(name, value) {
            Ok((name, value)) => {
                self.headers.append(name, value);
            }
            Err(err) => self.fail(err),
        }
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Adds query parameters (percent-encoded).
    pub fn query<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.query
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    fn set_body(mut self, body: BodyKind) -> Self {
        if self.body.is_set() {
            self.fail(Error::new(Reason::ConflictingBody));
        } else {
            self.body = body;
        }
        self
    }

    /// A raw body (replayable: it can be sent again on retry).
    pub fn body(self, body: impl Into<Bytes>) -> Self {
        self.set_body(BodyKind::Bytes(body.into()))
    }

    /// A JSON body (`content-type: application/json` unless set).
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        let encoded =
            serde_json::to_vec(value).map_err(|err| Error::with_source(Reason::Decode, err));
        self.set_body(BodyKind::Json(encoded))
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        let mut encoder = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in fields {
            encoder.append_pair(key.as_ref(), value.as_ref());
        }
        self.set_body(BodyKind::Form(Ok(encoder.finish())))
    }

    /// A streaming body: sent once. If a retry is needed after it was sent, the request
    /// fails with [`Reason::BodyNotReplayable`] instead of silently not retrying.
    pub fn body_stream(self, body: reqwest::Body) -> Self {
        self.set_body(BodyKind::Stream(body))
    }

    /// The timeout of each attempt, for this request.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.attempt_timeout = Some(timeout);
        self
    }

    /// The total timeout, for this request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.overrides.total_timeout = Some(timeout);
        self
    }

    /// Allows retrying this `POST`/`PATCH` (the caller knows repeating it is harmless).
    pub fn retry_safe(mut self, safe: bool) -> Self {
        self.overrides.retry_safe = Some(safe);
        self
    }

    /// At most `retries` retries for this request (0 disables retrying it).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.overrides.max_retries = Some(retries);
        self
    }

    /// Sets an `Idempotency-Key`, which also makes a `POST`/`PATCH` retryable: the
    /// server promises to apply it once.
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("idempotency-key", key)
    }

    /// Deduplicate this request with identical ones in flight (or not), whatever the
    /// client's setting.
    pub fn dedup(mut self, enabled: bool) -> Self {
        self.overrides.dedup = Some(enabled);
        self
    }

    /// The breaker key for this request.
    pub fn circuit_breaker_key(mut self, key: impl Into<String>) -> Self {
        self.overrides.breaker_key = Some(key.into());
        self
    }

    /// The limiter key for this request.
    pub fn rate_limit_key(mut self, key: impl Into<String>) -> Self {
        self.overrides.rate_limit_key = Some(key.into());
        self
    }

    /// The correlation id sent upstream (generated when not set).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.overrides.correlation_id = Some(id.into());
        self
    }

    /// Validates the request and splits it from its client.
    pub(crate) fn prepare(self) -> Result<(Client, Prepared), Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut url = self.url?;
        if !self.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let mut headers = self.client.inner.default_headers.clone();
        // A request's header replaces the client's default of that name, every value
        // of it kept (a header may repeat).
        for name in self.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        let content_type = |headers: &mut HeaderMap, value: &'static str| {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static(value));
        };
        let body = match self.body {
            BodyKind::None => ReplayBody::Empty,
            BodyKind::Bytes(bytes) => ReplayBody::Bytes(bytes),
            BodyKind::Json(encoded) => {
                content_type(&mut headers, "application/json");
                ReplayBody::Bytes(Bytes::from(encoded?))
            }
            BodyKind::Form(encoded) => {
                content_type(&mut headers, "application/x-www-form-urlencoded");
                ReplayBody::Bytes(Bytes::from(encoded?))
            }
            BodyKind::Stream(stream) => ReplayBody::Stream(Mutex::new(Some(stream))),
        };
        Ok((
            self.client,
            Prepared {
                method: self.method,
                url,
                headers,
                body,
                overrides: self.overrides,
            },
        ))
    }

    /// Sends the request through the client's policies.
    pub async fn send(self) -> Result<Response, Error> {
        let (client, prepared) = self.prepare()?;
        // Boxed once here, so the caller's future (and any task it is spawned in) stays
        // small however deep the pipeline's state machine is.
        Box::pin(crate::execute::execute(&client, prepared)).await
    }
}

fn resolve_url(base: Option<&Url>, url: &str) -> Result<Url, Error> {
    let parsed = match Url::parse(url) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let Some(base) = base else {
                return Err(Error::new(Reason::InvalidUrl));
            };
            base.join(url.trim_start_matches('/'))
                .map_err(|err| Error::with_source(Reason::InvalidUrl, err))?
        }
        Err(err) => return Err(Error::with_source(Reason::InvalidUrl, err)),
    };
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::new(Reason::InvalidUrl));
    }
    Ok(parsed)
}
