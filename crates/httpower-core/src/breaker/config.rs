//! Breaker configuration: the builder and its validation.

use std::fmt;
use std::time::Duration;

/// The largest count-based window accepted, in calls.
///
/// A count window costs one byte per call, so this bounds a breaker at 64 KiB.
pub const MAX_COUNT_WINDOW: u32 = 65_536;

/// The largest number of buckets a time-based window may have.
pub const MAX_TIME_BUCKETS: u32 = 3_600;

/// What "recent" means when the breaker judges the failure rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` recorded calls.
    Count(u32),
    /// The calls recorded during the last `duration`, kept in `buckets` equal slices.
    ///
    /// Whole buckets expire at once, so the window really covers between
    /// `duration - duration / buckets` and `duration`: more buckets, finer edges.
    Time {
        /// How far back the window reaches.
        duration: Duration,
        /// How many slices the window is cut into (1 ..= [`MAX_TIME_BUCKETS`]).
        buckets: u32,
    },
}

impl Default for Window {
    fn default() -> Self {
        Window::Count(10)
    }
}

/// A configuration value the breaker cannot work with.
///
/// It names the offending field and shows the value it was given, so a message built
/// from a configuration file points straight at the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker setting `{field}` = {value}: {problem}")]
pub struct BreakerConfigError {
    field: &'static str,
    value: String,
    problem: String,
}

impl BreakerConfigError {
    fn new(field: &'static str, value: impl fmt::Debug, problem: impl fmt::Display) -> Self {
        BreakerConfigError {
            field,
            value: format!("{value:?}"),
            problem: problem.to_string(),
        }
    }

    /// The name of the rejected field, as spelled on the builder (`failure_threshold`).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rejected value, formatted with `Debug`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why the value was rejected.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// The slow-call rule: calls slower than `duration` count against the breaker once
/// their share of the window reaches `rate_threshold` percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowCallRule {
    /// A call whose duration is strictly greater than this is slow.
    pub duration: Duration,
    /// Percentage (0 < p <= 100) of slow calls in the window that opens the breaker.
    pub rate_threshold: f64,
}

/// A validated circuit-breaker configuration. Build one with [`BreakerConfig::builder`].
///
/// See the [module documentation](super) for what each setting does.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub(crate) failure_threshold: u32,
    pub(crate) failure_threshold_percentage: Option<f64>,
    pub(crate) minimum_calls: u32,
    pub(crate) window: Window,
    pub(crate) slow_call: Option<SlowCallRule>,
    pub(crate) timeout: Duration,
    pub(crate) timeout_multiplier: f64,
    pub(crate) max_timeout: Duration,
    pub(crate) timeout_jitter: f64,
    pub(crate) half_open_requests: u32,
    pub(crate) success_threshold: u32,
}

impl Default for BreakerConfig {
    /// Five failures in the last ten calls open the breaker for sixty seconds; one probe
    /// decides whether it closes.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            failure_threshold_percentage: None,
            minimum_calls: 10,
            window: Window::Count(10),
            slow_call: None,
            timeout: Duration::from_secs(60),
            timeout_multiplier: 1.0,
            max_timeout: DEFAULT_MAX_TIMEOUT,
            timeout_jitter: 0.0,
            half_open_requests: 1,
            success_threshold: 1,
        }
    }
}

