//! The resolved, plain-data settings a client, limiter or store is built from, and
//! their conversions into the `httpower-core` policy types.

use std::num::NonZeroU32;
use std::time::Duration;

use httpower_core::breaker::{BreakerConfig, BreakerConfigError, SlowCallRule, Window};
use httpower_core::clock::Clock;
use httpower_core::rate::{
    AnyAlgorithm, FixedWindow, Gcra, KeyedConfig, Quota, QuotaError, SlidingWindow, Strategy,
    WindowQuota,
};
use httpower_core::retry::{BudgetError, Jitter, RetryBudget, RetryPolicyBuilder};
use httpower_core::store::{CompositeMode, FailMode};
use ipnet::IpNet;

use super::error::ConfigError;
use super::path::join;

/// Everything one named client needs, merged from (highest first) the client's own
/// keys, its preset, the global sections and the built-in defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// The client's name (`stripe` for `[clients.stripe]`; `default` for the global
    /// defaults).
    pub name: String,
    /// The preset the client started from, if any.
    pub profile: Option<String>,
    /// The URL relative request paths are joined to.
    pub base_url: Option<String>,
    /// Headers sent with every request, in file order.
    pub headers: Vec<(String, String)>,
    /// Connection and request timeouts.
    pub timeouts: TimeoutSettings,
    /// Retry policy.
    pub retry: RetrySettings,
    /// Circuit breaker, when enabled.
    pub circuit_breaker: Option<BreakerSettings>,
    /// Client-side rate limit, when configured and enabled.
    pub rate_limit: Option<RateLimitSettings>,
    /// Whether identical in-flight requests are coalesced into one.
    pub dedup: bool,
    /// Hosts requests may go to; `None` allows any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// Whether requests to private, loopback and link-local addresses are refused.
    pub block_private_ips: bool,
    /// Request logging.
    pub logging: LoggingSettings,
}

/// Timeouts; `None` means "no limit of this kind".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutSettings {
    /// Establishing a connection (TCP and TLS). Default 10 s.
    pub connect: Option<Duration>,
    /// Waiting for each chunk of the response. Default: none (the attempt timeout bounds
    /// the response headers).
    pub read: Option<Duration>,
    /// Writing the request. Default: none.
    pub write: Option<Duration>,
    /// Waiting for a pooled connection. Default: none.
    pub pool: Option<Duration>,
    /// One attempt, from sending to the end of the response headers. Default 30 s.
    pub attempt: Option<Duration>,
    /// The whole call, every retry and wait included. Default 90 s.
    pub total: Option<Duration>,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings {
            connect: Some(Duration::from_secs(10)),
            read: None,
            write: None,
            pool: None,
            attempt: Some(Duration::from_secs(30)),
            total: Some(Duration::from_secs(90)),
        }
    }
}

/// How retry delays are randomised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterKind {
    /// No randomness.
    None,
    /// Uniform in `[0, d)`.
    Full,
    /// `d / 2` plus uniform in `[0, d / 2)`.
    Equal,
    /// Grows from the previous delay: uniform in `[base_delay, 3 * previous)`.
    Decorrelated,
    /// `d * (1 - factor * r)`: at most `factor` below the exponential delay.
    Proportional {
        /// In `[0, 1]`; default 0.2.
        factor: f64,
    },
}

impl JitterKind {
    /// The core jitter value.
    pub fn to_jitter(self) -> Jitter {
        match self {
            JitterKind::None => Jitter::None,
            JitterKind::Full => Jitter::Full,
            JitterKind::Equal => Jitter::Equal,
            JitterKind::Decorrelated => Jitter::Decorrelated,
            JitterKind::Proportional { factor } => Jitter::Proportional { factor },
        }
    }

    /// The name used in the configuration (`proportional`, `full`, ...).
    pub fn name(self) -> &'static str {
        match self {
            JitterKind::None => "none",
            JitterKind::Full => "full",
            JitterKind::Equal => "equal",
            JitterKind::Decorrelated => "decorrelated",
            JitterKind::Proportional { .. } => "proportional",
        }
    }
}

