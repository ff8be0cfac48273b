//! Partial layers read from the file, their merge, and their resolution into settings.
//!
//! A layer holds only what one table said (`Option` everywhere). A client's settings
//! are its own layer laid over its preset's, over the global sections', over the
//! built-in defaults; the first layer that sets a value wins.

use std::collections::BTreeMap;
use std::time::Duration;

use httpower_core::breaker::{SlowCallRule, Window};
use httpower_core::rate::Strategy;
use httpower_core::store::FailMode;

use super::duration::BareUnit;
use super::error::ConfigError;
use super::path::join;
use super::reader::Reader;
use super::settings::{
    AlgorithmKind, BreakerSettings, BudgetSettings, JitterKind, LimiterSettings, LogLevel,
    LoggingSettings, Quantity, RateLimitSettings, RetrySettings, StoreSettings, TimeoutSettings,
};

/// Keeps the first `Some`: `top` over `base`, field by field.
macro_rules! overlay {
    ($top:ident, $base:ident; $($field:ident),* $(,)?) => {
        $( if $top.$field.is_none() { $top.$field = $base.$field; } )*
    };
}

pub(crate) const RETRY_KEYS: &[&str] = &[
    "enabled",
    "max_retries",
    "base_delay",
    "max_delay",
    "jitter",
    "jitter_factor",
    "max_retry_after",
    "retry_on_status",
    "retry_safe",
    "retry_after_on_any_status",
    "budget",
];
const BUDGET_KEYS: &[&str] = &["enabled", "ratio", "min_per_sec", "ttl"];
pub(crate) const BREAKER_KEYS: &[&str] = &[
    "enabled",
    "failure_threshold",
    "failure_threshold_percentage",
    "minimum_calls",
    "window_size",
    "window_duration",
    "window_buckets",
    "slow_call_duration",
    "slow_call_rate_threshold",
    "timeout",
    "timeout_multiplier",
    "max_timeout",
    "timeout_jitter",
    "half_open_requests",
    "success_threshold",
];
pub(crate) const LIMITER_KEYS: &[&str] = &[
    "enabled",
    "store_id",
    "algorithm",
    "rate_per_second",
    "requests",
    "per",
    "limit",
    "window_seconds",
    "window",
    "burst",
    "max_concurrent",
    "timeout",
    "fail_closed",
    "strategy",
    "max_wait_time",
];
pub(crate) const RATE_LIMIT_KEYS: &[&str] = &[
    "enabled",
    "store_id",
    "algorithm",
    "rate_per_second",
    "requests",
    "per",
    "limit",
    "window_seconds",
    "window",
    "burst",
    "max_concurrent",
    "timeout",
    "fail_closed",
    "strategy",
    "max_wait_time",
    "limiter",
    "adaptive",
    "server_feedback",
];
pub(crate) const TIMEOUT_KEYS: &[&str] = &["connect", "read", "write", "pool", "attempt", "total"];
pub(crate) const LOGGING_KEYS: &[&str] = &[
    "enabled",
    "level",
    "log_headers",
    "log_body",
    "max_body_bytes",
    "sanitize_headers",
    "sanitize_body_fields",
    "correlation_header",
];
pub(crate) const SECURITY_KEYS: &[&str] = &["allowed_hosts", "block_private_ips"];

/// The name of the store every limiter uses unless it names another one.
pub(crate) const DEFAULT_STORE: &str = "memory";

/// The default longest wait of the `wait` strategy.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);
/// The default decision timeout of a limiter.
const DEFAULT_LIMITER_TIMEOUT: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------
// Retry

#[derive(Debug, Clone, Default)]
pub(crate) struct BudgetLayer {
    pub(crate) enabled: Option<bool>,
    pub(crate) ratio: Option<f64>,
    pub(crate) min_per_sec: Option<u32>,
    pub(crate) ttl: Option<Duration>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RetryLayer {
    pub(crate) enabled: Option<bool>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) base_delay: Option<Duration>,
    pub(crate) max_delay: Option<Duration>,
    pub(crate) jitter: Option<&'static str>,
    pub(crate) jitter_factor: Option<f64>,
    pub(crate) max_retry_after: Option<Duration>,
    pub(crate) retry_on_status: Option<Vec<u16>>,
    pub(crate) retry_safe: Option<bool>,
    pub(crate) retry_after_on_any_status: Option<bool>,
    pub(crate) budget: BudgetLayer,
}

