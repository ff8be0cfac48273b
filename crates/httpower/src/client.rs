//! [`Client`] and [`ClientBuilder`]: one connection pool and one set of policies,
//! shared by every clone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use httpower_core::breaker::{BreakerConfig, BreakerRegistry};
use httpower_core::clock::{Clock, MonotonicClock};
use httpower_core::rate::{AnyAlgorithm, Strategy};
use httpower_core::retry::RetryPolicy;
use httpower_core::store::{Limiter, MemoryStore, Store};
use ipnet::IpNet;
use metrics::SharedString;
use tokio::sync::broadcast;
use url::Url;

use crate::dedup::InFlight;
use crate::error::{Error, Reason};
use crate::events::{ClientEvent, EventHook};
use crate::feedback::ServerLimits;
use crate::observe::LogOptions;
use crate::request::RequestBuilder;
use crate::sanitize::Sanitizer;
use crate::security::HostPolicy;
use crate::testing::{Stub, StubReply, StubRequest, Stubs};
use crate::transport::Transport;

/// The clock every policy of a client reads.
pub(crate) type SharedClock = Arc<dyn Clock>;

/// The per-host breakers of a client.
pub type Breakers = BreakerRegistry<String, Arc<dyn Clock>>;

/// Statuses retried by default: request timeout, too many requests, and the transient
/// server errors.
pub const DEFAULT_RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// Methods retried without an opt-in: the ones whose repetition has the same effect.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The retry rules of a client.
#[derive(Debug, Clone)]
pub(crate) struct RetryRules {
    pub(crate) policy: Option<RetryPolicy>,
    pub(crate) statuses: Vec<StatusCode>,
    pub(crate) retry_safe: bool,
    pub(crate) retry_after_any_status: bool,
}

/// What the client does when the server says it is over its limit.
pub(crate) struct FeedbackGate {
    pub(crate) limits: ServerLimits,
    pub(crate) strategy: Strategy,
}

pub(crate) struct ClientInner {
    pub(crate) transport: Transport,
    pub(crate) base_url: Option<Url>,
    pub(crate) default_headers: HeaderMap,
    pub(crate) clock: SharedClock,
    pub(crate) retry: RetryRules,
    pub(crate) breakers: Option<Breakers>,
    pub(crate) breaker_key: Option<Arc<str>>,
    pub(crate) breaker_failure: Arc<dyn Fn(StatusCode) -> bool + Send + Sync>,
    pub(crate) limiter: Option<Limiter>,
    /// The limiter's metric labels (limiter, store), made once rather than per request.
    pub(crate) limiter_labels: (SharedString, SharedString),
    pub(crate) rate_limit_key: Option<Arc<str>>,
    pub(crate) adaptive: bool,
    pub(crate) feedback: Option<FeedbackGate>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) dedup: bool,
    pub(crate) dedup_wait: Option<Duration>,
    pub(crate) in_flight: InFlight,
    pub(crate) host_policy: Option<Arc<HostPolicy>>,
    pub(crate) correlation_header: HeaderName,
    pub(crate) hooks: Vec<EventHook>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) name: SharedString,
    pub(crate) sanitizer: Arc<Sanitizer>,
    pub(crate) log: LogOptions,
    /// Spans and metrics on (log lines follow `log` as well).
    pub(crate) telemetry: bool,
}

impl ClientInner {
    /// Whether anyone listens to events (hooks or subscribers).
    pub(crate) fn has_listeners(&self) -> bool {
        !self.hooks.is_empty() || self.events.receiver_count() > 0
    }

    pub(crate) fn emit(&self, event: impl FnOnce() -> ClientEvent) {
        if !self.has_listeners() {
            return;
        }
        let event = event();
        for hook in &self.hooks {
            hook(&event);
        }
        // No subscriber left is not an error.
        let _ = self.events.send(event);
    }
}

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_CAPACITY: usize = 1024;

