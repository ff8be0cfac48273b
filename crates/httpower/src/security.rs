//! Outbound request guards: allowed hosts and private addresses.
//! (placeholder until the guard module lands)
#![allow(missing_docs, dead_code)]
use std::net::IpAddr;
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    #[error("host not allowed: {host}")]
    HostNotAllowed { host: String },
    #[error("blocked {host} {ip}")]
    BlockedPrivateIp { host: String, ip: IpAddr },
}
pub fn find_violation<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Violation> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(v) = e.downcast_ref::<Violation>() {
            return Some(v);
        }
        next = e.source();
    }
    None
}
#[derive(Debug, Default)]
pub struct HostPolicy {
    pub allowed: Vec<String>,
    pub block_private: bool,
    pub exempt: Vec<ipnet::IpNet>,
}
impl HostPolicy {
    pub fn check_url(&self, _url: &url::Url) -> Result<(), Violation> {
        Ok(())
    }
    pub fn is_active(&self) -> bool {
        !self.allowed.is_empty() || self.block_private
    }
}
#[derive(Debug, Default)]
pub struct HostPolicyBuilder {
    p: HostPolicy,
}
#[derive(Debug, thiserror::Error)]
#[error("bad pattern")]
pub struct PatternError;
impl HostPolicyBuilder {
    pub fn allowed_hosts<'a>(mut self, h: impl IntoIterator<Item = &'a str>) -> Self {
        self.p.allowed = h.into_iter().map(str::to_owned).collect();
        self
    }
    pub fn block_private_ips(mut self, b: bool) -> Self {
        self.p.block_private = b;
        self
    }
    pub fn exempt_cidr(mut self, n: ipnet::IpNet) -> Self {
        self.p.exempt.push(n);
        self
    }
    pub fn build(self) -> Result<HostPolicy, PatternError> {
        Ok(self.p)
    }
}
impl HostPolicy {
    pub fn builder() -> HostPolicyBuilder {
        HostPolicyBuilder::default()
    }
}
#[derive(Debug)]
pub struct GuardedResolver;
impl GuardedResolver {
    pub fn new(_p: std::sync::Arc<HostPolicy>) -> Self {
        GuardedResolver
    }
}
impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async { Err("x".into()) })
    }
}
pub fn redirect_policy(_p: std::sync::Arc<HostPolicy>, _max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::none()
}
#[derive(Debug, thiserror::Error)]
#[error("invalid header")]
pub struct InvalidHeaderError;
pub fn check_header(_name: &str, value: &[u8]) -> Result<(), InvalidHeaderError> {
    if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        Err(InvalidHeaderError)
    } else {
        Ok(())
    }
}
