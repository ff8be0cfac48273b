//! The Prometheus exporter: install it once per process, render the exposition where
//! it is scraped (`/metrics`) or printed (`httpower demo --metrics`).

use std::fmt;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
pub struct InstallError(#[from] BuildError);

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot install the Prometheus recorder: {}", self.0)
    }
}

/// Histogram buckets for request durations, in seconds: 1 ms to 60 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Histogram buckets for limiter decisions, in seconds: 10 µs to 250 ms.
pub const DECISION_BUCKETS: [f64; 10] = [
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25,
];

/// A recorder that renders Prometheus text, with httpower's histogram buckets, not yet
/// installed (for tests and for applications that compose recorders).
pub fn recorder() -> Result<metrics_exporter_prometheus::PrometheusRecorder, InstallError> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".to_owned()),
            &DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(super::metrics::RATE_LIMIT_DECISION_DURATION.to_owned()),
            &DECISION_BUCKETS,
        )?;
    Ok(builder.build_recorder())
}

/// Installs the Prometheus recorder as the process's global recorder, describes every
/// httpower metric, and returns the handle that renders the exposition.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    let recorder = recorder()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|err| InstallError(BuildError::FailedToSetGlobalRecorder(err)))?;
    super::metrics::describe();
    Ok(handle)
}
