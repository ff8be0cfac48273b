//! The response of a logical request.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use http_body_util::BodyExt;
use url::Url;

use crate::error::{Error, Reason};

/// Where the body is: still on the connection, or already read.
pub(crate) enum Body {
    /// Read into memory (stubs, deduplicated requests, fully consumed streams).
    Buffered(Bytes),
    /// Still on the connection.
    Streaming(reqwest::Body),
    /// Taken by a previous call.
    Taken,
}

/// A response: status, headers and a body that is read when asked.
///
/// A non-success status is a response, not an error; call
/// [`error_for_status`](Response::error_for_status) to make it one.
pub struct Response {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    url: Url,
    attempts: u32,
    body: Body,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &crate::error::display_url(&self.url))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub(crate) fn streaming(response: reqwest::Response) -> Self {
        let url = response.url().clone();
        // Taken apart rather than cloned: the headers move, the body stays a stream.
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        Response {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            url,
            attempts: 1,
            body: Body::Streaming(body),
        }
    }

    pub(crate) fn buffered(status: StatusCode, headers: HeaderMap, url: Url, body: Bytes) -> Self {
        Response {
            status,
            version: Version::HTTP_11,
            headers,
            url,
            attempts: 1,
            body: Body::Buffered(body),
        }
    }

    pub(crate) fn set_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
    }

    /// Reads the whole body into memory, so the response can be shared (deduplication).
    pub(crate) async fn into_buffered(mut self) -> Result<Self, Error> {
        let bytes = self.take_bytes().await?;
        self.body = Body::Buffered(bytes);
        Ok(self)
    }

    /// A copy of a buffered response (`None` while the body is still streaming).
    pub(crate) fn try_clone(&self) -> Option<Self> {
        let Body::Buffered(body) = &self.body else {
            return None;
        };
        Some(Response {
            status: self.status,
            version: self.version,
            headers: self.headers.clone(),
            url: self.url.clone(),
            attempts: self.attempts,
            body: Body::Buffered(body.clone()),
        })
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Every header; a name may have several values (`get_all`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, when it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The final URL (after redirects).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Attempts made to get this response (1 when it was not retried).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The server's `Retry-After`, in any of its forms; a date in the past is zero.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?;
        httpower_core::retry::parse_retry_after(value, SystemTime::now())
    }

    /// Turns a 4xx or 5xx status into an error carrying the status, the attempts and
    /// any `Retry-After`.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.status.is_client_error() || self.status.is_server_error() {
            let retry_after = self.retry_after();
            return Err(Error::new(Reason::Status {
                status: self.status,
            })
            .status_seen(Some(self.status))
            .attempts_made(self.attempts)
            .retry_after_hint(retry_after)
            .for_url(&self.url));
        }
        Ok(self)
    }

    async fn take_bytes(&mut self) -> Result<Bytes, Error> {
        match std::mem::replace(&mut self.body, Body::Taken) {
            Body::Buffered(bytes) => Ok(bytes),
            Body::Streaming(body) => match body.collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(err) => Err(crate::transport::classify_reqwest(&err)
                    .into_error(err)
                    .for_url(&self.url)),
            },
            Body::Taken => Ok(Bytes::new()),
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        self.take_bytes().await
    }

    /// The body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The body decoded from JSON into `T`. Invalid JSON is a
    /// [`Decode`](Reason::Decode) error whose source tells where.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.url.clone();
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|err| Error::with_source(Reason::Decode, err).for_url(&url))
    }

    /// The next chunk of a streaming body; `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match &mut self.body {
            Body::Buffered(bytes) => {
                let bytes = std::mem::take(bytes);
                self.body = Body::Taken;
                Ok((!bytes.is_empty()).then_some(bytes))
            }
            Body::Streaming(body) => loop {
                match body.frame().await {
                    None => return Ok(None),
                    Some(Ok(frame)) => {
                        // Trailers carry no body bytes.
                        if let Ok(data) = frame.into_data() {
                            return Ok(Some(data));
                        }
                    }
                    Some(Err(err)) => {
                        return Err(crate::transport::classify_reqwest(&err)
                            .into_error(err)
                            .for_url(&self.url))
                    }
                }
            },
            Body::Taken => Ok(None),
        }
    }
}
