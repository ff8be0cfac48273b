//! Failover of the Redis deployment under the store: a Cluster master and a Sentinel-
//! managed primary are killed while limiters decide; the fail modes answer meanwhile
//! and decisions come from Redis again once a replica has taken over.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use httpower_core::rate::{AnyAlgorithm, Gcra, Quota};
use httpower_core::store::{Check, CompositeMode, DecisionSource, FailMode, Limiter, Store};
use httpower_redis::RedisStore;

fn limiters(store: &Arc<dyn Store>) -> (Limiter, Limiter) {
    let quota = Quota::new(1000, Duration::from_secs(1), 1000).unwrap();
    let build = |name: &str, mode| {
        Limiter::builder(name.to_owned(), Gcra::new(quota))
            .timeout(Duration::from_millis(200))
            .fail_mode(mode)
            .build(Arc::clone(store))
    };
    (
        build("fo_open", FailMode::Open),
        build("fo_closed", FailMode::Closed),
    )
}

/// Checks `keys` on both limiters until each decision comes from Redis again; returns
/// how long that took and how the fail modes answered meanwhile.
async fn until_redis_decides(
    open: &Limiter,
    closed: &Limiter,
    keys: &[String],
    limit: Duration,
) -> (Duration, u64, u64) {
    let started = Instant::now();
    let (mut opened, mut refused) = (0, 0);
    let mut pending: BTreeSet<(usize, bool)> = (0..keys.len())
        .flat_map(|i| [(i, true), (i, false)])
        .collect();
    while !pending.is_empty() {
        assert!(
            started.elapsed() < limit,
            "{} decisions still not from Redis after {limit:?}",
            pending.len()
        );
        for (i, is_open) in pending.clone() {
            let limiter = if is_open { open } else { closed };
            let verdict = limiter.key(&keys[i]).check().await.unwrap();
            match verdict.source {
                DecisionSource::Store => {
                    pending.remove(&(i, is_open));
                }
                DecisionSource::FailOpen(_) => {
                    assert!(is_open && verdict.decision.allowed);
                    opened += 1;
                }
                DecisionSource::FailClosed(_) => {
                    assert!(!is_open && !verdict.decision.allowed);
                    refused += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (started.elapsed(), opened, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_failover() {
    let mut cluster = tokio::task::spawn_blocking(support::RedisCluster::start)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::cluster(cluster.seed_urls())
            .connect_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let (open, closed) = limiters(&store);
    let ids: Vec<String> = (0..120).map(|i| format!("tenant-{i}")).collect();
    for id in &ids {
        for limiter in [&open, &closed] {
            let verdict = limiter.key(id).check().await.unwrap();
            assert_eq!(verdict.source, DecisionSource::Store, "{id}");
        }
    }
    // The identifiers are spread over every master.
    let master_of = |id: &str| {
        cluster.master_for_slot(support::key_slot(&format!("httpower:{{fo_open:{id}}}")))
    };
    let masters: BTreeSet<u16> = ids.iter().map(|id| master_of(id)).collect();
    assert_eq!(masters.len(), 3, "keys on {masters:?}");

    // A composite check whose keys live on different slots (no single script can see
    // both): a denial by the second limiter leaves the first unconsumed.
    let by_ip: AnyAlgorithm =
        Gcra::new(Quota::new(10, Duration::from_secs(600), 10).unwrap()).into();
    let by_user: AnyAlgorithm =
        Gcra::new(Quota::new(1, Duration::from_secs(600), 1).unwrap()).into();
    let (ip, user) = ("198.51.100.9", "mallory");
    let slot_of =
        |limiter: &str, id: &str| support::key_slot(&format!("httpower:{{{limiter}:{id}}}"));
    assert_ne!(
        slot_of("cs_ip", ip),
        slot_of("cs_user", user),
        "pick keys on two slots"
    );
    let checks = [
        Check {
            limiter: "cs_ip",
            algorithm: &by_ip,
            key: ip,
            cost: 1,
        },
        Check {
            limiter: "cs_user",
            algorithm: &by_user,
            key: user,
            cost: 1,
        },
    ];
    let first = store
        .check_composite(&checks, CompositeMode::AllMustPass)
        .await
        .unwrap();
    assert!(first.allowed);
    for _ in 0..3 {
        let denied = store
            .check_composite(&checks, CompositeMode::AllMustPass)
            .await
            .unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.deciding, 1);
        assert_eq!(
            denied.decisions[0].remaining, 9,
            "the refused attempts cost the address"
        );
    }
    assert_eq!(
        store.inspect("cs_ip", &by_ip, ip).await.unwrap().remaining,
        9
    );

    let victim = master_of(&ids[0]);
    let affected: Vec<String> = ids
        .iter()
        .filter(|id| master_of(id) == victim)
        .cloned()
        .collect();
    tokio::task::block_in_place(|| cluster.kill_master(victim));

    let (took, opened, refused) =
        until_redis_decides(&open, &closed, &affected, Duration::from_secs(5)).await;
    assert!(
        opened > 0 && refused > 0,
        "fail modes during the failover: {opened} open, {refused} closed"
    );
    // Every identifier, on every master, is decided by Redis again.
    for id in &ids {
        let verdict = open.key(id).check().await.unwrap();
        assert_eq!(verdict.source, DecisionSource::Store, "{id} after failover");
    }
    eprintln!("cluster: decisions resumed {took:?} after the kill ({opened} fail-open, {refused} fail-closed meanwhile)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_failover() {
    let mut sentinel = tokio::task::spawn_blocking(support::RedisSentinel::start)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::sentinel(sentinel.master_name(), sentinel.sentinel_urls())
            .connect_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let (open, closed) = limiters(&store);
    let ids: Vec<String> = (0..10).map(|i| format!("client-{i}")).collect();
    for id in &ids {
        assert_eq!(
            open.key(id).check().await.unwrap().source,
            DecisionSource::Store
        );
    }
    let old = tokio::task::block_in_place(|| sentinel.kill_master());
    let (took, opened, refused) =
        until_redis_decides(&open, &closed, &ids, Duration::from_secs(15)).await;
    let new = tokio::task::block_in_place(|| sentinel.wait_for_new_master(Duration::from_secs(5)));
    assert_ne!(old, new);
    assert!(
        opened > 0 && refused > 0,
        "fail modes during the failover: {opened} open, {refused} closed"
    );
    eprintln!("sentinel: decisions resumed {took:?} after the kill, on port {new} ({opened} fail-open, {refused} fail-closed meanwhile)");
}