const JITTER_NAMES: &[&str] = &["none", "full", "equal", "decorrelated", "proportional"];

impl RetryLayer {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let mut budget = BudgetLayer::default();
        match r.get("budget") {
            None => {}
            Some(toml::Value::Boolean(b)) => budget.enabled = Some(*b),
            Some(_) => {
                if let Some(b) = r.table("budget", BUDGET_KEYS)? {
                    budget = BudgetLayer {
                        enabled: b.bool("enabled")?,
                        ratio: b.number("ratio", 0.0, 1000.0)?,
                        min_per_sec: b.u32("min_per_sec", 0)?,
                        ttl: b.duration("ttl", BareUnit::Millis)?,
                    };
                }
            }
        }
        let retry_on_status = match r.array("retry_on_status")? {
            None => None,
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (path, v) in items {
                    match v {
                        toml::Value::Integer(code) if (100..=599).contains(code) => {
                            out.push(*code as u16);
                        }
                        other => {
                            return Err(ConfigError::invalid(
                                path,
                                "an HTTP status code in 100 ..= 599",
                                super::reader::describe(other),
                            ))
                        }
                    }
                }
                Some(out)
            }
        };
        Ok(RetryLayer {
            enabled: r.bool("enabled")?,
            max_retries: r.u32("max_retries", 0)?,
            base_delay: r.nonzero_duration("base_delay", BareUnit::Millis)?,
            max_delay: r.nonzero_duration("max_delay", BareUnit::Millis)?,
            jitter: r.choice("jitter", JITTER_NAMES)?,
            jitter_factor: r.number("jitter_factor", 0.0, 1.0)?,
            max_retry_after: r.duration("max_retry_after", BareUnit::Millis)?,
            retry_on_status,
            retry_safe: r.bool("retry_safe")?,
            retry_after_on_any_status: r.bool("retry_after_on_any_status")?,
            budget,
        })
    }

    pub(crate) fn over(mut self, base: &RetryLayer) -> Self {
        let base = base.clone();
        overlay!(self, base; enabled, max_retries, base_delay, max_delay, jitter,
            jitter_factor, max_retry_after, retry_on_status, retry_safe,
            retry_after_on_any_status);
        let (mut top, b) = (self.budget, base.budget);
        overlay!(top, b; enabled, ratio, min_per_sec, ttl);
        self.budget = top;
        self
    }

    pub(crate) fn resolve(&self, path: &str) -> Result<RetrySettings, ConfigError> {
        let d = RetrySettings::default();
        let factor = self.jitter_factor.unwrap_or(0.2);
        let jitter = match self.jitter.unwrap_or("proportional") {
            "none" => JitterKind::None,
            "full" => JitterKind::Full,
            "equal" => JitterKind::Equal,
            "decorrelated" => JitterKind::Decorrelated,
            _ => JitterKind::Proportional { factor },
        };
        let base_delay = self.base_delay.unwrap_or(d.base_delay);
        let max_delay = self.max_delay.unwrap_or(d.max_delay);
        if max_delay < base_delay {
            return Err(ConfigError::invalid(
                join(path, "max_delay"),
                format!(
                    "a duration of at least base_delay ({})",
                    super::duration::format_duration(base_delay)
                ),
                super::duration::format_duration(max_delay),
            ));
        }
        let defaults = BudgetSettings::default();
        let budget = if self.budget.enabled == Some(false) {
            None
        } else {
            Some(BudgetSettings {
                ratio: self.budget.ratio.unwrap_or(defaults.ratio),
                min_per_sec: self.budget.min_per_sec.unwrap_or(defaults.min_per_sec),
                ttl: self.budget.ttl.unwrap_or(defaults.ttl),
            })
        };
        if let Some(b) = budget {
            if b.ttl < Duration::from_millis(10) || b.ttl > Duration::from_secs(3600) {
                return Err(ConfigError::invalid(
                    join(&join(path, "budget"), "ttl"),
                    "a duration between 10ms and 1h",
                    super::duration::format_duration(b.ttl),
                ));
            }
        }
        Ok(RetrySettings {
            enabled: self.enabled.unwrap_or(d.enabled),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            base_delay,
            max_delay,
            jitter,
            max_retry_after: self.max_retry_after.unwrap_or(d.max_retry_after),
            retry_on_status: self.retry_on_status.clone().unwrap_or(d.retry_on_status),
            retry_safe: self.retry_safe.unwrap_or(d.retry_safe),
            retry_after_on_any_status: self
                .retry_after_on_any_status
                .unwrap_or(d.retry_after_on_any_status),
            budget,
        })
    }
}