/// The cap on the open timeout when it grows and no `max_timeout` was given.
const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl BreakerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder::default()
    }

    /// Failures in the window that open the breaker.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Failure percentage that opens the breaker, if the rate rule is on.
    pub fn failure_threshold_percentage(&self) -> Option<f64> {
        self.failure_threshold_percentage
    }

    /// Calls the window must hold before a rate rule (failure or slow) may trip.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The window the rules look at.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The slow-call rule, if on.
    pub fn slow_call_rule(&self) -> Option<SlowCallRule> {
        self.slow_call
    }

    /// How long the breaker stays open the first time.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Growth factor of the open timeout on each consecutive re-open (1.0: no growth).
    pub fn timeout_multiplier(&self) -> f64 {
        self.timeout_multiplier
    }

    /// The cap on the grown open timeout.
    pub fn max_timeout(&self) -> Duration {
        self.max_timeout
    }

    /// Fraction (0 ..< 1) by which an open timeout may randomly be shortened.
    pub fn timeout_jitter(&self) -> f64 {
        self.timeout_jitter
    }

    /// Probes admitted while half-open.
    pub fn half_open_requests(&self) -> u32 {
        self.half_open_requests
    }

    /// Successful probes needed to close the breaker.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// The open timeout (before jitter) for the `opens`-th consecutive opening (1-based).
    pub(crate) fn grown_timeout(&self, opens: u32) -> Duration {
        let base = self.timeout.min(self.max_timeout);
        if self.timeout_multiplier <= 1.0 || opens <= 1 {
            return base;
        }
        let exponent = i32::try_from(opens - 1).unwrap_or(i32::MAX);
        let secs = base.as_secs_f64() * self.timeout_multiplier.powi(exponent);
        match Duration::try_from_secs_f64(secs) {
            Ok(grown) => grown.min(self.max_timeout),
            Err(_) => self.max_timeout,
        }
    }
}

/// Builds a [`BreakerConfig`]; [`build`](Self::build) checks every value.
#[derive(Debug, Clone, Default)]
pub struct BreakerConfigBuilder {
    /// Every setting but the two below, whose defaults depend on other settings.
    config: BreakerConfig,
    max_timeout: Option<Duration>,
    success_threshold: Option<u32>,
}

impl BreakerConfigBuilder {
    /// Failures in the window that open the breaker (default 5, at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.config.failure_threshold = failures;
        self
    }

    /// Also open the breaker when the failure percentage of the window reaches
    /// `percent` (0 < percent <= 100), once the window holds `minimum_calls` calls.
    pub fn failure_threshold_percentage(mut self, percent: f64) -> Self {
        self.config.failure_threshold_percentage = Some(percent);
        self
    }

    /// Calls the window must hold before a rate rule may trip (default 10).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// The window the rules look at (default: the last 10 calls).
    pub fn window(mut self, window: Window) -> Self {
        self.config.window = window;
        self
    }

    /// Shorthand for `window(Window::Count(calls))`.
    pub fn count_window(self, calls: u32) -> Self {
        self.window(Window::Count(calls))
    }

    /// Shorthand for `window(Window::Time { duration, buckets })`.
    pub fn time_window(self, duration: Duration, buckets: u32) -> Self {
        self.window(Window::Time { duration, buckets })
    }

    /// Turns on the slow-call rule: calls slower than `duration` open the breaker once
    /// they make up `rate_threshold` percent of a window of at least `minimum_calls`.
    pub fn slow_calls(mut self, duration: Duration, rate_threshold: f64) -> Self {
        self.config.slow_call = Some(SlowCallRule {
            duration,
            rate_threshold,
        });
        self
    }

    /// How long the breaker stays open before it lets probes through (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Multiplies the open timeout by `factor` on each consecutive re-open without a
    /// successful close in between (default 1.0: constant; at least 1.0).
    pub fn timeout_multiplier(mut self, factor: f64) -> Self {
        self.config.timeout_multiplier = factor;
        self
    }

    /// Caps the grown open timeout (default: 30 minutes, or `timeout` if that is longer).
    pub fn max_timeout(mut self, max: Duration) -> Self {
        self.max_timeout = Some(max);
        self
    }

    /// Shortens each open timeout by a random fraction up to `fraction` (0 <= f < 1),
    /// so that breakers opened together do not all probe at the same instant.
    /// Jitter only ever shortens: the timeout never exceeds its computed value or the cap.
    pub fn timeout_jitter(mut self, fraction: f64) -> Self {
        self.config.timeout_jitter = fraction;
        self
    }

    /// Probes admitted while half-open (default 1, at least 1).
    pub fn half_open_requests(mut self, probes: u32) -> Self {
        self.config.half_open_requests = probes;
        self
    }

    /// Successful probes needed to close (default: `half_open_requests`; at least 1 and
    /// at most `half_open_requests`).
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.success_threshold = Some(successes);
        self
    }

    /// Checks every value and returns the configuration, or the first bad field.
    pub fn build(self) -> Result<BreakerConfig, BreakerConfigError> {
        let mut c = self.config;
        c.success_threshold = self.success_threshold.unwrap_or(c.half_open_requests);
        c.max_timeout = self
            .max_timeout
            .unwrap_or_else(|| DEFAULT_MAX_TIMEOUT.max(c.timeout));

        at_least_one("failure_threshold", c.failure_threshold)?;
        if let Some(p) = c.failure_threshold_percentage {
            percentage("failure_threshold_percentage", p)?;
        }
        at_least_one("minimum_calls", c.minimum_calls)?;
        check_window(c.window)?;
        if let Some(rule) = c.slow_call {
            ensure(
                !rule.duration.is_zero(),
                "slow_call_duration",
                rule.duration,
                "must not be zero",
            )?;
            percentage("slow_call_rate_threshold", rule.rate_threshold)?;
        }
        ensure(
            !c.timeout.is_zero(),
            "timeout",
            c.timeout,
            "must not be zero",
        )?;
        ensure(
            c.timeout_multiplier.is_finite() && c.timeout_multiplier >= 1.0,
            "timeout_multiplier",
            c.timeout_multiplier,
            "must be a finite number of at least 1.0",
        )?;
        ensure(
            c.max_timeout >= c.timeout,
            "max_timeout",
            c.max_timeout,
            "must not be shorter than timeout",
        )?;
        ensure(
            c.timeout_jitter.is_finite() && (0.0..1.0).contains(&c.timeout_jitter),
            "timeout_jitter",
            c.timeout_jitter,
            "must be a fraction in 0.0 ..< 1.0",
        )?;
        at_least_one("half_open_requests", c.half_open_requests)?;
        at_least_one("success_threshold", c.success_threshold)?;
        ensure(
            c.success_threshold <= c.half_open_requests,
            "success_threshold",
            c.success_threshold,
            "must not exceed half_open_requests",
        )?;
        if let Window::Count(n) = c.window {
            ensure(
                c.failure_threshold <= n,
                "failure_threshold",
                c.failure_threshold,
                "exceeds the count window, so it could never be reached",
            )?;
            let rate_rule = c.failure_threshold_percentage.is_some() || c.slow_call.is_some();
            ensure(
                !rate_rule || c.minimum_calls <= n,
                "minimum_calls",
                c.minimum_calls,
                "exceeds the count window, so no rate rule could ever trip",
            )?;
        }
        Ok(c)
    }
}

