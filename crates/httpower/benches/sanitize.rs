//! Sanitizer throughput: a realistic 4 KB JSON body (and the same bytes as plain text),
//! a URL with secrets in it, and a typical header map; plus a `serde_json::Value`
//! round trip of the same body as the reference the streaming JSON redactor is
//! measured against.
//!
//! `cargo bench -p httpower --bench sanitize`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use httpower::sanitize::Sanitizer;

/// About 4 KB of API response: users with emails and nested addresses and orders, a
/// few secrets under sensitive keys and card numbers in free text.
fn json_4k() -> String {
    let mut users = Vec::new();
    for i in 0.. {
        let mut user = serde_json::json!({
            "id": 1000 + i,
            "email": format!("user{i}@example.com"),
            "name": format!("User Number {i}"),
            "createdAt": "2024-05-01T12:00:00Z",
            "address": {"street": "1 Main St", "city": "Springfield", "zip": "12345"},
            "orders": [
                {"orderId": format!("ORD-20240501-{i:04}"), "total": 42.5, "items": [1, 2, 3]},
                {"orderId": format!("ORD-20240502-{i:04}"), "total": 7.0, "items": []}
            ],
            "tags": ["vip", "beta"],
        });
        if i % 3 == 0 {
            user["password"] = serde_json::json!("hunter2-correct-horse");
            user["payment"] = serde_json::json!({
                "card_number": "4111 1111 1111 1111",
                "cvv": "123",
                "note": "backup card 5555-5555-5555-4444 on file"
            });
        }
        if i % 4 == 1 {
            user["apiKey"] = serde_json::json!("sk_live_51HxYzAbCdEfGhIjKlMnOp");
        }
        users.push(user);
        // Stop once the body (with its envelope) reaches 4 KB.
        if serde_json::to_string(&users).unwrap().len() >= 4096 - 100 {
            break;
        }
    }
    let per_page = users.len();
    let body = serde_json::json!({
        "data": users,
        "meta": {"page": 1, "perPage": per_page, "total": 481, "requestId": "req_0123456789abcdef"},
    });
    let body = serde_json::to_string(&body).unwrap();
    assert!((4096..4096 + 512).contains(&body.len()), "{}", body.len());
    body
}

fn bench(c: &mut Criterion) {
    let sanitizer = Sanitizer::default();
    let mut group = c.benchmark_group("sanitize");

    let body = json_4k();
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("json_4k", |b| {
        b.iter(|| {
            sanitizer.body(
                black_box(Some("application/json")),
                black_box(body.as_bytes()),
            )
        });
    });
    // Reference for the design choice: parsing into a `serde_json::Value` and printing
    // it again, before any redaction, costs more than the whole streaming redactor.
    group.bench_function("serde_value_roundtrip_4k", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(body.as_bytes())).unwrap();
            serde_json::to_string(&v).unwrap()
        });
    });
    // The same body with its secrets removed, as plain text (only the card rule).
    group.bench_function("text_4k", |b| {
        b.iter(|| sanitizer.body(black_box(Some("text/plain")), black_box(body.as_bytes())));
    });

    let url = url::Url::parse(
        "https://bob:hunter2@api.example.com/v1/customers/cus_123/keys/sk_live_abc123def456?api_key=abc&page=2&expand=data.card&q=4111%201111%201111%201111",
    )
    .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("url", |b| b.iter(|| sanitizer.url(black_box(&url))));

    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        ),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("user-agent", "httpower/0.1"),
        ("x-request-id", "req_0123456789abcdef"),
        ("cookie", "session=abc; theme=dark"),
        ("x-api-key", "k_abcdef"),
        ("idempotency-key", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("accept-encoding", "gzip, br"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    group.bench_function("headers", |b| {
        b.iter(|| sanitizer.headers(black_box(&headers)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