/// The retry budget: retries may add at most `ratio` to a client's request rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Retries allowed per original request over the window (default 0.2).
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic (default 10).
    pub min_per_sec: u32,
    /// How long a request counts towards the budget (default 10 s).
    pub ttl: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// The retry policy of a client.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Whether failed attempts are retried at all (default true).
    pub enabled: bool,
    /// Retries after the first attempt (default 3: four attempts in all).
    pub max_retries: u32,
    /// Delay before the first retry (default 1 s).
    pub base_delay: Duration,
    /// Cap on the exponential delay (default 30 s).
    pub max_delay: Duration,
    /// Randomisation of the delay (default proportional, factor 0.2).
    pub jitter: JitterKind,
    /// The longest `Retry-After` honoured by waiting (default 60 s).
    pub max_retry_after: Duration,
    /// Statuses that are retried (default 408, 429, 500, 502, 503, 504).
    pub retry_on_status: Vec<u16>,
    /// Whether POST and PATCH are retried too (default false).
    pub retry_safe: bool,
    /// Whether `Retry-After` is honoured on every retried status, not only 429 and 503
    /// (default false).
    pub retry_after_on_any_status: bool,
    /// The retry budget; `None` when disabled.
    pub budget: Option<BudgetSettings>,
}

/// The statuses retried unless the configuration says otherwise.
pub const DEFAULT_RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: JitterKind::Proportional { factor: 0.2 },
            max_retry_after: Duration::from_secs(60),
            retry_on_status: DEFAULT_RETRY_STATUSES.to_vec(),
            retry_safe: false,
            retry_after_on_any_status: false,
            budget: Some(BudgetSettings::default()),
        }
    }
}

impl RetrySettings {
    /// A core retry-policy builder with these settings; the budget (when enabled) and
    /// the builder read time from `clock`. Disabled retry gives `max_retries(0)`.
    ///
    /// Errors carry the key path under `retry` (`retry.base_delay`).
    pub fn to_policy_builder(
        &self,
        clock: impl Clock + Clone,
    ) -> Result<RetryPolicyBuilder, ConfigError> {
        self.policy_builder_at("retry", clock)
    }

    pub(crate) fn policy_builder_at(
        &self,
        prefix: &str,
        clock: impl Clock + Clone,
    ) -> Result<RetryPolicyBuilder, ConfigError> {
        let max_retries = if self.enabled { self.max_retries } else { 0 };
        let mut builder = RetryPolicyBuilder::default()
            .max_retries(max_retries)
            .base_delay(self.base_delay)
            .max_delay(self.max_delay)
            .jitter(self.jitter.to_jitter())
            .max_retry_after(self.max_retry_after)
            .clock(clock.clone());
        builder = match self.budget {
            None => builder.no_budget(),
            Some(b) => {
                let budget = RetryBudget::builder()
                    .ratio(b.ratio)
                    .min_per_sec(b.min_per_sec)
                    .ttl(b.ttl)
                    .build(clock)
                    .map_err(|e| budget_error(prefix, &e))?;
                builder.budget(budget)
            }
        };
        // Validate the backoff now, so a bad value is reported against its key.
        builder.clone().build().map_err(|e| {
            ConfigError::invalid(join(prefix, e.field()), e.to_string(), "an invalid value")
        })?;
        Ok(builder)
    }
}

fn budget_error(prefix: &str, e: &BudgetError) -> ConfigError {
    let path = join(&join(prefix, "budget"), e.field());
    match e {
        BudgetError::InvalidTtl { ttl } => ConfigError::invalid(
            path,
            "a duration between 10ms and 1h",
            super::duration::format_duration(*ttl),
        ),
        BudgetError::InvalidRatio { ratio } => {
            ConfigError::invalid(path, "a number in 0 ..= 1000", ratio.to_string())
        }
        other => ConfigError::invalid(path, other.to_string(), "an invalid value"),
    }
}

/// Circuit-breaker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Failures in the window that open the breaker (default 5).
    pub failure_threshold: u32,
    /// Failure percentage that also opens it, once `minimum_calls` are recorded.
    pub failure_threshold_percentage: Option<f64>,
    /// Calls the window must hold before a rate rule may trip (default 10).
    pub minimum_calls: u32,
    /// The window: the last `n` calls (default 10) or a time span in buckets.
    pub window: Window,
    /// The slow-call rule, when `slow_call_duration` is set.
    pub slow_call: Option<SlowCallRule>,
    /// How long the breaker stays open before probing (default 60 s).
    pub timeout: Duration,
    /// Growth of the open timeout on each consecutive re-open (default 1.0: none).
    pub timeout_multiplier: f64,
    /// Cap on the grown timeout (default: 30 minutes or `timeout` if longer).
    pub max_timeout: Option<Duration>,
    /// Random shortening of each open timeout, a fraction in `[0, 1)` (default 0).
    pub timeout_jitter: f64,
    /// Probes admitted while half-open (default 1).
    pub half_open_requests: u32,
    /// Successful probes that close the breaker (default: `half_open_requests`).
    pub success_threshold: Option<u32>,
    /// The breaker key (default: the request URL's host and port).
    pub key: Option<String>,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            failure_threshold_percentage: None,
            minimum_calls: 10,
            window: Window::Count(10),
            slow_call: None,
            timeout: Duration::from_secs(60),
            timeout_multiplier: 1.0,
            max_timeout: None,
            timeout_jitter: 0.0,
            half_open_requests: 1,
            success_threshold: None,
            key: None,
        }
    }
}

