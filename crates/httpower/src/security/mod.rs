//! Outbound request guards: allowed hosts, private addresses, redirect hops and header
//! injection.
//!
//! # Why
//!
//! A service that fetches URLs it did not write (webhooks, link previews, image imports,
//! a proxy) can be aimed at its own network: the cloud metadata service at
//! `169.254.169.254` hands out credentials, admin endpoints listen on `localhost`,
//! databases answer on `10.x`. This is server-side request forgery (SSRF), and checking
//! the URL string is not enough to stop it:
//!
//! * a public name can resolve to `127.0.0.1`, and can change its answer between a
//!   check and the connection (DNS rebinding);
//! * an allowed host can redirect anywhere;
//! * one address has many spellings: `2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`,
//!   `64:ff9b::7f00:1`.
//!
//! So the guard works where each of those can be seen:
//!
//! * [`HostPolicy::check_url`] before a request is sent: the scheme, the allowed-host
//!   list, and IP literals (URL parsing has already turned every spelling of an address
//!   into one);
//! * [`GuardedResolver`] when a name is resolved: every address is checked, and reqwest
//!   connects to exactly the addresses that passed, so no second DNS answer can slip in;
//! * [`redirect_policy`] on every redirect hop;
//! * [`is_private`] judges IPv6 addresses that embed an IPv4 address by that address.
//!
//! Everything is opt-in: an empty [`HostPolicy`] enforces nothing but the `http`/`https`
//! scheme. Exemptions ([`HostPolicyBuilder::exempt_cidr`]) let a test against a local
//! server, or a deliberate internal service, through.
//!
//! [`check_header`] is the other outbound guard: it refuses header names and values
//! that would inject headers or requests (CR, LF, NUL).
//!
//! When a guard refuses a request inside reqwest, the typed [`Violation`] is buried in
//! reqwest's error; [`find_violation`] digs it out.
//!
//! ```
//! use std::sync::Arc;
//! use httpower::security::{redirect_policy, GuardedResolver, HostPolicy, Violation};
//!
//! let policy = Arc::new(
//!     HostPolicy::builder()
//!         .allowed_hosts(["api.example.com", "*.stripe.com"])
//!         .block_private_ips(true)
//!         .build()?,
//! );
//! assert!(matches!(
//!     policy.check_url(&"http://169.254.169.254/latest/meta-data".parse()?),
//!     Err(Violation::HostNotAllowed { .. }),
//! ));
//!
//! let client = reqwest::Client::builder()
//!     .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy))))
//!     .redirect(redirect_policy(policy, 10))
//!     .build()?;
//! # drop(client);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod header;
mod ip;
mod policy;
mod redirect;
mod resolver;

use std::error::Error;
use std::net::IpAddr;

pub use header::{check_header, HeaderProblem, InvalidHeaderError};
pub use ip::is_private;
pub use policy::{HostPolicy, HostPolicyBuilder, InvalidHostPattern};
pub use redirect::redirect_policy;
pub use resolver::GuardedResolver;

/// Why an outbound request was refused by a [`HostPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The URL's scheme is not `http` or `https`.
    #[error("URL scheme `{scheme}` is not allowed: only http and https are")]
    SchemeNotAllowed {
        /// The scheme found.
        scheme: String,
    },
    /// The URL has no host.
    #[error("URL has no host")]
    MissingHost,
    /// The host matches no pattern of the allowed hosts.
    #[error("host `{host}` is not in the allowed hosts")]
    HostNotAllowed {
        /// The host, normalized (lowercase, `xn--` form, IPv6 in brackets).
        host: String,
    },
    /// The host is, or resolves only to, private or reserved addresses, and those are
    /// blocked.
    #[error(
        "host `{host}` resolves to {ip}, a private or reserved address, and private \
         addresses are blocked"
    )]
    BlockedPrivateIp {
        /// The host as requested.
        host: String,
        /// The first refused address.
        ip: IpAddr,
    },
    /// A redirect chain went past the configured maximum.
    #[error("stopped after {max} redirects")]
    TooManyRedirects {
        /// The maximum number of redirects followed.
        max: usize,
    },
}

impl Violation {
    /// A stable, machine-readable name for the reason (`host_not_allowed`,
    /// `blocked_private_ip`, ...), for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Violation::SchemeNotAllowed { .. } => "scheme_not_allowed",
            Violation::MissingHost => "missing_host",
            Violation::HostNotAllowed { .. } => "host_not_allowed",
            Violation::BlockedPrivateIp { .. } => "blocked_private_ip",
            Violation::TooManyRedirects { .. } => "too_many_redirects",
        }
    }
}

/// Finds a [`Violation`] in an error or anywhere in its `source()` chain.
///
/// A guard that refuses a request inside reqwest (the resolver, the redirect policy)
/// can only return a boxed error, which reqwest wraps in its own; this recovers the
/// typed reason so the client can report `HostNotAllowed` or `BlockedPrivateIp` rather
/// than a generic connection error.
pub fn find_violation<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a Violation> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(violation) = err.downcast_ref::<Violation>() {
            return Some(violation);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[derive(Debug)]
    struct Wrapper(Box<dyn Error + Send + Sync>);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn find_violation_walks_the_chain() {
        let violation = Violation::HostNotAllowed {
            host: "evil.example".to_owned(),
        };
        let direct: &(dyn Error + 'static) = &violation;
        assert_eq!(find_violation(direct), Some(&violation));

        let nested = Wrapper(Box::new(Wrapper(Box::new(violation.clone()))));
        assert_eq!(find_violation(&nested), Some(&violation));

        let unrelated = Wrapper(Box::new(std::io::Error::other("boom")));
        assert_eq!(find_violation(&unrelated), None);
    }

    #[test]
    fn messages_and_names() {
        let cases = [
            (
                Violation::SchemeNotAllowed {
                    scheme: "file".to_owned(),
                },
                "scheme_not_allowed",
                "URL scheme `file` is not allowed: only http and https are",
            ),
            (Violation::MissingHost, "missing_host", "URL has no host"),
            (
                Violation::HostNotAllowed {
                    host: "evil.example".to_owned(),
                },
                "host_not_allowed",
                "host `evil.example` is not in the allowed hosts",
            ),
            (
                Violation::BlockedPrivateIp {
                    host: "localhost".to_owned(),
                    ip: IpAddr::from([127, 0, 0, 1]),
                },
                "blocked_private_ip",
                "host `localhost` resolves to 127.0.0.1, a private or reserved address, \
                 and private addresses are blocked",
            ),
            (
                Violation::TooManyRedirects { max: 5 },
                "too_many_redirects",
                "stopped after 5 redirects",
            ),
        ];
        for (violation, name, message) in cases {
            assert_eq!(violation.name(), name);
            assert_eq!(violation.to_string(), message);
        }
    }
}
