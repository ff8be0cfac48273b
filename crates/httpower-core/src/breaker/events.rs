//! State-change events, for logs and metrics.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Nanos;

/// The three states of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded in the window.
    Closed,
    /// Calls fail fast until the open timeout has passed (or, if forced, until closed).
    Open,
    /// A fixed number of probe calls may pass; their outcomes decide what comes next.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Closed → Open: the window holds `failure_threshold` failures.
    FailureCount,
    /// Closed → Open: the failure percentage reached its threshold.
    FailureRate,
    /// Closed → Open: the slow-call percentage reached its threshold.
    SlowCallRate,
    /// Open → HalfOpen: the open timeout passed and a caller arrived.
    TimeoutElapsed,
    /// HalfOpen → Closed: `success_threshold` probes succeeded.
    ProbesSucceeded,
    /// HalfOpen → Open: a probe failed (or was slow).
    ProbeFailed,
    /// [`force_open`](super::CircuitBreaker::force_open) was called.
    ForcedOpen,
    /// [`force_close`](super::CircuitBreaker::force_close) was called.
    ForcedClose,
    /// [`reset`](super::CircuitBreaker::reset) was called.
    Reset,
}

/// One state change of one breaker.
///
/// A breaker owned by a [`BreakerRegistry`](super::BreakerRegistry) carries its key
/// (formatted with `Display`) in [`key`](Self::key); a standalone breaker has `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The registry key of the breaker, if it belongs to a registry.
    pub key: Option<Arc<str>>,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Failures in the window at the time of the change.
    pub failures: u32,
    /// Failure percentage (0 ..= 100) of the window at the time of the change.
    pub failure_rate: f64,
    /// When it happened, on the breaker's clock.
    pub at: Nanos,
    /// Why it happened.
    pub reason: TransitionReason,
}

/// A point-in-time view of a breaker, for dashboards and health checks.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    /// The current state. An open breaker whose timeout has passed still reads `Open`
    /// (with `retry_after` zero): it turns half-open when the next call arrives.
    pub state: BreakerState,
    /// True when the breaker was opened with `force_open` and will stay open.
    pub forced: bool,
    /// Failures in the window. While open or half-open, the window is frozen as it was
    /// when the breaker opened, so these counts say why it opened.
    pub failures: u32,
    /// Successes in the window.
    pub successes: u32,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u32,
    /// Calls in the window.
    pub calls: u32,
    /// `failures / calls` as a percentage (0 when the window is empty).
    pub failure_rate: f64,
    /// How long the breaker has been open or half-open; `None` when closed.
    pub opened_for: Option<Duration>,
    /// While open: time left until it lets probes through; `None` otherwise.
    pub retry_after: Option<Duration>,
    /// Probe slots taken, while half-open: admitted probes minus those dropped without
    /// an outcome (or recorded as ignored), which gave their slot back.
    pub probes_admitted: u32,
    /// Successful probes so far, while half-open.
    pub probe_successes: u32,
    /// Openings since the breaker was last closed by successful probes (or reset).
    pub consecutive_opens: u32,
}