/// An HTTP client whose every request runs through the resilience policies.
///
/// Cheap to clone: clones share the connection pool, the breakers, the limiter, the
/// retry budget and the in-flight table. Build one per upstream service (or one per
/// application) and clone it; a client per request would throw away the pool and
/// every policy's memory.
///
/// ```no_run
/// # async fn run() -> Result<(), httpower::Error> {
/// let client = httpower::Client::builder()
///     .base_url("https://api.example.com")
///     .build()?;
/// let user: serde_json::Value = client.get("/users/1").send().await?.json().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Client")
            .field("base_url", &inner.base_url.as_ref().map(Url::as_str))
            .field("test_mode", &matches!(inner.transport, Transport::Test(_)))
            .field("retry", &inner.retry.policy.is_some())
            .field("circuit_breaker", &inner.breakers.is_some())
            .field("rate_limit", &inner.limiter.as_ref().map(|l| l.name()))
            .field("dedup", &inner.dedup)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default policies (retries, per-host breakers, server
    /// feedback; no client-side limiter).
    pub fn new() -> Result<Self, Error> {
        ClientBuilder::new().build()
    }

    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A request with `method` to `url` (absolute, or relative to the base URL).
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url)
    }

    /// A `GET` request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request (not retried unless `retry_safe` or an `Idempotency-Key`).
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request (not retried unless `retry_safe` or an `Idempotency-Key`).
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

    /// The circuit breakers, one per key (`host:port` unless configured), for state
    /// snapshots, manual control and state-change subscriptions. `None` when the client
    /// has no breaker.
    pub fn breakers(&self) -> Option<&Breakers> {
        self.inner.breakers.as_ref()
    }

    /// The client-side rate limiter, if one is configured.
    pub fn limiter(&self) -> Option<&Limiter> {
        self.inner.limiter.as_ref()
    }

    /// The base URL, if any.
    pub fn base_url(&self) -> Option<&Url> {
        self.inner.base_url.as_ref()
    }

    /// The client's name: the `client` label of its metrics and log lines.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Events from now on (retries, breaker state changes, limiter waits and refusals,
    /// deduplication, store fallbacks), sanitized like the logs. A subscriber that
    /// falls more than 1,024 events behind loses the oldest (and is told so).
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.events.subscribe()
    }

    /// The sanitizer applied to everything this client reports.
    pub fn sanitizer(&self) -> &Sanitizer {
        &self.inner.sanitizer
    }
}

/// A TLS setting kept until build.
#[derive(Debug, Clone)]
enum TlsItem {
    RootPem(Vec<u8>),
    IdentityPem(Vec<u8>),
}

