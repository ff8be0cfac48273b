//! The Redis store against a real `redis-server`: composite checks, leases, TTLs,
//! memory per identifier, reset and inspection, the deny cache, bad replies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "conformance")]
use httpower_core::clock::Nanos;
use httpower_core::rate::{AnyAlgorithm, FixedWindow, Gcra, Quota, SlidingWindow, WindowQuota};
use httpower_core::store::{
    Check, CompositeMode, FailMode, Limiter, SlotLimiter, Store, StoreError,
};
#[cfg(feature = "conformance")]
use httpower_redis::ManualServerTime;
use httpower_redis::RedisStore;
use redis::AsyncCommands;

fn gcra(rate: u32, per: Duration, burst: u32) -> AnyAlgorithm {
    Gcra::new(Quota::new(rate, per, burst).unwrap()).into()
}

fn window(limit: u32, per: Duration) -> WindowQuota {
    WindowQuota::new(limit, per).unwrap()
}

async fn raw(server: &support::RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_composite_denial_consumes_nothing_from_the_other_limiters() {
    let server = support::RedisServer::start();
    let store = RedisStore::builder(server.url()).build().unwrap();
    let by_ip = gcra(10, Duration::from_secs(300), 10);
    let by_user = gcra(2, Duration::from_secs(900), 2);
    let checks = |user: &'static str| {
        [
            Check {
                limiter: "login_ip",
                algorithm: &by_ip,
                key: "203.0.113.7",
                cost: 1,
            },
            Check {
                limiter: "login_user",
                algorithm: &by_user,
                key: user,
                cost: 1,
            },
        ]
    };
    for _ in 0..2 {
        let d = store
            .check_composite(&checks("alice"), CompositeMode::AllMustPass)
            .await
            .unwrap();
        assert!(d.allowed);
    }
    // alice's credential is spent: three more attempts are all denied by `login_user`...
    for _ in 0..3 {
        let d = store
            .check_composite(&checks("alice"), CompositeMode::AllMustPass)
            .await
            .unwrap();
        assert!(!d.allowed);
        assert_eq!(d.deciding, 1);
        // ...and the address still has the 8 cells the two admissions left.
        assert_eq!(d.decisions[0].remaining, 8);
    }
    let ip = store
        .inspect("login_ip", &by_ip, "203.0.113.7")
        .await
        .unwrap();
    assert_eq!(ip.remaining, 8);

    // any_must_pass charges only the first limiter that admits.
    let d = store
        .check_composite(&checks("bob"), CompositeMode::AnyMustPass)
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.deciding, 0);
    assert_eq!(
        store
            .inspect("login_ip", &by_ip, "203.0.113.7")
            .await
            .unwrap()
            .remaining,
        7
    );
    assert_eq!(
        store
            .inspect("login_user", &by_user, "bob")
            .await
            .unwrap()
            .remaining,
        2
    );

    // most_restrictive reports the longest wait among the denials.
    let d = store
        .check_composite(&checks("alice"), CompositeMode::MostRestrictive)
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.deciding, 1);
    assert!(d.decision().unwrap().retry_after > Duration::from_secs(400));
}

/// Needs the `conformance` feature (the manual server time); `scripts/test` runs with
/// every feature.
#[cfg(feature = "conformance")]
#[tokio::test]
async fn a_vanished_holder_frees_its_slot_after_the_lease() {
    let server = support::RedisServer::start();
    let time = ManualServerTime::new();
    let t0 = Nanos::new(1_700_000_000 * 1_000_000_000);
    time.set(t0);
    let store = RedisStore::builder(server.url())
        .manual_time(time.clone())
        .build()
        .unwrap();
    let lease = Duration::from_secs(30);
    // Two holders take both slots and never give them back (a crashed process).
    for _ in 0..2 {
        let grant = store
            .acquire_slot("uploads", "tenant-1", 2, lease)
            .await
            .unwrap();
        assert!(grant.lease.is_some());
    }
    let full = store
        .acquire_slot("uploads", "tenant-1", 2, lease)
        .await
        .unwrap();
    assert!(!full.decision.allowed && full.lease.is_none());
    time.set(t0 + (lease - Duration::from_millis(1)));
    let still = store
        .acquire_slot("uploads", "tenant-1", 2, lease)
        .await
        .unwrap();
    assert!(!still.decision.allowed, "a lease ended early");
    time.set(t0 + lease);
    let freed = store
        .acquire_slot("uploads", "tenant-1", 2, lease)
        .await
        .unwrap();
    assert!(
        freed.decision.allowed,
        "the vanished holders' slots were not freed"
    );
    assert_eq!(freed.decision.remaining, 1);
}

