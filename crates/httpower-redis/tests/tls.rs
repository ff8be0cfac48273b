//! `rediss://`: a Redis server with TLS on loopback and a private CA (rcgen). Refused
//! by default (the CA is unknown), decisions flow once the CA is trusted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use httpower_core::rate::{AnyAlgorithm, Gcra, Quota};
use httpower_core::store::{Store, StoreError};
use httpower_redis::RedisStore;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Writes a CA and a server certificate for 127.0.0.1 into a fresh directory.
fn certificates() -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("httpower-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "httpower redis test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    (dir, ca.pem())
}

#[tokio::test]
async fn rediss_needs_the_servers_ca_and_then_decides() {
    let (dir, ca_pem) = certificates();
    let tls_port = support::free_port();
    let path = |name: &str| dir.join(name).display().to_string();
    let server = support::RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.pem"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let gcra: AnyAlgorithm = Gcra::new(Quota::new(5, Duration::from_secs(1), 5).unwrap()).into();

    let untrusted = RedisStore::builder(url.as_str())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = untrusted.check("tls", &gcra, "k", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");

    let trusted = RedisStore::builder(url.as_str())
        .tls_ca_certificate(ca_pem.into_bytes())
        .build()
        .unwrap();
    let first = trusted.check("tls", &gcra, "k", 1).await.unwrap();
    assert!(first.allowed);
    assert_eq!(first.remaining, 4);
    assert!(trusted.health().await.unwrap().reachable);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
