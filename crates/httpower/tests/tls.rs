//! TLS against a local HTTPS server whose certificate comes from a CA made for the test
//! (rcgen): verification is on by default, an extra root makes it pass, and turning
//! it off needs the loudly named option.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use httpower::core::clock::ManualClock;
use httpower::{Client, Reason};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use support::{bounded, drive, test_client, Reply, Server};
use tokio_rustls::rustls::crypto::aws_lc_rs::default_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A test CA, and a server certificate it signed for `names`.
struct Pki {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

fn pki(names: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "httpower test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, names[0]);
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
    let key = PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into();
    let provider = Arc::new(default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

async fn https_server(names: &[&str]) -> (Server, String) {
    let Pki { ca_pem, acceptor } = pki(names);
    let server = Server::start_tls(acceptor).await;
    server.script("/secure", [Reply::ok("over tls")]);
    (server, ca_pem)
}

#[tokio::test]
async fn an_unknown_ca_is_refused_by_default() {
    let (server, _ca) = https_server(&["localhost", "127.0.0.1"]).await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();

    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/secure")).send(),
    )
    .await
    .unwrap_err();
    assert!(err.attempts() >= 1);
    assert_eq!(
        server.total_hits(),
        0,
        "no request after a failed handshake"
    );
}

#[tokio::test]
async fn an_unknown_ca_fails_with_reason_tls_and_is_not_retried() {
    let (server, _ca) = https_server(&["localhost", "127.0.0.1"]).await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.build().unwrap();

    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/secure")).send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "tls");
    assert_eq!(err.reason(), &Reason::Tls);
    assert_eq!(err.attempts(), 1, "a certificate failure is not retried");
    assert!(events.retries().is_empty());
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn a_trusted_extra_root_makes_verification_pass() {
    let (server, ca_pem) = https_server(&["localhost", "127.0.0.1"]).await;
    let client = Client::builder()
        .add_root_certificate_pem(ca_pem.clone())
        .build()
        .unwrap();

    // By IP address (IP SAN) ...
    let response = bounded(client.get(&server.url("/secure")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "over tls");
    // ... and by name (DNS SAN).
    let by_name = format!("https://localhost:{}/secure", server.port());
    let response = bounded(client.get(&by_name).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/secure"), 2);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_even_from_a_trusted_ca() {
    let (server, ca_pem) = https_server(&["other.example"]).await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.add_root_certificate_pem(ca_pem).build().unwrap();
    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/secure")).send(),
    )
    .await
    .unwrap_err();
    assert!(err.attempts() >= 1);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_with_reason_tls() {
    let (server, ca_pem) = https_server(&["other.example"]).await;
    let clock = ManualClock::new();
    let (builder, mut events) = test_client(&clock);
    let client = builder.add_root_certificate_pem(ca_pem).build().unwrap();
    let err = drive(
        &clock,
        &mut events,
        client.get(&server.url("/secure")).send(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), &Reason::Tls);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn accepting_invalid_certificates_must_be_spelled_out() {
    let (server, _ca) = https_server(&["other.example"]).await;
    let client = Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let response = bounded(client.get(&server.url("/secure")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/secure"), 1);
}

#[tokio::test]
async fn a_malformed_root_certificate_is_a_build_error() {
    let err = Client::builder()
        .add_root_certificate_pem(
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .build()
        .unwrap_err();
    assert_eq!(err.reason(), &Reason::Tls);
}
