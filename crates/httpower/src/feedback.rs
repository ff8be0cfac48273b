//! Server rate-limit feedback (placeholder until the feedback module lands).
#![allow(missing_docs, dead_code)]
use httpower_core::clock::Nanos;
use std::time::{Duration, SystemTime};
#[derive(Debug, Clone, Default)]
pub struct ServerFeedback {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_after: Option<Duration>,
    pub window: Option<Duration>,
    pub retry_after: Option<Duration>,
}
pub fn read_feedback(
    _s: http::StatusCode,
    _h: &http::HeaderMap,
    _now: SystemTime,
) -> Option<ServerFeedback> {
    None
}
#[derive(Debug)]
pub struct ServerLimits;
pub enum Admission {
    Go,
    NotBefore(Nanos),
}
impl ServerLimits {
    pub fn new(_max: usize) -> Self {
        ServerLimits
    }
    pub fn record(&self, _key: &str, _f: &ServerFeedback, _now: Nanos) {}
    pub fn admit(&self, _key: &str, _now: Nanos) -> Admission {
        Admission::Go
    }
}