// ---------------------------------------------------------------------------------
// Circuit breaker

#[derive(Debug, Clone, Copy)]
pub(crate) enum WindowChoice {
    Count(u32),
    Time(Duration),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct BreakerLayer {
    pub(crate) enabled: Option<bool>,
    pub(crate) failure_threshold: Option<u32>,
    pub(crate) failure_threshold_percentage: Option<f64>,
    pub(crate) minimum_calls: Option<u32>,
    pub(crate) window: Option<WindowChoice>,
    pub(crate) window_buckets: Option<u32>,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate_threshold: Option<f64>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) timeout_multiplier: Option<f64>,
    pub(crate) max_timeout: Option<Duration>,
    pub(crate) timeout_jitter: Option<f64>,
    pub(crate) half_open_requests: Option<u32>,
    pub(crate) success_threshold: Option<u32>,
}

impl BreakerLayer {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let size = r.u32("window_size", 1)?;
        let duration = r.nonzero_duration("window_duration", BareUnit::Millis)?;
        let window =
            match (size, duration) {
                (Some(_), Some(_)) => return Err(ConfigError::invalid(
                    r.at("window_duration"),
                    "either window_size (count-based) or window_duration (time-based), not both",
                    "both",
                )),
                (Some(n), None) => Some(WindowChoice::Count(n)),
                (None, Some(d)) => Some(WindowChoice::Time(d)),
                (None, None) => None,
            };
        Ok(BreakerLayer {
            enabled: r.bool("enabled")?,
            failure_threshold: r.u32("failure_threshold", 1)?,
            failure_threshold_percentage: r.percent("failure_threshold_percentage")?,
            minimum_calls: r.u32("minimum_calls", 1)?,
            window,
            window_buckets: r.u32("window_buckets", 1)?,
            slow_call_duration: r.nonzero_duration("slow_call_duration", BareUnit::Millis)?,
            slow_call_rate_threshold: r.percent("slow_call_rate_threshold")?,
            timeout: r.nonzero_duration("timeout", BareUnit::Millis)?,
            timeout_multiplier: r.number("timeout_multiplier", 1.0, f64::INFINITY)?,
            max_timeout: r.nonzero_duration("max_timeout", BareUnit::Millis)?,
            timeout_jitter: r.number("timeout_jitter", 0.0, 0.999_999)?,
            half_open_requests: r.u32("half_open_requests", 1)?,
            success_threshold: r.u32("success_threshold", 1)?,
        })
    }

    pub(crate) fn over(mut self, base: &BreakerLayer) -> Self {
        let base = base.clone();
        overlay!(self, base; enabled, failure_threshold, failure_threshold_percentage,
            minimum_calls, window, window_buckets, slow_call_duration,
            slow_call_rate_threshold, timeout, timeout_multiplier, max_timeout,
            timeout_jitter, half_open_requests, success_threshold);
        self
    }

    /// `None` when disabled; `path` is the section's path for errors.
    pub(crate) fn resolve(
        &self,
        path: &str,
        key: Option<String>,
    ) -> Result<Option<BreakerSettings>, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let d = BreakerSettings::default();
        let window = match self.window {
            None => d.window,
            Some(WindowChoice::Count(n)) => Window::Count(n),
            Some(WindowChoice::Time(duration)) => Window::Time {
                duration,
                buckets: self.window_buckets.unwrap_or(10),
            },
        };
        let slow_call = match (self.slow_call_duration, self.slow_call_rate_threshold) {
            (Some(duration), rate) => Some(SlowCallRule {
                duration,
                rate_threshold: rate.unwrap_or(50.0),
            }),
            (None, Some(_)) => {
                return Err(ConfigError::missing(
                    join(path, "slow_call_duration"),
                    "a duration (slow_call_rate_threshold needs it)",
                ))
            }
            (None, None) => None,
        };
        let settings = BreakerSettings {
            failure_threshold: self.failure_threshold.unwrap_or(d.failure_threshold),
            failure_threshold_percentage: self.failure_threshold_percentage,
            minimum_calls: self.minimum_calls.unwrap_or(d.minimum_calls),
            window,
            slow_call,
            timeout: self.timeout.unwrap_or(d.timeout),
            timeout_multiplier: self.timeout_multiplier.unwrap_or(d.timeout_multiplier),
            max_timeout: self.max_timeout,
            timeout_jitter: self.timeout_jitter.unwrap_or(d.timeout_jitter),
            half_open_requests: self.half_open_requests.unwrap_or(d.half_open_requests),
            success_threshold: self.success_threshold,
            key,
        };
        settings.config_at(path)?;
        Ok(Some(settings))
    }
}

