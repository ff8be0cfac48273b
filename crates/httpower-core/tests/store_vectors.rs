//! The shared rate-limit test vectors, on the memory store.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use httpower_core::clock::{ManualClock, Nanos};
use httpower_core::store::{conformance, MemoryStore};

#[tokio::test]
async fn memory_store_passes_shared_vectors() {
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let report = conformance::run(&store, Nanos::ZERO, |t| clock.set(t))
        .await
        .unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(report.cases, 4);
    assert!(report.steps >= 30, "{report:?}");
}

#[tokio::test]
async fn every_algorithm_is_covered_by_the_vectors() {
    let vectors = conformance::vectors().unwrap();
    for name in ["gcra", "sliding_window", "fixed_window"] {
        assert!(
            vectors.case.iter().any(|c| c.algorithm == name),
            "no vector for {name}"
        );
    }
}
