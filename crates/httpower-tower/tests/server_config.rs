//! `[server]` from a configuration file: one layer per rule, on the stores and limiters
//! the file names, exercised over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../httpower-redis/tests/support/mod.rs"]
mod redis_support;

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::Router;
use httpower::config::Config;
use httpower::stores::Stores;
use httpower_tower::config::{InboundLimits, ServerConfigError};

const FILE: &str = r#"
[stores.shared]
strategy = "redis"
url = "${REDIS_URL}"
key_prefix = "server-config"

[limiters.login_ip]
algorithm = "sliding_window"
limit = 4
window_seconds = 600

[limiters.login_user]
algorithm = "sliding_window"
limit = 2
window_seconds = 900
fail_closed = true

[limiters.api]
store_id = "shared"
algorithm = "fixed_window"
limit = 3
window_seconds = 3600

[server]
trusted_proxies = ["10.0.0.0/8"]

[[server.routes]]
include = ["/login"]
limiters = ["login_ip", "login_user"]
keys = ["ip", "header:x-login-user"]

[[server.routes]]
include = ["/api/*"]
exclude = ["/api/health"]
limiters = ["api"]
key = "header:x-api-key"
"#;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

fn status_of(response: &reqwest::Response) -> u16 {
    response.status().as_u16()
}

fn app(limits: &InboundLimits) -> Router {
    limits.apply(
        Router::new()
            .route("/login", post(|| async { "welcome" }))
            .route("/api/items", get(|| async { "items" }))
            .route("/api/health", get(|| async { "ok" }))
            .route("/about", get(|| async { "about" })),
    )
}

#[tokio::test]
async fn server_rules_from_the_file_limit_their_paths_with_their_keys() {
    let redis = redis_support::RedisServer::start();
    let url = redis.url();
    let config =
        Config::parse_with_vars(FILE, &|name| (name == "REDIS_URL").then(|| url.clone())).unwrap();
    let stores = Stores::new(&config);
    let limits = InboundLimits::from_config(&config, &stores).unwrap();
    assert_eq!(limits.layers().len(), 2);
    // Two "instances" built from the same file share the Redis-backed budget.
    let (a, b) = (
        serve(app(&limits)).await,
        serve(app(&InboundLimits::from_config(
            &config,
            &Stores::new(&config),
        )
        .unwrap()))
        .await,
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = |r: reqwest::Response| r.status().as_u16();

    // /login: by address (4) and by credential (2), both must pass; a credential's
    // denials cost the address nothing.
    let mut login = Vec::new();
    for user in ["alice", "alice", "alice", "bob", "bob", "carol"] {
        let response = http
            .post(format!("{a}/login"))
            .header("x-login-user", user)
            .send()
            .await
            .unwrap();
        let status = status_of(&response);
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        login.push((user, status, body["limiter"].as_str().map(str::to_owned)));
    }
    let denied_by = |limiter: &str| Some(limiter.to_owned());
    assert_eq!(
        login,
        [
            ("alice", 200, None),
            ("alice", 200, None),
            ("alice", 429, denied_by("login_user")),
            ("bob", 200, None),
            ("bob", 200, None),
            ("carol", 429, denied_by("login_ip")),
        ]
    );

    // /api/*: 3 per API key, shared by both instances through Redis.
    let mut seen = Vec::new();
    let mut last_body = serde_json::Value::Null;
    for base in [&a, &b, &a, &b] {
        let response = http
            .get(format!("{base}/api/items"))
            .header("x-api-key", "key-1")
            .send()
            .await
            .unwrap();
        seen.push(status_of(&response));
        last_body = response.json().await.unwrap_or(serde_json::Value::Null);
    }
    assert_eq!(seen, [200, 200, 200, 429]);
    assert_eq!(last_body["limiter"], "api", "{last_body}");
    let other_key = http
        .get(format!("{b}/api/items"))
        .header("x-api-key", "key-2")
        .send()
        .await
        .unwrap();
    assert_eq!(status(other_key), 200);

    // Excluded and unlisted paths are never limited.
    for _ in 0..5 {
        assert_eq!(
            status(http.get(format!("{a}/api/health")).send().await.unwrap()),
            200
        );
        assert_eq!(
            status(http.get(format!("{a}/about")).send().await.unwrap()),
            200
        );
    }
}

#[test]
fn a_rule_that_cannot_become_a_layer_names_the_rule() {
    let file = r#"
[limiters.uploads]
algorithm = "concurrency"
max_concurrent = 2

[[server.routes]]
include = ["/upload"]
limiters = ["uploads"]
"#;
    let config = Config::from_toml_str(file).unwrap();
    let err = InboundLimits::from_config(&config, &Stores::new(&config)).unwrap_err();
    assert!(matches!(err, ServerConfigError::Config(_)), "{err}");
    assert!(err.to_string().contains("limiters.uploads"), "{err}");

    // `key` and `keys` exclude each other; `keys` needs one key per limiter.
    let both = "[limiters.a]\nlimit = 1\nwindow_seconds = 1\nalgorithm = \"fixed_window\"\n\
                [[server.routes]]\ninclude = [\"/x\"]\nlimiters = [\"a\"]\nkey = \"ip\"\nkeys = [\"ip\"]\n";
    let err = Config::from_toml_str(both).unwrap_err();
    assert!(err.to_string().contains("server.routes[0].keys"), "{err}");
    let short = both
        .replace("key = \"ip\"\n", "")
        .replace("keys = [\"ip\"]", "keys = [\"ip\", \"global\"]");
    let err = Config::from_toml_str(&short).unwrap_err();
    assert!(err.to_string().contains("one key per limiter (1)"), "{err}");

    let empty = Config::from_toml_str("").unwrap();
    assert!(InboundLimits::from_config(&empty, &Stores::new(&empty))
        .unwrap()
        .is_empty());
}
