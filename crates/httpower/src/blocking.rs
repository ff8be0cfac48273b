//! A blocking client with the same API and the same policies, for scripts, CLIs and
//! code without an async runtime.
//!
//! It owns a small runtime (one worker thread) on which the async client runs; the
//! connection pool's background work keeps running there between calls. Calling it
//! from inside an async runtime would block one of that runtime's workers, so that is
//! refused with [`Reason::BlockingInAsyncContext`] rather than risking a deadlock.
//!
//! ```no_run
//! let client = httpower::blocking::Client::builder()
//!     .base_url("https://api.example.com")
//!     .build()?;
//! let response = client.get("/health").send()?;
//! println!("{}", response.status());
//! # Ok::<(), httpower::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::error::{Error, Reason};

/// The blocking twin of [`crate::Client`]; cheap to clone.
#[derive(Clone)]
pub struct Client {
    client: crate::Client,
    runtime: Arc<OwnedRuntime>,
}

/// The client's runtime. Dropping a runtime from inside another one panics, so there
/// it is shut down in the background instead.
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            }
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Client")
            .field("client", &self.client)
            .finish()
    }
}

/// Configures a blocking [`Client`]: every setting of [`crate::ClientBuilder`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    builder: crate::ClientBuilder,
}

impl ClientBuilder {
    /// Changes the underlying async builder's settings.
    pub fn configure(
        mut self,
        f: impl FnOnce(crate::ClientBuilder) -> crate::ClientBuilder,
    ) -> Self {
        self.builder = f(self.builder);
        self
    }

    /// The base URL (a shortcut for `configure(|b| b.base_url(..))`).
    pub fn base_url(self, url: impl Into<String>) -> Self {
        self.configure(|builder| builder.base_url(url))
    }

    /// Builds the client and its runtime.
    pub fn build(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("httpower-blocking")
            .enable_all()
            .build()
            .map_err(|err| Error::with_source(Reason::Transport, err))?;
        // reqwest's client must be built inside a runtime context.
        let client = {
            let _guard = runtime.enter();
            self.builder.build()?
        };
        Ok(Client {
            client,
            runtime: Arc::new(OwnedRuntime(Some(runtime))),
        })
    }
}

impl From<crate::ClientBuilder> for ClientBuilder {
    fn from(builder: crate::ClientBuilder) -> Self {
        ClientBuilder { builder }
    }
}

impl Client {
    /// A blocking client with the default policies.
    pub fn new() -> Result<Self, Error> {
        ClientBuilder::default().build()
    }

    /// Starts configuring a blocking client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The async client underneath (sharing pool and policies).
    pub fn as_async(&self) -> &crate::Client {
        &self.client
    }

    /// A request with `method` to `url`.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            inner: self.client.request(method, url),
            runtime: Arc::clone(&self.runtime),
        }
    }

    /// A `GET` request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request.
    pub fn patch(&self, url: &str) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE` request.
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD` request.
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// An `OPTIONS` request.
    pub fn options(&self, url: &str) -> RequestBuilder {
        self.request(Method::OPTIONS, url)
    }
}

fn block_on<F: std::future::Future>(runtime: &OwnedRuntime, future: F) -> Result<F::Output, Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(Reason::BlockingInAsyncContext));
    }
    match &runtime.0 {
        Some(runtime) => Ok(runtime.block_on(future)),
        // Only empty while being dropped.
        None => Err(Error::new(Reason::Transport)),
    }
}

/// The blocking twin of [`crate::RequestBuilder`].
#[must_use = "a request does nothing until it is sent"]
#[derive(Debug)]
pub struct RequestBuilder {
    inner: crate::RequestBuilder,
    runtime: Arc<OwnedRuntime>,
}

macro_rules! forward {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*); )*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, $($arg: $ty),*) -> Self {
                RequestBuilder { inner: self.inner.$name($($arg),*), runtime: self.runtime }
            }
        )*
    };
}

impl RequestBuilder {
    forward! {
        /// Sets a header.
        fn header(name: &str, value: &str);
        /// Adds a value to a header that may repeat.
        fn append_header(name: &str, value: &str);
        /// `Authorization: Bearer <token>`.
        fn bearer_auth(token: &str);
        /// A raw body.
        fn body(body: Bytes);
        /// The timeout of each attempt.
        fn attempt_timeout(timeout: Duration);
        /// The total timeout.
        fn timeout(timeout: Duration);
        /// Allows retrying this `POST`/`PATCH`.
        fn retry_safe(safe: bool);
        /// At most `retries` retries for this request.
        fn max_retries(retries: u32);
        /// Sets an `Idempotency-Key`.
        fn idempotency_key(key: &str);
        /// Deduplicate this request or not.
        fn dedup(enabled: bool);
        /// The correlation id sent upstream.
        fn correlation_id(id: String);
    }

    /// Adds query parameters.
    pub fn query<K: Into<String>, V: Into<String>>(
        self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        RequestBuilder {
            inner: self.inner.query(pairs),
            runtime: self.runtime,
        }
    }

    /// A JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        RequestBuilder {
            inner: self.inner.json(value),
            runtime: self.runtime,
        }
    }

    /// A form body.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        RequestBuilder {
            inner: self.inner.form(fields),
            runtime: self.runtime,
        }
    }

    /// Sends the request and reads the whole body.
    pub fn send(self) -> Result<Response, Error> {
        let runtime = self.runtime;
        block_on(&runtime, async move {
            let response = self.inner.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let attempts = response.attempts();
            let url = response.url().clone();
            let body = response.bytes().await?;
            Ok(Response {
                status,
                headers,
                attempts,
                url,
                body,
            })
        })?
    }
}

/// A response of the blocking client, its body already read.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    attempts: u32,
    url: url::Url,
    body: Bytes,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Every header.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, when it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The final URL.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::with_source(Reason::Decode, err).for_url(&self.url))
    }

    /// Turns a 4xx or 5xx status into an error.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.status.is_client_error() || self.status.is_server_error() {
            return Err(Error::new(Reason::Status {
                status: self.status,
            })
            .status_seen(Some(self.status))
            .attempts_made(self.attempts)
            .for_url(&self.url));
        }
        Ok(self)
    }
}
