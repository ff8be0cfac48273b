//! The shared rate-limit vectors, on a real Redis: the script decides exactly as the
//! in-memory store does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "conformance")]

mod support;

use httpower_core::clock::Nanos;
use httpower_core::store::conformance;
use httpower_redis::{ManualServerTime, RedisStore};

#[tokio::test]
async fn shared_vectors_pass_on_redis() {
    let server = support::RedisServer::start();
    let time = ManualServerTime::new();
    let store = RedisStore::builder(server.url())
        .key_prefix("vectors")
        .manual_time(time.clone())
        .build()
        .unwrap();
    // A whole number of days since the Unix epoch, near today, so windows align as in
    // the vector file and the numbers have the size real timestamps have.
    let origin = Nanos::new(20_000 * 86_400 * 1_000_000_000);
    let report = conformance::run(&store, origin, |t| time.set(t))
        .await
        .unwrap_or_else(|m| panic!("Redis disagrees with the vectors: {m}"));
    assert!(report.cases >= 4 && report.steps >= 30, "{report:?}");
    assert_eq!(store.stats().deny_cache_hits, 0);
}