// ---------------------------------------------------------------------------------
// Rate limits (named limiters and client limits share one shape)

/// How much a limit admits, as written, with the path of the table it came from.
#[derive(Debug, Clone)]
pub(crate) enum RateSpec {
    /// `rate_per_second` or `requests` + `per`.
    Rate {
        count: f64,
        period: Duration,
        key: &'static str,
        at: String,
    },
    /// `limit` + `window_seconds` / `window`.
    Window { limit: u32, window: Duration },
    /// `max_concurrent`.
    Concurrent { max: u32, at: String },
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Inline(RateSpec),
    /// `limiter = "NAME"`, with the path of that key.
    Named {
        name: String,
        at: String,
    },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LimitLayer {
    pub(crate) enabled: Option<bool>,
    pub(crate) source: Option<Source>,
    pub(crate) algorithm: Option<(AlgorithmKind, String)>,
    pub(crate) burst: Option<u32>,
    pub(crate) store_id: Option<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) fail_closed: Option<bool>,
    pub(crate) strategy: Option<&'static str>,
    pub(crate) max_wait_time: Option<Duration>,
    pub(crate) adaptive: Option<bool>,
    pub(crate) server_feedback: Option<bool>,
    /// Whether the table had any key besides `enabled`.
    pub(crate) has_settings: bool,
}

const PER_NAMES: &[&str] = &["second", "minute", "hour", "day"];

fn read_rate(r: &Reader<'_>) -> Result<Option<RateSpec>, ConfigError> {
    let forms: Vec<&str> = ["rate_per_second", "requests", "limit", "max_concurrent"]
        .into_iter()
        .filter(|k| r.has(k))
        .collect();
    if forms.len() > 1 {
        return Err(ConfigError::invalid(
            r.at(forms[1]),
            "one way of saying the rate: rate_per_second, requests + per, \
             limit + window_seconds, or max_concurrent",
            format!("both {} and {}", forms[0], forms[1]),
        ));
    }
    let at = r.path().to_owned();
    let stray = |key: &str, needs: &str| {
        ConfigError::invalid(
            r.at(key),
            format!("{key} only together with {needs}"),
            format!("{key} without {needs}"),
        )
    };
    if r.has("per") && !r.has("requests") {
        return Err(stray("per", "requests"));
    }
    for key in ["window_seconds", "window"] {
        if r.has(key) && !r.has("limit") {
            return Err(stray(key, "limit"));
        }
    }
    if let Some(count) = r.positive("rate_per_second")? {
        return Ok(Some(RateSpec::Rate {
            count,
            period: Duration::from_secs(1),
            key: "rate_per_second",
            at,
        }));
    }
    if let Some(n) = r.u32("requests", 1)? {
        let period = match r.get("per") {
            None => Duration::from_secs(1),
            Some(toml::Value::String(s))
                if PER_NAMES.contains(&s.trim().to_ascii_lowercase().as_str()) =>
            {
                match s.trim().to_ascii_lowercase().as_str() {
                    "minute" => Duration::from_secs(60),
                    "hour" => Duration::from_secs(3600),
                    "day" => Duration::from_secs(86_400),
                    _ => Duration::from_secs(1),
                }
            }
            Some(_) => r
                .nonzero_duration("per", BareUnit::Seconds)
                .map_err(|e| {
                    ConfigError::invalid(
                        r.at("per"),
                        "\"second\", \"minute\", \"hour\", \"day\" or a duration such as \"10s\"",
                        e.found().to_owned(),
                    )
                    .suggest_from(e.found().trim_matches('"'), PER_NAMES.iter().copied())
                })?
                .unwrap_or(Duration::from_secs(1)),
        };
        return Ok(Some(RateSpec::Rate {
            count: f64::from(n),
            period,
            key: "requests",
            at,
        }));
    }
    if let Some(limit) = r.u32("limit", 1)? {
        let secs = r.nonzero_duration("window_seconds", BareUnit::Seconds)?;
        let dur = r.nonzero_duration("window", BareUnit::Seconds)?;
        let window = match (secs, dur) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    r.at("window"),
                    "either window_seconds or window, not both",
                    "both",
                ))
            }
            (Some(w), None) | (None, Some(w)) => w,
            (None, None) => {
                return Err(ConfigError::missing(
                    r.at("window_seconds"),
                    "the window length (limit needs it), e.g. window_seconds = 60",
                ))
            }
        };
        return Ok(Some(RateSpec::Window { limit, window }));
    }
    if let Some(max) = r.u32("max_concurrent", 1)? {
        return Ok(Some(RateSpec::Concurrent { max, at }));
    }
    Ok(None)
}