type StatusPredicate = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// Configures a [`Client`].
///
/// Defaults: retries as [`RetryPolicy`]'s defaults (3 retries, 1 s base delay with
/// jitter, 30 s cap, `Retry-After` honoured up to 60 s, a retry budget); a circuit
/// breaker per `host:port` with [`BreakerConfig`]'s defaults; no client-side limiter,
/// but the server's rate-limit headers are obeyed; connect timeout 10 s, attempt timeout
/// 30 s, total timeout 90 s, no read timeout (the attempt timeout bounds the wait for the
/// response headers; set one to bound the gaps while a body streams).
pub struct ClientBuilder {
    base_url: Option<String>,
    headers: Vec<(String, String)>,
    clock: Option<SharedClock>,
    retry: Option<RetryPolicy>,
    retry_enabled: bool,
    retry_statuses: Vec<StatusCode>,
    retry_safe: bool,
    retry_after_any_status: bool,
    breaker: Option<BreakerConfig>,
    breaker_enabled: bool,
    breaker_key: Option<String>,
    breaker_failure: Option<StatusPredicate>,
    limiter: Option<Limiter>,
    rate_limit: Option<(AnyAlgorithm, Strategy)>,
    rate_limit_store: Option<Arc<dyn Store>>,
    rate_limit_key: Option<String>,
    adaptive: bool,
    server_feedback: bool,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    pool_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    pool_max_idle_per_host: Option<usize>,
    pool_idle_timeout: Option<Duration>,
    http2_prior_knowledge: bool,
    tls: Vec<TlsItem>,
    danger_accept_invalid_certs: bool,
    max_redirects: usize,
    dedup: bool,
    dedup_wait: Option<Duration>,
    allowed_hosts: Vec<String>,
    block_private_ips: bool,
    private_exemptions: Vec<IpNet>,
    correlation_header: String,
    user_agent: String,
    test_mode: bool,
    stubs: Stubs,
    hooks: Vec<EventHook>,
    name: String,
    sanitizer: Option<Sanitizer>,
    log: LogOptions,
    telemetry: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("test_mode", &self.test_mode)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        ClientBuilder {
            base_url: None,
            headers: Vec::new(),
            clock: None,
            retry: None,
            retry_enabled: true,
            retry_statuses: DEFAULT_RETRY_STATUSES
                .iter()
                .filter_map(|code| StatusCode::from_u16(*code).ok())
                .collect(),
            retry_safe: false,
            retry_after_any_status: false,
            breaker: None,
            breaker_enabled: true,
            breaker_key: None,
            breaker_failure: None,
            limiter: None,
            rate_limit: None,
            rate_limit_store: None,
            rate_limit_key: None,
            adaptive: true,
            server_feedback: true,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: None,
            pool_timeout: None,
            attempt_timeout: Some(Duration::from_secs(30)),
            total_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: None,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            http2_prior_knowledge: false,
            tls: Vec::new(),
            danger_accept_invalid_certs: false,
            max_redirects: 10,
            dedup: false,
            dedup_wait: None,
            allowed_hosts: Vec::new(),
            block_private_ips: false,
            private_exemptions: Vec::new(),
            correlation_header: "x-request-id".to_owned(),
            user_agent: concat!("httpower/", env!("CARGO_PKG_VERSION")).to_owned(),
            test_mode: false,
            stubs: Stubs::default(),
            hooks: Vec::new(),
            name: "default".to_owned(),
            sanitizer: None,
            log: LogOptions::default(),
            telemetry: true,
        }
    }

    /// The URL relative request paths are joined to.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// A header sent on every request (a request's own value replaces it).
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `User-Agent` sent when a request sets none.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// The clock every policy reads: a [`ManualClock`](httpower_core::clock::ManualClock)
    /// lets tests move through backoffs, limiter waits and open breakers instantly.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The retry policy (backoff, jitter, `max_retry_after`, budget).
    ///
    /// A policy built here keeps its own budget clock; leave it to the default to share
    /// the client's clock.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self.retry_enabled = true;
        self
    }

    /// No retries at all.
    pub fn no_retry(mut self) -> Self {
        self.retry_enabled = false;
        self
    }

    /// The statuses worth retrying (default 408, 429, 500, 502, 503, 504).
    pub fn retry_on_status(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.retry_statuses = statuses
            .into_iter()
            .filter_map(|code| StatusCode::from_u16(code).ok())
            .collect();
        self
    }

    /// Whether `POST` and `PATCH` may be retried without an `Idempotency-Key` header.
    /// Off by default: retrying a payment twice charges it twice.
    pub fn retry_safe(mut self, safe: bool) -> Self {
        self.retry_safe = safe;
        self
    }

    /// Honour `Retry-After` on every retried status, not only 429 and 503.
    pub fn retry_after_on_any_status(mut self, any: bool) -> Self {
        self.retry_after_any_status = any;
        self
    }

    /// The circuit breaker configuration (one breaker per key).
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(config);
        self.breaker_enabled = true;
        self
    }

    /// No circuit breaker.
    pub fn no_circuit_breaker(mut self) -> Self {
        self.breaker_enabled = false;
        self
    }

    /// One breaker for every request of this client, under `key`, instead of one per
    /// `host:port`.
    pub fn circuit_breaker_key(mut self, key: impl Into<String>) -> Self {
        self.breaker_key = Some(key.into());
        self
    }

    /// Which response statuses count as failures for the breaker (default: 5xx and
    /// 429). Transport errors and timeouts always count.
    pub fn breaker_failure_status(
        mut self,
        is_failure: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.breaker_failure = Some(Arc::new(is_failure));
        self
    }

    /// A client-side limiter on the client's own memory store, with `strategy`
    /// ([`Strategy::Error`] fails at once, [`Strategy::Wait`] waits up to `max_wait`).
    pub fn rate_limit(mut self, algorithm: impl Into<AnyAlgorithm>, strategy: Strategy) -> Self {
        self.rate_limit = Some((algorithm.into(), strategy));
        self
    }

    /// The store the limiter of [`rate_limit`](Self::rate_limit) keeps its state in
    /// (default: a memory store of its own).
    pub fn rate_limit_store(mut self, store: Arc<dyn Store>) -> Self {
        self.rate_limit_store = Some(store);
        self
    }

    /// A ready-made limiter (with its own store, timeout, fail mode and strategy),
    /// for example one shared with other clients.
    pub fn rate_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The key the limiter charges (default: the request's host).
    pub fn rate_limit_key(mut self, key: impl Into<String>) -> Self {
        self.rate_limit_key = Some(key.into());
        self
    }

    /// Lower the effective rate while the same key's breaker is half-open (to half) or
    /// open (to a tenth). On by default.
    pub fn adaptive_rate_limit(mut self, adaptive: bool) -> Self {
        self.adaptive = adaptive;
        self
    }

    /// Obey the server's rate-limit headers (`RateLimit`, `X-RateLimit-*`,
    /// `Retry-After`) before sending. On by default.
    pub fn server_feedback(mut self, enabled: bool) -> Self {
        self.server_feedback = enabled;
        self
    }

    /// Time allowed to establish a connection (TCP and TLS).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Time allowed between two reads of a response.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Time allowed to obtain a connection from the pool. The pool opens a new
    /// connection when none is idle rather than queueing, so this bounds the connect as
    /// well: the connect timeout in force is the smaller of the two.
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = Some(timeout);
        self
    }

    /// Time allowed for one attempt, up to the response headers.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Time allowed for the whole request: attempts, backoffs and waits.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = Some(timeout);
        self
    }

    /// No total timeout (attempts are still bounded by theirs).
    pub fn no_total_timeout(mut self) -> Self {
        self.total_timeout = None;
        self
    }

    /// Sets every timeout at once; `None` turns that timeout off.
    pub(crate) fn set_timeouts(
        mut self,
        connect: Option<Duration>,
        read: Option<Duration>,
        pool: Option<Duration>,
        attempt: Option<Duration>,
        total: Option<Duration>,
    ) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self.pool_timeout = pool;
        self.attempt_timeout = attempt;
        self.total_timeout = total;
        self
    }

    /// Idle connections kept per host.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = Some(max);
        self
    }

    /// How long an idle pooled connection is kept.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = Some(timeout);
        self
    }

    /// Speak HTTP/2 without negotiation (for `h2c` services). HTTP/2 over TLS is
    /// negotiated by ALPN without this.
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.http2_prior_knowledge = true;
        self
    }

    /// Trusts an extra certificate authority (PEM).
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.push(TlsItem::RootPem(pem.into()));
        self
    }

    /// A client certificate and its private key (PEM, concatenated).
    pub fn identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.push(TlsItem::IdentityPem(pem.into()));
        self
    }

    /// Accept any server certificate, expired or self-signed or for another host.
    /// Dangerous: anyone on the path can read and change the traffic.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.danger_accept_invalid_certs = accept;
        self
    }

    /// Redirects followed at most (default 10; 0 follows none).
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }

    /// Share one upstream call among identical requests in flight at the same time.
    pub fn dedup(mut self, enabled: bool) -> Self {
        self.dedup = enabled;
        self
    }

    /// How long a deduplicated request waits for the one in flight (default: its total
    /// timeout).
    pub fn dedup_wait_timeout(mut self, timeout: Duration) -> Self {
        self.dedup_wait = Some(timeout);
        self
    }

    /// Only these hosts may be called (exact names, or `*.example.com` for subdomains),
    /// on every redirect hop too.
    pub fn allowed_hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.allowed_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Refuse hosts that resolve to private, loopback or link-local addresses (checked
    /// on the resolved addresses, on every redirect hop).
    pub fn block_private_ips(mut self, block: bool) -> Self {
        self.block_private_ips = block;
        self
    }

    /// A private network that [`block_private_ips`](Self::block_private_ips) lets
    /// through (an internal service that is meant to be called).
    pub fn allow_private_network(mut self, network: IpNet) -> Self {
        self.private_exemptions.push(network);
        self
    }

    /// The header that carries the correlation id upstream (default `x-request-id`).
    pub fn correlation_header(mut self, name: impl Into<String>) -> Self {
        self.correlation_header = name.into();
        self
    }

    /// The client's name, used as the `client` label of metrics and in log lines
    /// (default `default`; clients from the configuration file get their section name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How requests are logged (lines at `INFO` by default; headers and bodies off).
    pub fn logging(mut self, log: LogOptions) -> Self {
        self.log = log;
        self
    }

    /// Switches every span, metric and log line of this client off (events still reach
    /// hooks and subscribers). On by default; without a `tracing` subscriber or a
    /// metrics recorder installed, leaving it on costs next to nothing.
    pub fn telemetry(mut self, enabled: bool) -> Self {
        self.telemetry = enabled;
        if !enabled {
            self.log.enabled = false;
        }
        self
    }

    /// The sanitizer for everything the client reports (default: the built-in lists).
    pub fn sanitizer(mut self, sanitizer: Sanitizer) -> Self {
        self.sanitizer = Some(sanitizer);
        self
    }

    /// Calls `hook` for every [`ClientEvent`].
    pub fn on_event(mut self, hook: impl Fn(&ClientEvent) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Test mode: no request reaches the network; stubs answer or the request fails
    /// with [`Reason::NetworkBlocked`].
    pub fn test_mode(mut self) -> Self {
        self.test_mode = true;
        self
    }

    /// A route stub (test mode).
    pub fn stub(mut self, stub: Stub) -> Self {
        self.test_mode = true;
        self.stubs.add_route(stub);
        self
    }

    /// A closure stub (test mode): answers the requests it returns `Some` for.
    pub fn stub_fn(
        mut self,
        handler: impl Fn(&StubRequest) -> Option<StubReply> + Send + Sync + 'static,
    ) -> Self {
        self.test_mode = true;
        self.stubs.add_handler(handler);
        self
    }

    /// Builds the client. Fails on an invalid base URL, header, certificate or policy.
    pub fn build(self) -> Result<Client, Error> {
        let clock: SharedClock = self.clock.unwrap_or_else(|| Arc::new(MonotonicClock));
        let base_url = match &self.base_url {
            Some(url) => Some(parse_base_url(url)?),
            None => None,
        };
        let default_headers = header_map(&self.headers)?;
        let correlation_header = HeaderName::from_bytes(self.correlation_header.as_bytes())
            .map_err(|_| {
                Error::new(Reason::InvalidHeader {
                    name: self.correlation_header.clone(),
                })
            })?;

        let host_policy = {
            let mut policy = HostPolicy::builder()
                .allowed_hosts(self.allowed_hosts.iter().cloned())
                .block_private_ips(self.block_private_ips);
            for network in &self.private_exemptions {
                policy = policy.exempt_cidr(*network);
            }
            let policy = policy.build().map_err(|err| {
                Error::with_source(
                    Reason::Config {
                        path: "allowed_hosts".to_owned(),
                        expected: "host names or *.domain patterns".to_owned(),
                        found: err.to_string(),
                    },
                    err,
                )
            })?;
            policy.is_active().then(|| Arc::new(policy))
        };

        let transport = if self.test_mode {
            Transport::Test(Arc::new(self.stubs))
        } else {
            Transport::Network(build_reqwest(
                &self.tls,
                ReqwestSettings {
                    connect_timeout: match (self.connect_timeout, self.pool_timeout) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    read_timeout: self.read_timeout,
                    pool_max_idle_per_host: self.pool_max_idle_per_host,
                    pool_idle_timeout: self.pool_idle_timeout,
                    http2_prior_knowledge: self.http2_prior_knowledge,
                    danger_accept_invalid_certs: self.danger_accept_invalid_certs,
                    max_redirects: self.max_redirects,
                    user_agent: &self.user_agent,
                    host_policy: host_policy.clone(),
                },
            )?)
        };

        let retry_policy = if self.retry_enabled {
            Some(match self.retry {
                Some(policy) => policy,
                None => RetryPolicy::builder()
                    .clock(Arc::clone(&clock))
                    .build()
                    .map_err(|err| Error::with_source(Reason::Transport, err))?,
            })
        } else {
            None
        };

        let breakers = if self.breaker_enabled {
            let config = self.breaker.unwrap_or_default();
            Some(BreakerRegistry::with_clock(config, Arc::clone(&clock)))
        } else {
            None
        };

        let limiter = match (self.limiter, self.rate_limit) {
            (Some(limiter), _) => Some(limiter),
            (None, Some((algorithm, strategy))) => {
                let store = self
                    .rate_limit_store
                    .unwrap_or_else(|| Arc::new(MemoryStore::with_clock(Arc::clone(&clock))));
                Some(
                    Limiter::builder("client", algorithm)
                        .strategy(strategy)
                        .clock(Arc::clone(&clock))
                        .build(store),
                )
            }
            (None, None) => None,
        };

        let feedback = self.server_feedback.then(|| FeedbackGate {
            limits: ServerLimits::new(10_000),
            strategy: limiter
                .as_ref()
                .map(Limiter::strategy)
                .unwrap_or(Strategy::Wait {
                    max_wait: retry_policy
                        .as_ref()
                        .map_or(Duration::from_secs(60), RetryPolicy::max_retry_after),
                }),
        });

        let client = Client {
            inner: Arc::new(ClientInner {
                transport,
                base_url,
                default_headers,
                clock,
                retry: RetryRules {
                    policy: retry_policy,
                    statuses: self.retry_statuses,
                    retry_safe: self.retry_safe,
                    retry_after_any_status: self.retry_after_any_status,
                },
                breakers,
                breaker_key: self.breaker_key.map(Arc::from),
                breaker_failure: self.breaker_failure.unwrap_or_else(|| {
                    Arc::new(|status: StatusCode| {
                        status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
                    })
                }),
                limiter_labels: limiter.as_ref().map_or_else(
                    || (SharedString::const_str(""), SharedString::const_str("")),
                    |limiter| {
                        (
                            SharedString::from(Arc::clone(limiter.name())),
                            SharedString::from(limiter.store().name().to_owned()),
                        )
                    },
                ),
                limiter,
                rate_limit_key: self.rate_limit_key.map(Arc::from),
                adaptive: self.adaptive,
                feedback,
                attempt_timeout: self.attempt_timeout,
                total_timeout: self.total_timeout,
                dedup: self.dedup,
                dedup_wait: self.dedup_wait,
                in_flight: InFlight::default(),
                host_policy,
                correlation_header,
                hooks: self.hooks,
                events: broadcast::channel(EVENT_CAPACITY).0,
                name: SharedString::from(Arc::<str>::from(self.name)),
                sanitizer: Arc::new(self.sanitizer.unwrap_or_default()),
                log: self.log,
                telemetry: self.telemetry,
            }),
        };
        crate::observe::watch_breakers(&client);
        Ok(client)
    }
}

fn parse_base_url(url: &str) -> Result<Url, Error> {
    let mut parsed = Url::parse(url).map_err(|err| Error::with_source(Reason::InvalidUrl, err))?;
    if parsed.cannot_be_a_base() || parsed.host_str().is_none() {
        return Err(Error::new(Reason::InvalidUrl));
    }
    // `join` replaces the last segment unless the path ends with a slash.
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

/// Validated headers: CR, LF and NUL are refused, naming the header.
pub(crate) fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let (name, value) = parse_header(name, value)?;
        map.insert(name, value);
    }
    Ok(map)
}