impl BreakerSettings {
    /// The validated core breaker configuration. Errors carry the key path under
    /// `circuit_breaker` (`circuit_breaker.failure_threshold`).
    pub fn to_config(&self) -> Result<BreakerConfig, ConfigError> {
        self.config_at("circuit_breaker")
    }

    pub(crate) fn config_at(&self, prefix: &str) -> Result<BreakerConfig, ConfigError> {
        let mut b = BreakerConfig::builder()
            .failure_threshold(self.failure_threshold)
            .minimum_calls(self.minimum_calls)
            .window(self.window)
            .timeout(self.timeout)
            .timeout_multiplier(self.timeout_multiplier)
            .timeout_jitter(self.timeout_jitter)
            .half_open_requests(self.half_open_requests);
        if let Some(p) = self.failure_threshold_percentage {
            b = b.failure_threshold_percentage(p);
        }
        if let Some(rule) = self.slow_call {
            b = b.slow_calls(rule.duration, rule.rate_threshold);
        }
        if let Some(max) = self.max_timeout {
            b = b.max_timeout(max);
        }
        if let Some(s) = self.success_threshold {
            b = b.success_threshold(s);
        }
        b.build().map_err(|e| breaker_error(prefix, self, &e))
    }
}

fn breaker_error(prefix: &str, s: &BreakerSettings, e: &BreakerConfigError) -> ConfigError {
    let key = match e.field() {
        "window" => match s.window {
            Window::Count(_) => "window_size",
            Window::Time { .. } => "window_duration",
        },
        other => other,
    };
    ConfigError::invalid(join(prefix, key), e.problem(), e.value())
}

/// The algorithm of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmKind {
    /// A token bucket (implemented as GCRA): `rate` per `period` with a `burst`.
    TokenBucket,
    /// GCRA; the same limiter as `TokenBucket`, under its own name.
    Gcra,
    /// The two-counter sliding window: `limit` per `window`.
    SlidingWindow,
    /// The aligned fixed window: `limit` per `window`.
    FixedWindow,
    /// At most `max_concurrent` requests in flight.
    Concurrency,
}

impl AlgorithmKind {
    /// Every configuration name, in the order documented.
    pub const NAMES: [&'static str; 5] = [
        "token_bucket",
        "gcra",
        "sliding_window",
        "fixed_window",
        "concurrency",
    ];

    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            AlgorithmKind::TokenBucket => "token_bucket",
            AlgorithmKind::Gcra => "gcra",
            AlgorithmKind::SlidingWindow => "sliding_window",
            AlgorithmKind::FixedWindow => "fixed_window",
            AlgorithmKind::Concurrency => "concurrency",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "token_bucket" => AlgorithmKind::TokenBucket,
            "gcra" => AlgorithmKind::Gcra,
            "sliding_window" => AlgorithmKind::SlidingWindow,
            "fixed_window" => AlgorithmKind::FixedWindow,
            "concurrency" => AlgorithmKind::Concurrency,
            _ => return None,
        })
    }
}

/// How much a limiter admits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantity {
    /// `count` requests per `period` (`rate_per_second`, `requests` + `per`, or
    /// `limit` + `window_seconds`).
    Rate {
        /// Requests per period; may be fractional for GCRA (`rate_per_second = 0.5`).
        count: f64,
        /// The period.
        period: Duration,
    },
    /// At most this many requests in flight.
    Concurrent(u32),
}

/// A named limiter (`[limiters.NAME]`), or the inline limit of a client.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterSettings {
    /// The limiter's name: its namespace in the store.
    pub name: String,
    /// The store holding its state (default: the built-in `memory` store).
    pub store_id: String,
    /// The algorithm.
    pub algorithm: AlgorithmKind,
    /// How much it admits.
    pub quantity: Quantity,
    /// Burst for token-bucket / GCRA limiters (default: one period's worth).
    pub burst: Option<u32>,
    /// How long one decision may take before `fail_mode` applies (default 100 ms).
    pub timeout: Duration,
    /// What happens when the store cannot decide in time (default: fail open).
    pub fail_mode: FailMode,
    /// Over the limit: fail at once (default) or wait up to a maximum.
    pub strategy: Strategy,
    /// Whether the limiter is on (default true).
    pub enabled: bool,
}

