//! The SSRF guard against real local servers: names and IP literals that mean a private
//! address are refused before any connection, exemptions let a chosen network through,
//! every redirect hop is checked (without ever connecting to the refused target), the
//! allowed-host list holds on redirects too, and redirect chains are bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use httpower::core::clock::ManualClock;
use httpower::{Client, ClientBuilder, Reason};
use support::{bounded, test_client, Reply, Server};

/// Far shorter than the bound of a test step: a connection attempt to an unroutable
/// address ends as a connect timeout well inside it, and a test that expects the guard's
/// reason then fails on the reason instead of hanging.
const CONNECT: Duration = Duration::from_millis(300);

/// A client on a manual clock with no retries (a refused request is never retried
/// anyway; a regression must fail at once rather than retry a timeout).
fn guarded(clock: &ManualClock) -> ClientBuilder {
    let (builder, _events) = test_client(clock);
    builder.no_retry().connect_timeout(CONNECT)
}

fn loopback() -> ipnet::IpNet {
    "127.0.0.0/8".parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The error of a GET of `url`, which must fail.
async fn refused(client: &Client, url: &str) -> httpower::Error {
    match bounded(client.get(url).send()).await {
        Ok(response) => panic!("{url} was fetched ({}), not refused", response.status()),
        Err(err) => err,
    }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_blocked_before_connecting() {
    let server = Server::start().await;
    server.script("/", [Reply::ok("secret")]);
    let clock = ManualClock::new();
    let client = guarded(&clock).block_private_ips(true).build().unwrap();

    let err = refused(&client, &format!("http://localhost:{}/", server.port())).await;
    assert_eq!(err.name(), "blocked_private_ip", "{err}");
    match err.reason() {
        Reason::BlockedPrivateIp { host, ip } => {
            assert_eq!(host, "localhost");
            // `localhost` may resolve to ::1 first; either loopback is the right answer.
            assert!(ip.is_loopback(), "{ip}");
        }
        other => panic!("expected BlockedPrivateIp, got {other:?}"),
    }
    assert_eq!(err.attempts(), 0);
    assert!(err.is_local());
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn an_ip_literal_is_blocked_without_resolving() {
    let server = Server::start().await;
    server.script("/", [Reply::ok("secret")]);
    let clock = ManualClock::new();
    let client = guarded(&clock).block_private_ips(true).build().unwrap();

    let err = refused(&client, &server.url("/")).await;
    assert_eq!(
        err.reason(),
        &Reason::BlockedPrivateIp {
            host: "127.0.0.1".to_owned(),
            ip: ip("127.0.0.1"),
        }
    );
    assert_eq!(err.attempts(), 0);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn every_spelling_of_loopback_is_blocked() {
    let server = Server::start().await;
    server.script("/", [Reply::ok("secret")]);
    let clock = ManualClock::new();
    let client = guarded(&clock).block_private_ips(true).build().unwrap();
    let port = server.port();

    for url in [
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
    ] {
        let err = refused(&client, &url).await;
        assert_eq!(err.name(), "blocked_private_ip", "{url}: {err}");
        match err.reason() {
            Reason::BlockedPrivateIp { ip, .. } => {
                let plain = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
                    IpAddr::V4(_) => *ip,
                };
                assert!(plain.is_loopback(), "{url}: {ip}");
            }
            other => panic!("{url}: expected BlockedPrivateIp, got {other:?}"),
        }
    }
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn an_allowed_private_network_lets_the_local_server_through() {
    let server = Server::start().await;
    server.script("/", [Reply::ok("hello")]);
    let clock = ManualClock::new();
    let client = guarded(&clock)
        .block_private_ips(true)
        .allow_private_network(loopback())
        .build()
        .unwrap();

    let response = bounded(client.get(&server.url("/")).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(bounded(response.text()).await.unwrap(), "hello");
    assert_eq!(server.hits("/"), 1);

    // By name too: an IPv6 loopback answer (outside the exemption) is dropped and the
    // IPv4 one, inside it, is used.
    let response = bounded(
        client
            .get(&format!("http://localhost:{}/", server.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/"), 2);
}

#[tokio::test]
async fn an_exemption_covers_its_network_only() {
    let server = Server::start().await;
    server.script("/", [Reply::ok("hello")]);
    let clock = ManualClock::new();
    let client = guarded(&clock)
        .block_private_ips(true)
        .allow_private_network("127.0.0.1/32".parse().unwrap())
        .build()
        .unwrap();

    assert_eq!(
        bounded(client.get(&server.url("/")).send())
            .await
            .unwrap()
            .status(),
        200
    );
    // 127.0.0.2 is loopback as well, but outside the exempted /32.
    let err = refused(&client, &format!("http://127.0.0.2:{}/", server.port())).await;
    assert_eq!(
        err.reason(),
        &Reason::BlockedPrivateIp {
            host: "127.0.0.2".to_owned(),
            ip: ip("127.0.0.2"),
        }
    );
    for target in ["10.0.0.1", "169.254.169.254", "192.168.1.1", "[fd00::1]"] {
        let err = refused(&client, &format!("http://{target}/")).await;
        assert_eq!(err.name(), "blocked_private_ip", "{target}: {err}");
    }
    assert_eq!(server.hits("/"), 1);
}

/// A server on the (exempted) loopback that redirects `/go` to `location`.
async fn redirecting_to(location: &str) -> Server {
    let server = Server::start().await;
    server.script("/go", [Reply::status(302).header("location", location)]);
    server
}

/// A client that may reach the loopback test servers and nothing else private.
fn loopback_exempt(clock: &ManualClock) -> Client {
    guarded(clock)
        .block_private_ips(true)
        .allow_private_network("127.0.0.1/32".parse().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_refused_without_connecting() {
    let server = redirecting_to("http://169.254.169.254/latest/meta-data/").await;
    let clock = ManualClock::new();
    let client = loopback_exempt(&clock);

    let started = std::time::Instant::now();
    let err = refused(&client, &server.url("/go")).await;
    // Had the client tried to connect, the unroutable address would have ended in a
    // connect timeout (or a connect error), not in the guard's reason.
    assert_eq!(
        err.reason(),
        &Reason::BlockedPrivateIp {
            host: "169.254.169.254".to_owned(),
            ip: ip("169.254.169.254"),
        },
        "{err}"
    );
    assert!(started.elapsed() < CONNECT, "{:?}", started.elapsed());
    assert_eq!(server.hits("/go"), 1);
}

#[tokio::test]
async fn a_redirect_to_a_private_network_is_refused_without_connecting() {
    for (location, host) in [
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://10.0.0.1:8080/admin", "10.0.0.1"),
        ("http://0xa000001/", "10.0.0.1"),
    ] {
        let server = redirecting_to(location).await;
        let clock = ManualClock::new();
        let client = loopback_exempt(&clock);

        let started = std::time::Instant::now();
        let err = refused(&client, &server.url("/go")).await;
        assert_eq!(
            err.reason(),
            &Reason::BlockedPrivateIp {
                host: host.to_owned(),
                ip: ip(host),
            },
            "{location}: {err}"
        );
        assert!(started.elapsed() < CONNECT, "{location}");
        assert_eq!(server.hits("/go"), 1);
    }
}

/// A second host: a server on 127.0.0.2, where a followed redirect would be seen.
async fn second_host() -> Server {
    let target = Server::start_at(ip("127.0.0.2")).await;
    target.script("/landing", [Reply::ok("internal")]);
    target
}

#[tokio::test]
async fn a_redirect_to_a_blocked_loopback_address_never_reaches_it() {
    let target = second_host().await;
    let origin = redirecting_to(&target.url_at_addr("/landing")).await;
    let clock = ManualClock::new();
    let client = loopback_exempt(&clock);

    let err = refused(&client, &origin.url("/go")).await;
    assert_eq!(
        err.reason(),
        &Reason::BlockedPrivateIp {
            host: "127.0.0.2".to_owned(),
            ip: ip("127.0.0.2"),
        }
    );
    assert_eq!(origin.hits("/go"), 1);
    assert_eq!(target.total_hits(), 0);

    // The same chain is followed once the target's address is exempt as well.
    let client = guarded(&clock)
        .block_private_ips(true)
        .allow_private_network(loopback())
        .build()
        .unwrap();
    let response = bounded(client.get(&origin.url("/go")).send())
        .await
        .unwrap();
    assert_eq!(bounded(response.text()).await.unwrap(), "internal");
    assert_eq!(target.hits("/landing"), 1);
}

#[tokio::test]
async fn a_redirect_to_a_name_resolving_to_a_blocked_address_is_refused() {
    // The origin is on 127.0.0.2, the only exempt address; the hop names `localhost`,
    // which resolves to a loopback address outside the exemption, where the target
    // listens.
    let origin = Server::start_at(ip("127.0.0.2")).await;
    let target = Server::start().await;
    target.script("/landing", [Reply::ok("internal")]);
    origin.script(
        "/go",
        [Reply::status(302).header(
            "location",
            &format!("http://localhost:{}/landing", target.port()),
        )],
    );
    let clock = ManualClock::new();
    let client = guarded(&clock)
        .block_private_ips(true)
        .allow_private_network("127.0.0.2/32".parse().unwrap())
        .build()
        .unwrap();

    let err = refused(&client, &origin.url_at_addr("/go")).await;
    match err.reason() {
        Reason::BlockedPrivateIp { host, ip } => {
            assert_eq!(host, "localhost");
            assert!(ip.is_loopback(), "{ip}");
        }
        other => panic!("expected BlockedPrivateIp, got {other:?} ({err})"),
    }
    assert_eq!(origin.hits("/go"), 1);
    assert_eq!(target.total_hits(), 0);
}

#[tokio::test]
async fn a_host_outside_the_allowed_list_is_refused_before_sending() {
    let server = Server::start().await;
    server.script("/", [Reply::ok("hello")]);
    let clock = ManualClock::new();
    let client = guarded(&clock)
        .allowed_hosts(["api.example.com", "*.example.org"])
        .build()
        .unwrap();

    let err = refused(&client, &server.url("/")).await;
    assert_eq!(
        err.reason(),
        &Reason::HostNotAllowed {
            host: "127.0.0.1".to_owned()
        }
    );
    assert_eq!(err.attempts(), 0);
    let err = refused(&client, &format!("http://LocalHost:{}/", server.port())).await;
    assert_eq!(
        err.reason(),
        &Reason::HostNotAllowed {
            host: "localhost".to_owned()
        }
    );
    // `*.example.org` is subdomains only.
    let err = refused(&client, "http://example.org/").await;
    assert_eq!(err.name(), "host_not_allowed");
    assert_eq!(server.total_hits(), 0);

    // A list naming the server lets it through.
    let client = guarded(&clock)
        .allowed_hosts(["127.0.0.1"])
        .build()
        .unwrap();
    assert_eq!(
        bounded(client.get(&server.url("/")).send())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.hits("/"), 1);
}

#[tokio::test]
async fn a_redirect_off_the_allowed_list_is_refused() {
    let target = Server::start().await;
    target.script("/landing", [Reply::ok("elsewhere")]);
    let other = second_host().await;
    let clock = ManualClock::new();
    let client = guarded(&clock)
        .allowed_hosts(["127.0.0.1"])
        .build()
        .unwrap();

    // To another address (listening: a followed hop would be seen there), to a name that
    // resolves to the allowed address (the list is about hosts as written), and to a
    // public name.
    for (location, host) in [
        (other.url_at_addr("/landing"), "127.0.0.2"),
        (
            format!("http://localhost:{}/landing", target.port()),
            "localhost",
        ),
        ("http://evil.example.net/".to_owned(), "evil.example.net"),
    ] {
        let origin = redirecting_to(&location).await;
        let err = refused(&client, &origin.url("/go")).await;
        assert_eq!(
            err.reason(),
            &Reason::HostNotAllowed {
                host: host.to_owned()
            },
            "{location}"
        );
        assert_eq!(origin.hits("/go"), 1);
    }
    assert_eq!(target.total_hits(), 0);
    assert_eq!(other.total_hits(), 0);

    // A hop that stays on the list is followed.
    let origin = redirecting_to(&target.url("/landing")).await;
    let response = bounded(client.get(&origin.url("/go")).send())
        .await
        .unwrap();
    assert_eq!(bounded(response.text()).await.unwrap(), "elsewhere");
    assert_eq!(target.hits("/landing"), 1);
}

/// A server whose `/loop` redirects to itself forever.
async fn redirect_loop() -> Server {
    let server = Server::start().await;
    server.script("/loop", [Reply::status(302).header("location", "/loop")]);
    server
}

#[tokio::test]
async fn too_many_redirects_fail_with_redirect() {
    let clock = ManualClock::new();
    // Without a guard (reqwest's own limit) and with one (the guard's redirect policy):
    // the same reason, after the same number of hops.
    let plain = guarded(&clock).max_redirects(3).build().unwrap();
    let with_guard = guarded(&clock)
        .max_redirects(3)
        .block_private_ips(true)
        .allow_private_network(loopback())
        .build()
        .unwrap();
    for client in [plain, with_guard] {
        let server = redirect_loop().await;
        let err = refused(&client, &server.url("/loop")).await;
        assert_eq!(err.name(), "redirect", "{err}");
        assert_eq!(err.reason(), &Reason::Redirect);
        // The request and three redirects followed; the fourth is not.
        assert_eq!(server.hits("/loop"), 4);
    }
}

#[tokio::test]
async fn the_default_follows_ten_redirects() {
    let server = Server::start().await;
    server.script_fn("/hop", |hit| {
        if hit <= 10 {
            Reply::status(302).header("location", "/hop")
        } else {
            Reply::ok("arrived")
        }
    });
    let clock = ManualClock::new();
    let client = guarded(&clock).build().unwrap();
    let response = bounded(client.get(&server.url("/hop")).send())
        .await
        .unwrap();
    assert_eq!(bounded(response.text()).await.unwrap(), "arrived");
    assert_eq!(server.hits("/hop"), 11);

    let server = redirect_loop().await;
    let err = refused(&client, &server.url("/loop")).await;
    assert_eq!(err.name(), "redirect");
    assert_eq!(server.hits("/loop"), 11);
}

#[tokio::test]
async fn max_redirects_zero_hands_the_redirect_back() {
    let clock = ManualClock::new();
    let client = guarded(&clock).max_redirects(0).build().unwrap();
    let server = redirect_loop().await;
    let response = bounded(client.get(&server.url("/loop")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(server.hits("/loop"), 1);
}

#[tokio::test]
async fn max_redirects_zero_hands_the_redirect_back_with_a_guard_too() {
    let clock = ManualClock::new();
    let client = guarded(&clock)
        .max_redirects(0)
        .block_private_ips(true)
        .allow_private_network(loopback())
        .build()
        .unwrap();
    let server = redirect_loop().await;
    let response = bounded(client.get(&server.url("/loop")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(server.hits("/loop"), 1);
}

#[tokio::test]
async fn a_refused_redirect_hop_still_counts_the_request_that_was_sent() {
    let server = redirecting_to("http://169.254.169.254/latest/meta-data/").await;
    let clock = ManualClock::new();
    let client = loopback_exempt(&clock);

    let err = refused(&client, &server.url("/go")).await;
    assert_eq!(err.name(), "blocked_private_ip");
    assert_eq!(server.hits("/go"), 1);
    // The origin received (and may have acted on) the request: it was not local.
    assert_eq!(err.attempts(), 1);
    assert!(!err.is_local());
}