/// One validated header.
pub(crate) fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let invalid = || {
        Error::new(Reason::InvalidHeader {
            name: name.to_owned(),
        })
    };
    crate::security::check_header(name, value.as_bytes()).map_err(|_| invalid())?;
    let parsed_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
    let parsed_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
    Ok((parsed_name, parsed_value))
}

struct ReqwestSettings<'a> {
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    pool_max_idle_per_host: Option<usize>,
    pool_idle_timeout: Option<Duration>,
    http2_prior_knowledge: bool,
    danger_accept_invalid_certs: bool,
    max_redirects: usize,
    user_agent: &'a str,
    host_policy: Option<Arc<HostPolicy>>,
}

fn build_reqwest(tls: &[TlsItem], settings: ReqwestSettings<'_>) -> Result<reqwest::Client, Error> {
    let tls_error = |err: reqwest::Error| Error::with_source(Reason::Tls, err);
    let mut builder = reqwest::Client::builder()
        .user_agent(settings.user_agent)
        .pool_idle_timeout(settings.pool_idle_timeout)
        .tls_danger_accept_invalid_certs(settings.danger_accept_invalid_certs);
    if let Some(timeout) = settings.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = settings.read_timeout {
        builder = builder.read_timeout(timeout);
    }
    if let Some(max) = settings.pool_max_idle_per_host {
        builder = builder.pool_max_idle_per_host(max);
    }
    if settings.http2_prior_knowledge {
        builder = builder.http2_prior_knowledge();
    }
    let mut roots = Vec::new();
    for item in tls {
        match item {
            TlsItem::RootPem(pem) => {
                roots.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(tls_error)?);
            }
            TlsItem::IdentityPem(pem) => {
                builder = builder.identity(reqwest::Identity::from_pem(pem).map_err(tls_error)?);
            }
        }
    }
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    match settings.host_policy {
        // Redirects are handed back to the caller: nothing for the guard to check.
        Some(_) if settings.max_redirects == 0 => {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        Some(policy) => {
            builder = builder
                .dns_resolver(Arc::new(crate::security::GuardedResolver::new(Arc::clone(
                    &policy,
                ))))
                .redirect(crate::security::redirect_policy(
                    policy,
                    settings.max_redirects,
                ));
        }
        None => {
            builder = builder.redirect(if settings.max_redirects == 0 {
                reqwest::redirect::Policy::none()
            } else {
                reqwest::redirect::Policy::limited(settings.max_redirects)
            });
        }
    }
    builder.build().map_err(tls_error)
}