impl LimiterSettings {
    /// The core rate algorithm. Errors for a `concurrency` limiter (use
    /// [`max_concurrent`](Self::max_concurrent)) and for values the core rejects.
    pub fn to_algorithm(&self) -> Result<AnyAlgorithm, ConfigError> {
        self.algorithm_at(&join("limiters", &self.name))
    }

    /// The permit count of a `concurrency` limiter.
    pub fn max_concurrent(&self) -> Option<NonZeroU32> {
        match self.quantity {
            Quantity::Concurrent(n) => NonZeroU32::new(n),
            Quantity::Rate { .. } => None,
        }
    }

    pub(crate) fn algorithm_at(&self, prefix: &str) -> Result<AnyAlgorithm, ConfigError> {
        let (count, period) = match self.quantity {
            Quantity::Rate { count, period } => (count, period),
            Quantity::Concurrent(_) => {
                return Err(ConfigError::invalid(
                    join(prefix, "algorithm"),
                    "a rate algorithm (token_bucket, gcra, sliding_window, fixed_window)",
                    "\"concurrency\", which is not a rate algorithm",
                ))
            }
        };
        let quota_err = |e: QuotaError| quota_error(prefix, self, &e);
        match self.algorithm {
            AlgorithmKind::TokenBucket | AlgorithmKind::Gcra => {
                let quota = if count.fract() == 0.0 && count <= f64::from(u32::MAX) {
                    let rate = count as u32;
                    Quota::new(rate, period, self.burst.unwrap_or(rate)).map_err(quota_err)?
                } else {
                    // A fractional rate: one request per (period / count).
                    let interval = Duration::try_from_secs_f64(period.as_secs_f64() / count)
                        .map_err(|_| {
                            ConfigError::invalid(
                                join(prefix, "rate_per_second"),
                                "a rate above zero",
                                count.to_string(),
                            )
                        })?;
                    let burst = self.burst.unwrap_or_else(|| count.ceil().max(1.0) as u32);
                    Quota::new(1, interval, burst).map_err(quota_err)?
                };
                Ok(AnyAlgorithm::Gcra(Gcra::new(quota)))
            }
            AlgorithmKind::SlidingWindow | AlgorithmKind::FixedWindow => {
                let quota = WindowQuota::new(count as u32, period).map_err(quota_err)?;
                Ok(match self.algorithm {
                    AlgorithmKind::FixedWindow => {
                        AnyAlgorithm::FixedWindow(FixedWindow::new(quota))
                    }
                    _ => AnyAlgorithm::SlidingWindow(SlidingWindow::new(quota)),
                })
            }
            AlgorithmKind::Concurrency => Err(ConfigError::invalid(
                join(prefix, "algorithm"),
                "a rate algorithm with a rate",
                "\"concurrency\"",
            )),
        }
    }
}

fn quota_error(prefix: &str, s: &LimiterSettings, e: &QuotaError) -> ConfigError {
    let field = match e {
        QuotaError::Zero { field } | QuotaError::Overflow { field, .. } => *field,
    };
    let key = match field {
        "burst" => "burst",
        "rate" | "limit" => "limit",
        _ => "window_seconds",
    };
    let found = match (key, s.quantity) {
        ("burst", _) => s
            .burst
            .map_or_else(|| "the default".to_owned(), |b| b.to_string()),
        (_, Quantity::Rate { count, period }) => {
            format!("{count} per {}", super::duration::format_duration(period))
        }
        _ => String::new(),
    };
    ConfigError::invalid(join(prefix, key), e.to_string(), found)
}

/// A client's rate limit: a limiter plus the client-side refinements.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// The limiter: a named `[limiters.X]` the client refers to, or the client's inline
    /// limit (named `client:NAME`).
    pub limiter: LimiterSettings,
    /// Whether the limiter is a named `[limiters.X]` (true) or inline (false).
    pub shared: bool,
    /// The key the limit is kept under (default: the request URL's host).
    pub key: Option<String>,
    /// Whether the rate drops while the breaker of the same key is open or half-open
    /// (default true).
    pub adaptive: bool,
    /// Whether server rate-limit headers update the limiter (default true).
    pub server_feedback: bool,
}

