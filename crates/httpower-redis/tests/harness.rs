//! The Redis test harness against real servers: single server, cluster and sentinel.

mod support;

use std::time::{Duration, Instant};

use redis::{Commands, ErrorKind};
use support::{key_slot, query, RedisCluster, RedisSentinel, RedisServer, CLUSTER_SLOTS};

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))
}

#[test]
fn crc16_matches_the_reference_vector() {
    // CRC16/XMODEM("123456789") = 0x31C3; the Redis cluster spec's check value.
    assert_eq!(key_slot("123456789"), 0x31C3 % CLUSTER_SLOTS);
    assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
    assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
    assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
    assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
}

#[test]
fn single_server_set_get_kill_restart() {
    let mut server = RedisServer::start();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));

    let mut con = connect(&server.url()).expect("connect");
    let () = con.set("harness:key", "value").expect("SET");
    let value: String = con.get("harness:key").expect("GET");
    assert_eq!(value, "value");

    server.kill();
    let err = connect(&server.url())
        .err()
        .expect("connecting to a killed server fails");
    assert!(
        err.kind() == ErrorKind::Io && err.to_string().to_lowercase().contains("refused"),
        "expected connection refused, got {err:?}"
    );

    let port = server.port();
    server.restart();
    assert_eq!(server.port(), port);
    let mut con = connect(&server.url()).expect("connect after restart");
    let pong: String = redis::cmd("PING")
        .query(&mut con)
        .expect("PING after restart");
    assert_eq!(pong, "PONG");
}

#[test]
fn server_takes_extra_arguments() {
    let server = RedisServer::start_with_args(&["--maxmemory", "10mb"]);
    let config: Vec<String> = query(
        server.port(),
        redis::cmd("CONFIG").arg("GET").arg("maxmemory"),
    )
    .expect("CONFIG GET");
    assert_eq!(config, ["maxmemory", "10485760"]);
}

#[test]
fn cluster_covers_all_slots_and_fails_over() {
    let mut cluster = RedisCluster::start();
    assert_eq!(cluster.seed_urls().len(), 6);

    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let mut covered = vec![false; usize::from(CLUSTER_SLOTS)];
    for (_, ranges) in &masters {
        for range in ranges {
            for slot in range.clone() {
                assert!(!covered[usize::from(slot)], "slot {slot} served twice");
                covered[usize::from(slot)] = true;
            }
        }
    }
    assert!(covered.iter().all(|c| *c), "not every slot is served");
    assert_eq!(cluster.replicas().len(), 3);

    let any = masters[0].0;
    for key in [
        "a",
        "user:42",
        "{user:42}:minute",
        "rl:{tenant-7}:api",
        "x{}y",
        "123456789",
    ] {
        let slot: u16 =
            query(any, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).expect("CLUSTER KEYSLOT");
        assert_eq!(key_slot(key), slot, "slot of {key:?}");
        // The owning master accepts the key without a redirect.
        let owner = cluster.master_for_slot(slot);
        // WAIT counts the replicas that have this connection's writes, so the SET and
        // the WAIT go over one connection.
        let mut conn = redis::Client::open(support::url_for(owner))
            .and_then(|c| c.get_connection())
            .expect("connection to the owning master");
        let ((), acked): ((), i64) = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg("1")
            .cmd("WAIT")
            .arg(1)
            .arg(1000)
            .query(&mut conn)
            .expect("SET and WAIT on the owning master");
        assert_eq!(acked, 1, "the replica acknowledged the write");
    }

    let victim = cluster.master_for_slot(key_slot("user:42"));
    let victim_replica = cluster
        .replicas()
        .into_iter()
        .find(|(_, master)| *master == victim)
        .map(|(replica, _)| replica)
        .expect("the victim has a replica");
    let killed_at = Instant::now();
    cluster.kill_master(victim);
    cluster.wait_until_ok(Duration::from_secs(10));
    assert!(killed_at.elapsed() < Duration::from_secs(10));

    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    assert!(masters.iter().all(|(port, _)| *port != victim));
    assert_eq!(
        cluster.master_for_slot(key_slot("user:42")),
        victim_replica,
        "the replica was promoted"
    );
    let value: String = query(victim_replica, redis::cmd("GET").arg("user:42"))
        .expect("GET on the promoted replica");
    assert_eq!(value, "1");
}

#[test]
fn sentinel_promotes_the_replica() {
    let mut setup = RedisSentinel::start();
    assert_eq!(setup.master_name(), "mymaster");
    assert_eq!(setup.sentinel_urls().len(), 3);

    let master = setup.master_port();
    let mut con = connect(&support::url_for(master)).expect("connect to master");
    let () = con.set("harness:sentinel", "v").expect("SET on master");

    let killed = setup.kill_master();
    assert_eq!(killed, master);
    let new_master = setup.wait_for_new_master(Duration::from_secs(15));
    assert_ne!(new_master, master);
    assert_eq!(setup.master_port(), new_master);
    let mut con = connect(&support::url_for(new_master)).expect("connect to new master");
    let () = con
        .set("harness:after", "v")
        .expect("SET on the new master");
}

#[test]
#[should_panic(expected = "did not become ready")]
fn a_server_that_cannot_start_fails_with_its_log() {
    let _server = RedisServer::start_with_args(&["--no-such-option", "1"]);
}