impl LimitLayer {
    /// Reads a `[limiters.X]` table (`named = false`) or a `rate_limit` table.
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let named = match r.name("limiter")? {
            Some(name) => {
                if let Some(k) = [
                    "rate_per_second",
                    "requests",
                    "limit",
                    "max_concurrent",
                    "algorithm",
                    "burst",
                    "store_id",
                    "timeout",
                    "fail_closed",
                    "per",
                    "window_seconds",
                    "window",
                ]
                .into_iter()
                .find(|k| r.has(k))
                {
                    return Err(ConfigError::invalid(
                        r.at(k),
                        "no limiter settings next to `limiter`: the named limiter defines them",
                        format!("{k} together with limiter = {name:?}"),
                    ));
                }
                Some(Source::Named {
                    name,
                    at: r.at("limiter"),
                })
            }
            None => None,
        };
        let source = match named {
            Some(s) => Some(s),
            None => read_rate(r)?.map(Source::Inline),
        };
        let algorithm = match r.choice("algorithm", &AlgorithmKind::NAMES)? {
            Some(name) => AlgorithmKind::from_name(name).map(|a| (a, r.at("algorithm"))),
            None => None,
        };
        let store_id = r.name("store_id")?.map(|s| (s, r.at("store_id")));
        Ok(LimitLayer {
            enabled: r.bool("enabled")?,
            source,
            algorithm,
            burst: r.u32("burst", 1)?,
            store_id,
            timeout: r.nonzero_duration("timeout", BareUnit::Seconds)?,
            fail_closed: r.bool("fail_closed")?,
            strategy: r.choice("strategy", &["error", "wait"])?,
            max_wait_time: r.nonzero_duration("max_wait_time", BareUnit::Millis)?,
            adaptive: r.bool("adaptive")?,
            server_feedback: r.bool("server_feedback")?,
            has_settings: r.keys().any(|k| k != "enabled"),
        })
    }

    pub(crate) fn over(mut self, base: &LimitLayer) -> Self {
        let base = base.clone();
        overlay!(self, base; enabled, source, algorithm, burst, store_id, timeout,
            fail_closed, strategy, max_wait_time, adaptive, server_feedback);
        self
    }

    fn strategy(&self) -> Strategy {
        match (self.strategy, self.max_wait_time) {
            (Some("error"), _) => Strategy::Error,
            (Some(_), wait) | (None, wait @ Some(_)) => Strategy::Wait {
                max_wait: wait.unwrap_or(DEFAULT_MAX_WAIT),
            },
            (None, None) => Strategy::Error,
        }
    }

    /// The limiter this layer describes, named `name`, declared at `path`. `stores`
    /// checks `store_id`. Errors when no rate is given.
    pub(crate) fn to_limiter(
        &self,
        name: &str,
        path: &str,
        known: &Known<'_>,
    ) -> Result<LimiterSettings, ConfigError> {
        let spec = match &self.source {
            Some(Source::Inline(spec)) => spec,
            Some(Source::Named { at, .. }) => {
                return Err(ConfigError::invalid(
                    at.clone(),
                    "an inline rate",
                    "a limiter reference",
                ))
            }
            None => {
                return Err(ConfigError::missing(
                    path.to_owned(),
                    "a rate: rate_per_second, requests + per, limit + window_seconds, \
                     or max_concurrent",
                ))
            }
        };
        let (default_algorithm, quantity) = match spec {
            RateSpec::Rate { count, period, .. } => (
                AlgorithmKind::TokenBucket,
                Quantity::Rate {
                    count: *count,
                    period: *period,
                },
            ),
            RateSpec::Window { limit, window, .. } => (
                AlgorithmKind::SlidingWindow,
                Quantity::Rate {
                    count: f64::from(*limit),
                    period: *window,
                },
            ),
            RateSpec::Concurrent { max, .. } => {
                (AlgorithmKind::Concurrency, Quantity::Concurrent(*max))
            }
        };
        let algorithm = self
            .algorithm
            .as_ref()
            .map_or(default_algorithm, |(a, _)| *a);
        // The rate form must suit the algorithm.
        match (algorithm, spec) {
            (AlgorithmKind::Concurrency, RateSpec::Concurrent { .. }) => {}
            (AlgorithmKind::Concurrency, _) => {
                return Err(ConfigError::missing(
                    join(path, "max_concurrent"),
                    "max_concurrent for the concurrency algorithm (instead of a rate)",
                ))
            }
            (_, RateSpec::Concurrent { at, .. }) => {
                return Err(ConfigError::invalid(
                    join(at, "max_concurrent"),
                    "a rate for this algorithm (max_concurrent needs algorithm = \"concurrency\")",
                    format!("algorithm {:?} with max_concurrent", algorithm.name()),
                ))
            }
            (
                AlgorithmKind::SlidingWindow | AlgorithmKind::FixedWindow,
                RateSpec::Rate { count, key, at, .. },
            ) if count.fract() != 0.0 => {
                return Err(ConfigError::invalid(
                    join(at, key),
                    "a whole number of requests for a window algorithm",
                    count.to_string(),
                ))
            }
            _ => {}
        }
        if let Some(burst) = self.burst {
            if !matches!(algorithm, AlgorithmKind::TokenBucket | AlgorithmKind::Gcra) {
                return Err(ConfigError::invalid(
                    join(path, "burst"),
                    "burst only with token_bucket or gcra",
                    format!("burst = {burst} with {}", algorithm.name()),
                ));
            }
        }
        let store_id = match &self.store_id {
            Some((id, at)) => {
                if !known.store_exists(id) {
                    return Err(ConfigError::unknown_name(
                        at.clone(),
                        "store",
                        id,
                        known.store_names(),
                    ));
                }
                id.clone()
            }
            None => DEFAULT_STORE.to_owned(),
        };
        let settings = LimiterSettings {
            name: name.to_owned(),
            store_id,
            algorithm,
            quantity,
            burst: self.burst,
            timeout: self.timeout.unwrap_or(DEFAULT_LIMITER_TIMEOUT),
            fail_mode: if self.fail_closed.unwrap_or(false) {
                FailMode::Closed
            } else {
                FailMode::Open
            },
            strategy: self.strategy(),
            enabled: self.enabled.unwrap_or(true),
        };
        if algorithm != AlgorithmKind::Concurrency {
            settings.algorithm_at(path)?;
        }
        Ok(settings)
    }

    /// A client's rate limit: `None` when there is no rate or it is disabled.
    pub(crate) fn to_rate_limit(
        &self,
        client: &str,
        path: &str,
        own_has_settings: bool,
        key: Option<String>,
        known: &Known<'_>,
    ) -> Result<Option<RateLimitSettings>, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let (limiter, shared) = match &self.source {
            None => {
                if self.enabled == Some(true) || own_has_settings {
                    return Err(ConfigError::missing(
                        path.to_owned(),
                        "a rate (rate_per_second, requests + per, limit + window_seconds, \
                         max_concurrent) or limiter = \"NAME\"; or enabled = false",
                    ));
                }
                return Ok(None);
            }
            Some(Source::Named { name, at }) => {
                let Some(mut limiter) = known.limiters.get(name).cloned() else {
                    return Err(ConfigError::unknown_name(
                        at.clone(),
                        "limiter",
                        name,
                        known.limiters.keys().map(String::as_str),
                    ));
                };
                if !limiter.enabled {
                    return Ok(None);
                }
                if self.strategy.is_some() || self.max_wait_time.is_some() {
                    limiter.strategy = self.strategy();
                }
                (limiter, true)
            }
            Some(Source::Inline(_)) => (
                self.to_limiter(&format!("client:{client}"), path, known)?,
                false,
            ),
        };
        Ok(Some(RateLimitSettings {
            limiter,
            shared,
            key,
            adaptive: self.adaptive.unwrap_or(true),
            server_feedback: self.server_feedback.unwrap_or(true),
        }))
    }
}