/// The level of request logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// One line per request and response (default).
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Request logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    /// Whether requests are logged (default true).
    pub enabled: bool,
    /// The level of the request and response lines (default info).
    pub level: LogLevel,
    /// Whether (sanitized) headers are logged (default false).
    pub log_headers: bool,
    /// Whether (sanitized, truncated) bodies are logged (default false).
    pub log_body: bool,
    /// Bodies are truncated to this many bytes in logs (default 4096).
    pub max_body_bytes: usize,
    /// Header names redacted in addition to the built-in list.
    pub sanitize_headers: Vec<String>,
    /// Body field names redacted in addition to the built-in list.
    pub sanitize_body_fields: Vec<String>,
    /// The header carrying the correlation id upstream (default `x-request-id`).
    pub correlation_header: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            enabled: true,
            level: LogLevel::Info,
            log_headers: false,
            log_body: false,
            max_body_bytes: 4096,
            sanitize_headers: Vec::new(),
            sanitize_body_fields: Vec::new(),
            correlation_header: "x-request-id".to_owned(),
        }
    }
}

/// A store of limiter state (`[stores.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreSettings {
    /// The in-process store.
    Memory(MemoryStoreSettings),
    /// A Redis deployment.
    Redis(Box<RedisStoreSettings>),
}

impl StoreSettings {
    /// `memory` or `redis`.
    pub fn strategy(&self) -> &'static str {
        match self {
            StoreSettings::Memory(_) => "memory",
            StoreSettings::Redis(_) => "redis",
        }
    }
}

/// The in-process store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreSettings {
    /// The most keys held at once (default 100,000).
    pub max_keys: usize,
    /// Keys idle this long may be evicted (default 300 s).
    pub idle_timeout: Duration,
}

impl Default for MemoryStoreSettings {
    fn default() -> Self {
        MemoryStoreSettings {
            max_keys: 100_000,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl MemoryStoreSettings {
    /// The core sizing of an in-memory store with these settings.
    pub fn to_keyed_config(&self) -> KeyedConfig {
        KeyedConfig {
            max_keys: self.max_keys,
            idle_timeout: self.idle_timeout,
            ..KeyedConfig::default()
        }
    }
}

/// How a Redis store reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// One server (default).
    Single,
    /// Sentinel-managed primary and replicas.
    Sentinel,
    /// Redis Cluster.
    Cluster,
}

impl RedisMode {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            RedisMode::Single => "single",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// A Redis store.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisStoreSettings {
    /// `redis://` or `rediss://` URL (may carry user, password and database).
    pub url: Option<String>,
    /// Single server, Sentinel or Cluster.
    pub mode: RedisMode,
    /// Cluster seed nodes or Sentinel addresses.
    pub nodes: Vec<String>,
    /// The Sentinel primary's name (Sentinel mode).
    pub sentinel_master: Option<String>,
    /// Database number (overrides the URL's).
    pub db: Option<u32>,
    /// User name (overrides the URL's).
    pub username: Option<String>,
    /// Password (overrides the URL's).
    pub password: Option<String>,
    /// Prefix of every key (default `httpower`).
    pub key_prefix: String,
    /// Accepted for compatibility with rate-sync files (default 10) and unused: the
    /// Redis store multiplexes one connection per node, so there is no pool to size.
    pub max_connections: u32,
    /// Per-command socket timeout (default 5 s).
    pub socket_timeout: Duration,
    /// Connect timeout (default 5 s).
    pub socket_connect_timeout: Duration,
    /// Whether a timed-out command is retried once (default false).
    pub retry_on_timeout: bool,
    /// Interval of background health checks (default 30 s).
    pub health_check_interval: Duration,
    /// TLS certificate requirement for `rediss://`: `none`, `optional` or `required`.
    pub ssl_cert_reqs: Option<String>,
    /// CA bundle for `rediss://`.
    pub ssl_ca_certs: Option<String>,
}

/// How an inbound route identifies a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// The client IP, from forwarding headers only behind trusted proxies (default).
    ClientIp,
    /// The TCP peer address.
    PeerIp,
    /// The (hashed) value of a header, e.g. an API key.
    Header(String),
    /// One key for everybody.
    Global,
}

/// One inbound rate-limit rule (`[[server.routes]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Path patterns the rule applies to (`/api/*`, `/login`).
    pub include: Vec<String>,
    /// Path patterns excluded even when included.
    pub exclude: Vec<String>,
    /// The limiters checked, by name.
    pub limiters: Vec<String>,
    /// How several limiters combine (default all must pass).
    pub mode: CompositeMode,
    /// How the caller is identified, one entry per limiter in the order of `limiters`
    /// (from `keys`, or the one `key` for every limiter).
    pub keys: Vec<RouteKey>,
}

/// Inbound protection (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerSettings {
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Rate-limit rules, checked in order.
    pub routes: Vec<RouteSettings>,
}