#[tokio::test]
async fn dropped_permits_give_their_slot_back() {
    let server = support::RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(RedisStore::builder(server.url()).build().unwrap());
    let limiter = SlotLimiter::builder("exports", NonZeroU32::new(1).unwrap())
        .fail_mode(FailMode::Closed)
        .timeout(Duration::from_secs(2))
        .build(Arc::clone(&store));
    for _ in 0..5 {
        let permit = limiter.acquire("acme").await.unwrap();
        assert!(permit.is_held());
        assert!(
            limiter.acquire("acme").await.is_err(),
            "two holders of one slot"
        );
        permit.release().await.unwrap();
    }
    let permit = limiter.acquire("acme").await.unwrap();
    drop(permit);
    // The drop releases in the background; the slot comes back without any lease expiry.
    let mut again = None;
    for _ in 0..200 {
        if let Ok(p) = limiter.acquire("acme").await {
            again = Some(p);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(again.is_some(), "the dropped permit's slot never came back");
}

#[tokio::test]
async fn every_key_expires_and_an_identifier_costs_under_100_bytes() {
    let server = support::RedisServer::start();
    let store = RedisStore::builder(server.url())
        .key_prefix("ttl")
        .build()
        .unwrap();
    // Slow enough that no state expires during the test (a GCRA key lives until its
    // bucket is full again: here 6 s per cell).
    let g = gcra(10, Duration::from_secs(60), 10);
    let s: AnyAlgorithm = SlidingWindow::new(window(50, Duration::from_secs(60))).into();
    let f: AnyAlgorithm = FixedWindow::new(window(50, Duration::from_secs(60))).into();
    for i in 0..200 {
        let id = format!("user-{i:05}");
        store.check("api", &g, &id, 1).await.unwrap();
        store.check("search", &s, &id, 2).await.unwrap();
        store.check("export", &f, &id, 1).await.unwrap();
        if i % 10 == 0 {
            let checks = [
                Check {
                    limiter: "api",
                    algorithm: &g,
                    key: &id,
                    cost: 1,
                },
                Check {
                    limiter: "search",
                    algorithm: &s,
                    key: &id,
                    cost: 1,
                },
            ];
            store
                .check_composite(&checks, CompositeMode::AllMustPass)
                .await
                .unwrap();
            store
                .acquire_slot("uploads", &id, 3, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    // Inspections create nothing.
    store.inspect("api", &g, "never-seen").await.unwrap();

    let mut conn = raw(&server).await;
    let keys: Vec<String> = conn.keys("ttl:*").await.unwrap();
    let count = |l: &str| {
        keys.iter()
            .filter(|k| k.starts_with(&format!("ttl:{{{l}:")))
            .count()
    };
    assert_eq!(
        [
            count("api"),
            count("search"),
            count("export"),
            count("uploads")
        ],
        [200, 200, 200, 20]
    );
    for key in &keys {
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    let mut gcra_bytes = Vec::new();
    for i in 0..200 {
        let key = format!("ttl:{{api:user-{i:05}}}");
        let used: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        gcra_bytes.push(used);
    }
    let most = *gcra_bytes.iter().max().unwrap();
    assert!(most <= 100, "a GCRA identifier takes {most} bytes");
}

#[tokio::test]
async fn reset_drops_one_key_or_all_keys_of_a_limiter() {
    let server = support::RedisServer::start();
    let store = RedisStore::builder(server.url()).build().unwrap();
    let g = gcra(1, Duration::from_secs(60), 1);
    for id in ["a", "b", "c"] {
        assert!(store.check("l1", &g, id, 1).await.unwrap().allowed);
        assert!(!store.check("l1", &g, id, 1).await.unwrap().allowed);
    }
    store.check("l2", &g, "a", 1).await.unwrap();
    let mut ids = store.identifiers("l1", 100).await.unwrap();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(store.reset("l1", Some("a")).await.unwrap(), 1);
    // The deny cache forgot the key too: it is admitted at once.
    assert!(store.check("l1", &g, "a", 1).await.unwrap().allowed);
    assert_eq!(store.reset("l1", None).await.unwrap(), 3);
    assert!(store.identifiers("l1", 100).await.unwrap().is_empty());
    // The other limiter kept its state.
    assert_eq!(store.inspect("l2", &g, "a").await.unwrap().remaining, 0);
}

#[tokio::test]
async fn the_deny_cache_answers_a_hot_denied_key_without_round_trips() {
    let server = support::RedisServer::start();
    let store = Arc::new(RedisStore::builder(server.url()).build().unwrap());
    let limiter = Limiter::builder(
        "hot",
        Gcra::new(Quota::new(1, Duration::from_secs(3600), 1).unwrap()),
    )
    .build(store.clone());
    assert!(
        limiter
            .key("abuser")
            .check()
            .await
            .unwrap()
            .decision
            .allowed
    );
    let before = store.stats();
    for _ in 0..1000 {
        let v = limiter.key("abuser").check().await.unwrap();
        assert!(!v.decision.allowed);
        assert!(v.decision.retry_after > Duration::from_secs(3500));
    }
    let after = store.stats();
    assert_eq!(after.round_trips - before.round_trips, 1, "{after:?}");
    assert_eq!(after.deny_cache_hits - before.deny_cache_hits, 999);
    // Other keys still go to Redis and are admitted.
    assert!(
        limiter
            .key("someone-else")
            .check()
            .await
            .unwrap()
            .decision
            .allowed
    );
}

#[tokio::test]
async fn a_key_holding_foreign_data_is_a_typed_error() {
    let server = support::RedisServer::start();
    let store = RedisStore::builder(server.url()).build().unwrap();
    let mut conn = raw(&server).await;
    // Someone else's list under our key name.
    let _: () = conn.rpush("httpower:{api:x}", "junk").await.unwrap();
    let err = store
        .check("api", &gcra(1, Duration::from_secs(1), 1), "x", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Protocol { .. }), "{err}");
    // A cost above the quota never reaches Redis.
    let err = store
        .check("api", &gcra(1, Duration::from_secs(1), 1), "y", 2)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest { .. }), "{err}");
}

#[tokio::test]
async fn a_server_that_forgot_the_script_is_sent_it_again() {
    let server = support::RedisServer::start();
    let store = RedisStore::builder(server.url())
        .deny_cache_capacity(0)
        .build()
        .unwrap();
    let g = gcra(10, Duration::from_secs(1), 10);
    assert!(store.check("l", &g, "k", 1).await.unwrap().allowed);
    let mut conn = raw(&server).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = store.check("l", &g, "k", 1).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 8);
}

#[tokio::test]
async fn health_reports_reachability_and_latency() {
    let mut server = support::RedisServer::start();
    let store = RedisStore::builder(server.url())
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let up = store.health().await.unwrap();
    assert!(up.reachable, "{up:?}");
    assert!(up.detail.is_none());
    server.kill();
    let down = store.health().await.unwrap();
    assert!(!down.reachable);
    assert!(down.detail.is_some());
}