/// `Ok` when `ok`, otherwise the error for `field` = `value`.
fn ensure(
    ok: bool,
    field: &'static str,
    value: impl fmt::Debug,
    problem: impl fmt::Display,
) -> Result<(), BreakerConfigError> {
    if ok {
        Ok(())
    } else {
        Err(BreakerConfigError::new(field, value, problem))
    }
}

/// A count that must be at least 1.
fn at_least_one(field: &'static str, n: u32) -> Result<(), BreakerConfigError> {
    ensure(n >= 1, field, n, "must be at least 1")
}

/// A percentage above 0 and at most 100.
fn percentage(field: &'static str, p: f64) -> Result<(), BreakerConfigError> {
    ensure(
        p.is_finite() && p > 0.0 && p <= 100.0,
        field,
        p,
        "must be a percentage above 0 and at most 100",
    )
}

fn check_window(window: Window) -> Result<(), BreakerConfigError> {
    match window {
        Window::Count(n) => {
            ensure(n >= 1, "window", window, "must hold at least 1 call")?;
            ensure(
                n <= MAX_COUNT_WINDOW,
                "window",
                window,
                format_args!("holds more than {MAX_COUNT_WINDOW} calls"),
            )
        }
        Window::Time { duration, buckets } => {
            ensure(
                !duration.is_zero(),
                "window",
                window,
                "duration must not be zero",
            )?;
            ensure(
                (1..=MAX_TIME_BUCKETS).contains(&buckets),
                "window",
                window,
                format_args!("buckets must be 1 ..= {MAX_TIME_BUCKETS}"),
            )?;
            ensure(
                duration.as_nanos() >= u128::from(buckets),
                "window",
                window,
                "each bucket must span at least one nanosecond",
            )
        }
    }
}
