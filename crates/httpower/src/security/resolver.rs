//! A DNS resolver for reqwest that refuses addresses the host policy blocks.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::HostPolicy;

/// A [`reqwest::dns::Resolve`] that resolves names and then drops every address the
/// [`HostPolicy`] refuses.
///
/// This is where "a public name that points at 127.0.0.1" is caught: the URL check sees
/// only the name, the resolver sees what it really means. Because reqwest connects to the
/// addresses this resolver returns, there is no window between the check and the
/// connection in which a second DNS answer (DNS rebinding) could swap in another address.
///
/// When some of a name's addresses are refused the others are still used; when all are
/// refused, resolution fails with the [`Violation`](super::Violation) (boxed), which
/// [`find_violation`](super::find_violation) recovers from the reqwest error.
///
/// By default names are looked up with the system resolver (`getaddrinfo`, through
/// [`tokio::net::lookup_host`]); [`GuardedResolver::wrap`] guards any other resolver.
///
/// Two things bypass a resolver, so they bypass this guard: addresses fixed with
/// `reqwest::ClientBuilder::resolve` (reqwest answers those itself), and the target of a
/// request sent through an HTTP proxy (the proxy resolves it; only the proxy's own
/// address goes through here, and needs an exemption if it is private). URLs with IP
/// literals never reach a resolver either; [`HostPolicy::check_url`] checks those.
///
/// ```
/// use std::sync::Arc;
/// use httpower::security::{redirect_policy, GuardedResolver, HostPolicy};
///
/// let policy = Arc::new(HostPolicy::builder().block_private_ips(true).build().unwrap());
/// let client = reqwest::Client::builder()
///     .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy))))
///     .redirect(redirect_policy(policy, 10))
///     .build()
///     .unwrap();
/// # drop(client);
/// ```
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<HostPolicy>,
    inner: Option<Arc<dyn Resolve>>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .field(
                "inner",
                &if self.inner.is_some() {
                    "custom"
                } else {
                    "system"
                },
            )
            .finish()
    }
}

impl GuardedResolver {
    /// Guards the system resolver with `policy`.
    pub fn new(policy: Arc<HostPolicy>) -> Self {
        GuardedResolver {
            policy,
            inner: None,
        }
    }

    /// Guards another resolver (hickory, a service-discovery lookup, a fixed table in a
    /// test) with `policy`.
    pub fn wrap(policy: Arc<HostPolicy>, inner: Arc<dyn Resolve>) -> Self {
        GuardedResolver {
            policy,
            inner: Some(inner),
        }
    }

    /// The policy applied to resolved addresses.
    pub fn policy(&self) -> &HostPolicy {
        &self.policy
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let inner = self.inner.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = match inner {
                Some(inner) => inner.resolve(name).await?.collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no addresses found for `{host}`"),
                )
                .into());
            }
            let kept = policy.filter_addrs(&host, addrs)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::net::IpAddr;
    use std::str::FromStr;

    use super::super::{find_violation, Violation};
    use super::*;

    /// A resolver that answers every name from a fixed list, as a hostile or
    /// misconfigured DNS server would.
    struct Fixed(Vec<SocketAddr>);

    impl Resolve for Fixed {
        fn resolve(&self, _name: Name) -> Resolving {
            let addrs = self.0.clone();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    fn blocking(exempt: Option<&str>) -> Arc<HostPolicy> {
        let mut builder = HostPolicy::builder().block_private_ips(true);
        if let Some(range) = exempt {
            builder = builder.exempt_cidr(range.parse().unwrap());
        }
        Arc::new(builder.build().unwrap())
    }

    async fn resolve(resolver: &GuardedResolver, host: &str) -> Result<Vec<IpAddr>, String> {
        match resolver.resolve(Name::from_str(host).unwrap()).await {
            Ok(addrs) => Ok(addrs.map(|addr| addr.ip()).collect()),
            Err(err) => match err.downcast_ref::<Violation>() {
                Some(violation) => Err(violation.name().to_owned()),
                None => Err(format!("other: {err}")),
            },
        }
    }

    #[tokio::test]
    async fn localhost_is_blocked() {
        let resolver = GuardedResolver::new(blocking(None));
        let err = resolver
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .err()
            .unwrap();
        match err.downcast_ref::<Violation>() {
            Some(Violation::BlockedPrivateIp { host, ip }) => {
                assert_eq!(host, "localhost");
                assert!(ip.is_loopback(), "{ip}");
            }
            other => panic!("expected BlockedPrivateIp, got {other:?} ({err})"),
        }
        assert!(find_violation(err.as_ref()).is_some());
    }

    #[tokio::test]
    async fn localhost_is_allowed_with_an_exemption() {
        let resolver = GuardedResolver::new(blocking(Some("127.0.0.0/8")));
        let addrs = resolve(&resolver, "localhost").await.unwrap();
        // Whatever the system returned for ::1 is dropped; the IPv4 loopback is kept.
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|ip| *ip == IpAddr::from([127, 0, 0, 1])),
            "{addrs:?}"
        );
    }

    #[tokio::test]
    async fn localhost_resolves_when_nothing_is_blocked() {
        let resolver = GuardedResolver::new(Arc::new(HostPolicy::default()));
        let addrs = resolve(&resolver, "localhost").await.unwrap();
        assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
    }

    #[tokio::test]
    async fn a_public_name_pointing_inward_is_blocked() {
        let hostile = Arc::new(Fixed(vec![
            "127.0.0.1:0".parse().unwrap(),
            "[::ffff:169.254.169.254]:0".parse().unwrap(),
        ]));
        let resolver = GuardedResolver::wrap(blocking(None), hostile);
        assert_eq!(
            resolve(&resolver, "innocent.example.com").await,
            Err("blocked_private_ip".to_owned())
        );
    }

    #[tokio::test]
    async fn mixed_answers_keep_the_public_addresses() {
        let mixed = Arc::new(Fixed(vec![
            "10.0.0.1:0".parse().unwrap(),
            "93.184.216.34:0".parse().unwrap(),
            "[fd00::1]:0".parse().unwrap(),
            "[2606:4700::1111]:0".parse().unwrap(),
        ]));
        let resolver = GuardedResolver::wrap(blocking(None), mixed);
        assert_eq!(
            resolve(&resolver, "mixed.example.com").await,
            Ok(vec![
                "93.184.216.34".parse().unwrap(),
                "2606:4700::1111".parse().unwrap()
            ])
        );
    }

    #[tokio::test]
    async fn an_empty_answer_is_a_dns_error_not_a_violation() {
        let resolver = GuardedResolver::wrap(blocking(None), Arc::new(Fixed(vec![])));
        let result = resolve(&resolver, "nothing.example.com").await;
        assert!(
            matches!(&result, Err(message) if message.starts_with("other: no addresses")),
            "{result:?}"
        );
    }

    #[test]
    fn debug_shows_the_policy_not_the_inner_resolver() {
        let resolver = GuardedResolver::new(blocking(None));
        let text = format!("{resolver:?}");
        assert!(text.contains("block_private_ips: true"), "{text}");
        assert!(text.contains("system"), "{text}");
        assert!(resolver.policy().blocks_private_ips());
    }
}