/// The limiters and stores defined so far, for checking references.
pub(crate) struct Known<'a> {
    pub(crate) limiters: &'a BTreeMap<String, LimiterSettings>,
    pub(crate) stores: &'a BTreeMap<String, StoreSettings>,
}

impl<'a> Known<'a> {
    pub(crate) fn store_exists(&self, id: &str) -> bool {
        id == DEFAULT_STORE || self.stores.contains_key(id)
    }

    pub(crate) fn store_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = self.stores.keys().map(String::as_str).collect();
        if !self.stores.contains_key(DEFAULT_STORE) {
            names.insert(0, DEFAULT_STORE);
        }
        names
    }
}

// ---------------------------------------------------------------------------------
// Timeouts, logging, security

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimeoutsLayer {
    pub(crate) connect: Option<Option<Duration>>,
    pub(crate) read: Option<Option<Duration>>,
    pub(crate) write: Option<Option<Duration>>,
    pub(crate) pool: Option<Option<Duration>>,
    pub(crate) attempt: Option<Option<Duration>>,
    pub(crate) total: Option<Option<Duration>>,
}

impl TimeoutsLayer {
    /// Reads `timeouts` and the `timeout` shorthand (= `timeouts.attempt`) of `r`.
    pub(crate) fn read_in(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let mut layer = match r.table("timeouts", TIMEOUT_KEYS)? {
            None => TimeoutsLayer::default(),
            Some(t) => {
                let s = BareUnit::Seconds;
                TimeoutsLayer {
                    connect: t.optional_duration("connect", s)?,
                    read: t.optional_duration("read", s)?,
                    write: t.optional_duration("write", s)?,
                    pool: t.optional_duration("pool", s)?,
                    attempt: t.optional_duration("attempt", s)?,
                    total: t.optional_duration("total", s)?,
                }
            }
        };
        if let Some(attempt) = r.optional_duration("timeout", BareUnit::Seconds)? {
            if layer.attempt.is_some() {
                return Err(ConfigError::invalid(
                    r.at("timeout"),
                    "either timeout or timeouts.attempt (they are the same setting), not both",
                    "both",
                ));
            }
            layer.attempt = Some(attempt);
        }
        Ok(layer)
    }

