//! Built-in client presets (`profile = "payment_processing"`).
//!
//! A preset is a layer like any other: the client's own keys override it, and it
//! overrides the global sections.

use std::time::Duration;

use super::model::{
    BreakerLayer, ClientLayer, LimitLayer, RateSpec, RetryLayer, Source, TimeoutsLayer,
    WindowChoice,
};

/// The names of the built-in presets.
pub const PRESET_NAMES: [&str; 3] = [
    "payment_processing",
    "high_volume_api",
    "microservices_mesh",
];

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

fn secs(n: u64) -> Option<Option<Duration>> {
    Some(Some(Duration::from_secs(n)))
}

fn millis(n: u64) -> Option<Option<Duration>> {
    Some(Some(Duration::from_millis(n)))
}

/// The layer of preset `name`, if it exists.
pub(crate) fn preset(name: &str) -> Option<ClientLayer> {
    match name {
        // Money moves: few, patient retries; POST never retried unless the client opts
        // in or sends an Idempotency-Key; generous timeouts; a breaker that opens early
        // and stays open long enough for the provider to recover; duplicate in-flight
        // submissions coalesced.
        "payment_processing" => Some(ClientLayer {
            timeouts: TimeoutsLayer {
                connect: secs(5),
                read: secs(30),
                attempt: secs(30),
                total: secs(90),
                ..TimeoutsLayer::default()
            },
            retry: RetryLayer {
                max_retries: Some(2),
                base_delay: ms(1_000),
                max_delay: ms(10_000),
                retry_safe: Some(false),
                ..RetryLayer::default()
            },
            breaker: BreakerLayer {
                failure_threshold: Some(3),
                window: Some(WindowChoice::Count(10)),
                timeout: ms(30_000),
                half_open_requests: Some(1),
                ..BreakerLayer::default()
            },
            dedup: Some(true),
            ..ClientLayer::default()
        }),
        // Lots of cheap calls: stay under the provider's limit on our side (waiting
        // briefly for a slot), short timeouts, a breaker judged on the failure rate of a
        // larger window, identical in-flight requests coalesced.
        "high_volume_api" => Some(ClientLayer {
            timeouts: TimeoutsLayer {
                connect: secs(2),
                read: secs(5),
                attempt: secs(5),
                total: secs(15),
                ..TimeoutsLayer::default()
            },
            retry: RetryLayer {
                max_retries: Some(3),
                base_delay: ms(200),
                max_delay: ms(5_000),
                ..RetryLayer::default()
            },
            breaker: BreakerLayer {
                failure_threshold: Some(25),
                failure_threshold_percentage: Some(50.0),
                minimum_calls: Some(20),
                window: Some(WindowChoice::Count(50)),
                timeout: ms(15_000),
                half_open_requests: Some(3),
                ..BreakerLayer::default()
            },
            rate_limit: LimitLayer {
                source: Some(Source::Inline(RateSpec::Rate {
                    count: 100.0,
                    period: Duration::from_secs(1),
                    key: "rate_per_second",
                    at: "presets.high_volume_api.rate_limit".to_owned(),
                })),
                burst: Some(100),
                strategy: Some("wait"),
                max_wait_time: ms(1_000),
                ..LimitLayer::default()
            },
            dedup: Some(true),
            ..ClientLayer::default()
        }),
        // Calls between services of one system: fail fast, retry quickly a couple of
        // times, and step aside from a sick instance quickly.
        "microservices_mesh" => Some(ClientLayer {
            timeouts: TimeoutsLayer {
                connect: millis(500),
                read: secs(2),
                attempt: secs(2),
                total: secs(5),
                ..TimeoutsLayer::default()
            },
            retry: RetryLayer {
                max_retries: Some(2),
                base_delay: ms(50),
                max_delay: ms(1_000),
                ..RetryLayer::default()
            },
            breaker: BreakerLayer {
                failure_threshold: Some(5),
                failure_threshold_percentage: Some(50.0),
                minimum_calls: Some(10),
                window: Some(WindowChoice::Count(20)),
                timeout: ms(10_000),
                half_open_requests: Some(2),
                ..BreakerLayer::default()
            },
            ..ClientLayer::default()
        }),
        _ => None,
    }
}
