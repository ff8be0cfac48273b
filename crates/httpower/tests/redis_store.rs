//! Clients and limiters built from configuration on a real Redis store (a
//! `redis-server` started by the test on a free port of 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The harness serves several test crates; not every one uses all of it.
#[path = "../../httpower-redis/tests/support/mod.rs"]
#[allow(
    clippy::duplicated_attributes,
    dead_code,
    unreachable_pub,
    missing_docs
)]
mod redis_support;

use httpower::config::Config;
use httpower::core::clock::MonotonicClock;
use httpower::stores::Stores;
use httpower::testing::{Stub, StubReply};
use httpower::{Client, ClientBuilder};
use redis_support::RedisServer;

/// Two clients on one named limiter (3 per 300 s, key `shared`) on a Redis store.
fn config(url: &str, fail_closed: bool) -> Config {
    let text = format!(
        r#"
[stores.shared]
strategy = "redis"
url = "${{REDIS_URL}}"
key_prefix = "libtest"
socket_timeout = 1
socket_connect_timeout = 1

[limiters.api]
store_id = "shared"
algorithm = "sliding_window"
limit = 3
window_seconds = 300
fail_closed = {fail_closed}

[clients.a]
base_url = "https://api.example.com"
rate_limit_key = "shared"
rate_limit = {{ limiter = "api" }}
retry = {{ enabled = false }}

[clients.b]
base_url = "https://api.example.com"
rate_limit_key = "shared"
rate_limit = {{ limiter = "api" }}
retry = {{ enabled = false }}
"#
    );
    let vars = |name: &str| (name == "REDIS_URL").then(|| url.to_owned());
    Config::parse_with_vars(&text, &vars).unwrap()
}

fn client(builder: ClientBuilder) -> Client {
    builder
        .test_mode()
        .stub(Stub::get("/x").reply(StubReply::text(200, "ok")))
        .build()
        .unwrap()
}

#[tokio::test]
async fn clients_from_configuration_share_one_limit_in_redis() {
    let redis = RedisServer::start();
    let config = config(&redis.url(), false);
    // Separate registries, as separate processes would have: the limit is still one.
    let a = client(ClientBuilder::from_config(&config, "a").unwrap());
    let b = client(ClientBuilder::from_config(&config, "b").unwrap());
    a.get("/x").send().await.unwrap();
    a.get("/x").send().await.unwrap();
    b.get("/x").send().await.unwrap();
    let err = b.get("/x").send().await.unwrap_err();
    assert_eq!(err.name(), "too_many_requests", "{err}");
    let err = a.get("/x").send().await.unwrap_err();
    assert_eq!(err.name(), "too_many_requests", "{err}");

    // The state is in Redis, where a limiter built from the same file sees it.
    let stores = Stores::new(&config);
    let limiter = config.limiter_on("api", &stores).unwrap();
    let decision = limiter.key("shared").inspect().await.unwrap();
    assert_eq!((decision.remaining, decision.limit), (0, 3));
    let redis_store = stores.redis("shared").unwrap().unwrap();
    assert_eq!(
        redis_store.identifiers("api", 10).await.unwrap(),
        vec!["shared".to_owned()]
    );
    assert_eq!(limiter.key("shared").reset().await.unwrap(), 1);
    let c = client(
        ClientBuilder::from_config_with_stores(&config, "a", &stores, MonotonicClock).unwrap(),
    );
    c.get("/x").send().await.unwrap();
}

#[tokio::test]
async fn a_redis_store_that_is_down_follows_the_fail_mode() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();

    let open = client(ClientBuilder::from_config(&config(&url, false), "a").unwrap());
    open.get("/x").send().await.unwrap();

    let closed = client(ClientBuilder::from_config(&config(&url, true), "a").unwrap());
    let err = closed.get("/x").send().await.unwrap_err();
    assert_eq!(err.name(), "store_unavailable", "{err}");
}