    pub(crate) fn over(mut self, base: &TimeoutsLayer) -> Self {
        let base = *base;
        overlay!(self, base; connect, read, write, pool, attempt, total);
        self
    }

    pub(crate) fn resolve(&self) -> TimeoutSettings {
        let d = TimeoutSettings::default();
        TimeoutSettings {
            connect: self.connect.unwrap_or(d.connect),
            read: self.read.unwrap_or(d.read),
            write: self.write.unwrap_or(d.write),
            pool: self.pool.unwrap_or(d.pool),
            attempt: self.attempt.unwrap_or(d.attempt),
            total: self.total.unwrap_or(d.total),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LoggingLayer {
    pub(crate) enabled: Option<bool>,
    pub(crate) level: Option<&'static str>,
    pub(crate) log_headers: Option<bool>,
    pub(crate) log_body: Option<bool>,
    pub(crate) max_body_bytes: Option<usize>,
    pub(crate) sanitize_headers: Vec<String>,
    pub(crate) sanitize_body_fields: Vec<String>,
    pub(crate) correlation_header: Option<String>,
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

impl LoggingLayer {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let correlation_header = r.name("correlation_header")?;
        if let Some(h) = &correlation_header {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    r.at("correlation_header"),
                    "a valid HTTP header name",
                    format!("{h:?}"),
                ));
            }
        }
        Ok(LoggingLayer {
            enabled: r.bool("enabled")?,
            level: r.choice("level", LEVELS)?,
            log_headers: r.bool("log_headers")?,
            log_body: r.bool("log_body")?,
            max_body_bytes: r.usize("max_body_bytes", 0)?,
            sanitize_headers: r.strings("sanitize_headers")?.unwrap_or_default(),
            sanitize_body_fields: r.strings("sanitize_body_fields")?.unwrap_or_default(),
            correlation_header,
        })
    }

