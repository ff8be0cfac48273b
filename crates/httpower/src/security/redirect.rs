//! A reqwest redirect policy that applies the host policy to every hop.

use std::sync::Arc;

use reqwest::redirect::Policy;
use url::Url;

use super::{HostPolicy, Violation};

/// A redirect policy that follows at most `max_redirects` redirects and checks every
/// hop's URL with [`HostPolicy::check_url`].
///
/// Without it, an allowed host could answer `302 Location: http://169.254.169.254/` and
/// the client would follow. A refused hop fails the request with the
/// [`Violation`] (recoverable with [`find_violation`](super::find_violation)); so does a
/// chain longer than `max_redirects` ([`Violation::TooManyRedirects`]). Names in redirect
/// targets are also resolved through the client's resolver when connecting, so a
/// [`GuardedResolver`](super::GuardedResolver) still checks their addresses.
///
/// `max_redirects = 0` refuses every redirect with an error; use
/// `reqwest::redirect::Policy::none()` to hand 3xx responses back instead.
pub fn redirect_policy(policy: Arc<HostPolicy>, max_redirects: usize) -> Policy {
    Policy::custom(move |attempt| {
        match check_hop(
            &policy,
            max_redirects,
            attempt.url(),
            attempt.previous().len(),
        ) {
            Ok(()) => attempt.follow(),
            Err(violation) => attempt.error(violation),
        }
    })
}

/// The decision for one hop to `next`, after `previous` requests in the chain (the
/// original request counts, so the first redirect sees 1).
fn check_hop(
    policy: &HostPolicy,
    max_redirects: usize,
    next: &Url,
    previous: usize,
) -> Result<(), Violation> {
    if previous > max_redirects {
        return Err(Violation::TooManyRedirects { max: max_redirects });
    }
    policy.check_url(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::net::SocketAddr;

    use axum::extract::Path;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;

    use super::super::{find_violation, GuardedResolver};
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn hop_decisions() {
        let policy = HostPolicy::builder()
            .allowed_hosts(["api.example.com"])
            .build()
            .unwrap();
        let ok = url("https://api.example.com/next");
        assert_eq!(check_hop(&policy, 2, &ok, 1), Ok(()));
        assert_eq!(check_hop(&policy, 2, &ok, 2), Ok(()));
        assert_eq!(
            check_hop(&policy, 2, &ok, 3),
            Err(Violation::TooManyRedirects { max: 2 })
        );
        assert_eq!(
            check_hop(&policy, 0, &ok, 1),
            Err(Violation::TooManyRedirects { max: 0 })
        );
        assert_eq!(
            check_hop(&policy, 5, &url("https://evil.example.net/"), 1),
            Err(Violation::HostNotAllowed {
                host: "evil.example.net".to_owned()
            })
        );
        assert!(matches!(
            check_hop(&policy, 5, &url("ftp://api.example.com/"), 1),
            Err(Violation::SchemeNotAllowed { .. })
        ));
    }

    /// A local server: `/to/{n}` redirects to `/to/{n-1}` until `/to/0`, which answers
    /// 200; `/away` redirects to a host outside the allowed list; `/meta` to the cloud
    /// metadata address; `/named` to `innocent.example`.
    async fn server() -> SocketAddr {
        async fn to(Path(n): Path<u32>) -> impl IntoResponse {
            match n.checked_sub(1) {
                None => (StatusCode::OK, "done").into_response(),
                Some(next) => (
                    StatusCode::FOUND,
                    [(header::LOCATION, format!("/to/{next}"))],
                )
                    .into_response(),
            }
        }
        fn redirect(location: &'static str) -> impl IntoResponse {
            (StatusCode::FOUND, [(header::LOCATION, location)])
        }
        let app = Router::new()
            .route("/to/{n}", get(to))
            .route(
                "/away",
                get(|| async { redirect("http://evil.example.net/") }),
            )
            .route(
                "/meta",
                get(|| async { redirect("http://169.254.169.254/latest") }),
            )
            .route(
                "/named",
                get(|| async { redirect("http://innocent.example/") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn client(policy: HostPolicy, max_redirects: usize) -> reqwest::Client {
        let policy = Arc::new(policy);
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy))))
            .redirect(redirect_policy(policy, max_redirects))
            .build()
            .unwrap()
    }

    fn local_only() -> HostPolicy {
        HostPolicy::builder()
            .allowed_hosts(["127.0.0.1"])
            .block_private_ips(true)
            .exempt_cidr("127.0.0.1/32".parse().unwrap())
            .build()
            .unwrap()
    }

    async fn violation_of(client: &reqwest::Client, url: String) -> Violation {
        let err = client.get(url).send().await.err().unwrap();
        match find_violation(&err) {
            Some(violation) => violation.clone(),
            None => panic!("no violation in {err:?}"),
        }
    }

    #[tokio::test]
    async fn follows_allowed_hops_up_to_the_limit() {
        let addr = server().await;
        let client = client(local_only(), 3);
        let response = client
            .get(format!("http://{addr}/to/3"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            violation_of(&client, format!("http://{addr}/to/4")).await,
            Violation::TooManyRedirects { max: 3 }
        );
    }

    #[tokio::test]
    async fn refuses_a_hop_to_a_host_not_allowed() {
        let addr = server().await;
        assert_eq!(
            violation_of(&client(local_only(), 10), format!("http://{addr}/away")).await,
            Violation::HostNotAllowed {
                host: "evil.example.net".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn refuses_a_hop_to_a_private_address() {
        let addr = server().await;
        let policy = HostPolicy::builder()
            .block_private_ips(true)
            .exempt_cidr("127.0.0.1/32".parse().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            violation_of(&client(policy, 10), format!("http://{addr}/meta")).await,
            Violation::BlockedPrivateIp {
                host: "169.254.169.254".to_owned(),
                ip: "169.254.169.254".parse().unwrap()
            }
        );
    }

    #[tokio::test]
    async fn a_named_hop_is_checked_when_resolved() {
        let addr = server().await;
        // `innocent.example` passes the URL check; the resolver (a stand-in for a DNS
        // server that points it at loopback) answers 127.0.0.2, which is not exempt.
        let policy = Arc::new(
            HostPolicy::builder()
                .block_private_ips(true)
                .exempt_cidr("127.0.0.1/32".parse().unwrap())
                .build()
                .unwrap(),
        );
        let inward = Arc::new(Fixed(vec!["127.0.0.2:0".parse().unwrap()]));
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::wrap(Arc::clone(&policy), inward)))
            .redirect(redirect_policy(policy, 10))
            .build()
            .unwrap();
        assert_eq!(
            violation_of(&client, format!("http://{addr}/named")).await,
            Violation::BlockedPrivateIp {
                host: "innocent.example".to_owned(),
                ip: "127.0.0.2".parse().unwrap()
            }
        );
    }

    /// A resolver that answers every name with the same addresses.
    struct Fixed(Vec<SocketAddr>);

    impl reqwest::dns::Resolve for Fixed {
        fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let addrs = self.0.clone();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs) })
        }
    }
}