    /// Scalars: first set wins; redaction lists: the union (a layer never loses a
    /// redaction another asked for).
    pub(crate) fn over(mut self, base: &LoggingLayer) -> Self {
        let b = base.clone();
        overlay!(self, b; enabled, level, log_headers, log_body, max_body_bytes,
            correlation_header);
        self.sanitize_headers = union(&b.sanitize_headers, &self.sanitize_headers);
        self.sanitize_body_fields = union(&b.sanitize_body_fields, &self.sanitize_body_fields);
        self
    }

    pub(crate) fn resolve(&self) -> LoggingSettings {
        let d = LoggingSettings::default();
        let level = match self.level.unwrap_or("info") {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Info,
        };
        LoggingSettings {
            enabled: self.enabled.unwrap_or(d.enabled),
            level,
            log_headers: self.log_headers.unwrap_or(d.log_headers),
            log_body: self.log_body.unwrap_or(d.log_body),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            sanitize_headers: self.sanitize_headers.clone(),
            sanitize_body_fields: self.sanitize_body_fields.clone(),
            correlation_header: self
                .correlation_header
                .clone()
                .unwrap_or(d.correlation_header),
        }
    }
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = a.to_vec();
    for item in b {
        if !out.iter().any(|x| x.eq_ignore_ascii_case(item)) {
            out.push(item.clone());
        }
    }
    out
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SecurityLayer {
    pub(crate) allowed_hosts: Option<Vec<String>>,
    pub(crate) block_private_ips: Option<bool>,
}

impl SecurityLayer {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let allowed_hosts = r.strings("allowed_hosts")?;
        if let Some(hosts) = &allowed_hosts {
            if hosts.is_empty() {
                return Err(ConfigError::invalid(
                    r.at("allowed_hosts"),
                    "a non-empty list of host names (leave the key out to allow any host)",
                    "an empty list",
                ));
            }
            if let Some((i, h)) = hosts
                .iter()
                .enumerate()
                .find(|(_, h)| h.trim().is_empty() || h.contains(['/', ' ']))
            {
                return Err(ConfigError::invalid(
                    super::path::index(&r.at("allowed_hosts"), i),
                    "a host name such as \"api.example.com\" or \"*.example.com\"",
                    format!("{h:?}"),
                ));
            }
        }
        Ok(SecurityLayer {
            allowed_hosts,
            block_private_ips: r.bool("block_private_ips")?,
        })
    }

    pub(crate) fn over(mut self, base: &SecurityLayer) -> Self {
        let b = base.clone();
        overlay!(self, b; allowed_hosts, block_private_ips);
        self
    }
}

// ---------------------------------------------------------------------------------
// A whole client layer

/// Everything a global section, a preset or a client table may say about a client.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientLayer {
    pub(crate) timeouts: TimeoutsLayer,
    pub(crate) retry: RetryLayer,
    pub(crate) breaker: BreakerLayer,
    pub(crate) rate_limit: LimitLayer,
    pub(crate) logging: LoggingLayer,
    pub(crate) security: SecurityLayer,
    pub(crate) dedup: Option<bool>,
}

impl ClientLayer {
    pub(crate) fn over(self, base: &ClientLayer) -> Self {
        ClientLayer {
            timeouts: self.timeouts.over(&base.timeouts),
            retry: self.retry.over(&base.retry),
            breaker: self.breaker.over(&base.breaker),
            rate_limit: self.rate_limit.over(&base.rate_limit),
            logging: self.logging.over(&base.logging),
            security: self.security.over(&base.security),
            dedup: self.dedup.or(base.dedup),
        }
    }
}
