#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{json, Value};

use super::text::luhn;
use super::*;

fn s() -> Sanitizer {
    Sanitizer::default()
}

// ---------------------------------------------------------------- names

#[test]
fn header_names_are_case_insensitive() {
    let s = s();
    for name in DEFAULT_HEADERS {
        for variant in [
            name.to_string(),
            name.to_uppercase(),
            name.split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-"),
        ] {
            assert!(s.is_sensitive_header(&variant), "{variant}");
            assert_eq!(s.header_value(&variant, "v4lue"), REDACTED, "{variant}");
        }
    }
}

#[test]
fn header_name_table() {
    let s = Sanitizer::builder()
        .extra_headers(["X-Tenant-Signature"])
        .build();
    let table = [
        ("Authorization", true),
        ("proxy-authorization", true),
        ("Set-Cookie", true),
        ("X-API-Key", true),
        ("X-Auth-Token", true),
        ("X-CSRF-Token", true),
        ("x-tenant-signature", true),
        ("X-Client-Secret", true),
        ("X-Amz-Security-Token", true),
        ("X-Upstream-Authorization", true),
        ("Content-Type", false),
        ("Accept", false),
        ("X-Request-Id", false),
        ("Idempotency-Key", false),
        ("X-Shipping-Zone", false),
        ("X-RateLimit-Remaining", false),
    ];
    for (name, sensitive) in table {
        assert_eq!(s.is_sensitive_header(name), sensitive, "{name}");
    }
    // The extra header does not leak into the defaults of another sanitizer.
    assert!(!Sanitizer::default().is_sensitive_header("x-tenant-signature"));
}

#[test]
fn field_name_table() {
    let s = Sanitizer::builder().extra_fields(["national_id"]).build();
    let table = [
        // Exact names, any case or separator style.
        ("password", true),
        ("PASSWORD", true),
        ("apiKey", true),
        ("api-key", true),
        ("api_key", true),
        ("APIKey", true),
        ("ApiKey", true),
        ("apikey", true),
        ("accessToken", true),
        ("refresh-token", true),
        ("clientSecret", true),
        ("creditCard", true),
        ("cardNumber", true),
        ("card[number]", true),
        ("user[password]", true),
        ("cvv", true),
        ("CVC", true),
        ("ssn", true),
        ("taxId", true),
        ("routing_number", true),
        // Whole words anywhere.
        ("stripe_api_key", true),
        ("x-client-secret", true),
        ("user_pin", true),
        ("pinCode", true),
        ("new_password", true),
        ("password_confirmation", true),
        ("password2", true),
        ("secret_key", true),
        ("bank.account_number", true),
        ("csrf_token", true),
        ("cookie", true),
        ("authorization", true),
        // Long names as a plain suffix.
        ("githubtoken", true),
        ("clientsecret", true),
        ("xapikey", true),
        ("mypassword", true),
        // User additions.
        ("nationalId", true),
        ("national-id", true),
        // Ordinary fields stay.
        ("shipping", false),
        ("spinner", false),
        ("opinion", false),
        ("pinned", false),
        ("email", false),
        ("name", false),
        ("id", false),
        ("account", false),
        ("number", false),
        ("prompt_tokens", false),
        ("max_tokens", false),
        ("tokens", false),
        ("page", false),
        ("description", false),
        ("", false),
        ("__", false),
    ];
    for (name, sensitive) in table {
        assert_eq!(s.is_sensitive_field(name), sensitive, "{name:?}");
    }
}

#[test]
fn long_names_match_too() {
    let s = s();
    let long = format!("{}_password", "x".repeat(200));
    assert!(s.is_sensitive_field(&long));
    assert!(!s.is_sensitive_field(&"shipping_".repeat(30)));
}

// ---------------------------------------------------------------- text

#[test]
fn luhn_table() {
    for (digits, valid) in [
        ("4111111111111111", true),
        ("4111111111111112", false),
        ("5555555555554444", true),
        ("378282246310005", true),
        ("6011111111111117", true),
        ("79927398713", true),
        ("79927398710", false),
    ] {
        assert_eq!(luhn(digits.as_bytes()), valid, "{digits}");
    }
}

#[test]
fn card_table() {
    let s = s();
    let table = [
        ("4111 1111 1111 1111", "[CARD]"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("4111111111111111", "[CARD]"),
        ("card 4111111111111111 ok", "card [CARD] ok"),
        ("amex 3782-822463-10005.", "amex [CARD]."),
        ("(5555555555554444)", "([CARD])"),
        ("card=4111111111111111&x=1", "card=[CARD]&x=1"),
        ("paid 20 4111 1111 1111 1111", "paid 20 [CARD]"),
        ("4111 1111 1111 1111 exp 12/29", "[CARD] exp 12/29"),
        // Fails Luhn: an order id stays.
        ("4111-1111-1111-1112", "4111-1111-1111-1112"),
        ("order 1234567890123456", "order 1234567890123456"),
        // Inside an unbroken run of 20+ digits: not a card.
        ("41111111111111110000", "41111111111111110000"),
        ("trace 00004111111111111111", "trace 00004111111111111111"),
        // Too short, or separators doubled.
        ("41111111111", "41111111111"),
        ("4111  1111  1111  1111", "4111  1111  1111  1111"),
        ("2024-01-15 10:00:00", "2024-01-15 10:00:00"),
        ("+1 555-123-4567", "+1 555-123-4567"),
    ];
    for (input, want) in table {
        assert_eq!(s.text(input), want, "{input}");
    }
}

#[test]
fn key_table() {
    let s = s();
    let table = [
        ("key sk_live_abc123def", "key sk_[REDACTED]"),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_[REDACTED]"),
        ("pk_live_abcdef12", "pk_[REDACTED]"),
        ("rk_live_abcdef12", "rk_[REDACTED]"),
        ("whsec_abcdef123456", "whsec_[REDACTED]"),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_[REDACTED]"),
        ("gho_abcdefgh", "gho_[REDACTED]"),
        ("ghu_abcdefgh ghs_abcdefgh", "ghu_[REDACTED] ghs_[REDACTED]"),
        ("github_pat_11ABCDEFG_xyz", "github_pat_[REDACTED]"),
        ("xoxb-123-456-abc", "xoxb-[REDACTED]"),
        ("xoxp-123456789", "xoxp-[REDACTED]"),
        ("aws AKIAIOSFODNN7EXAMPLE end", "aws AKIA[REDACTED] end"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x ok",
            "jwt [REDACTED] ok",
        ),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "[REDACTED]"),
        (
            "Authorization: Bearer abc.def-ghi==",
            "Authorization: Bearer [REDACTED]",
        ),
        ("bearer xyz, next", "bearer [REDACTED], next"),
        ("\"Bearer tok\"", "\"Bearer [REDACTED]\""),
        // Not keys.
        ("sk_test", "sk_test"),
        ("task_abcdefgh", "task_abcdefgh"),
        ("desk_abcdefgh", "desk_abcdefgh"),
        ("AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX"),
        ("AKIAiosfodnn7example", "AKIAiosfodnn7example"),
        ("eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9"),
        ("xoxz-123456789", "xoxz-123456789"),
        ("Bearer", "Bearer"),
        ("Bearers abc", "Bearers abc"),
        ("nothing to see", "nothing to see"),
        ("", ""),
    ];
    for (input, want) in table {
        assert_eq!(s.text(input), want, "{input}");
    }
}

#[test]
fn text_borrows_when_unchanged() {
    let s = s();
    assert!(matches!(s.text("order 42 shipped"), Cow::Borrowed(_)));
    assert!(matches!(s.text("4111111111111111"), Cow::Owned(_)));
}

#[test]
fn header_values_get_the_text_rule() {
    let s = s();
    assert_eq!(
        s.header_value("X-Note", "card 4111111111111111"),
        "card [CARD]"
    );
    assert_eq!(
        s.header_value("X-Forwarded-Auth", "Bearer abc"),
        "Bearer [REDACTED]"
    );
    assert_eq!(
        s.header_value("Accept", "application/json"),
        "application/json"
    );
}

#[test]
fn header_map() {
    let mut map = http::HeaderMap::new();
    map.insert("Authorization", "Bearer t0ken".parse().unwrap());
    map.insert("X-Api-Key", "k".parse().unwrap());
    map.append("Set-Cookie", "a=1".parse().unwrap());
    map.append("Set-Cookie", "b=2".parse().unwrap());
    map.insert("Content-Type", "application/json".parse().unwrap());
    map.insert(
        "X-Note",
        http::HeaderValue::from_bytes(b"card 4111111111111111 \xff").unwrap(),
    );
    let out = s().headers(&map);
    let get = |n: &str| {
        out.iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("authorization"), ["[REDACTED]"]);
    assert_eq!(get("x-api-key"), ["[REDACTED]"]);
    assert_eq!(get("set-cookie"), ["[REDACTED]", "[REDACTED]"]);
    assert_eq!(get("content-type"), ["application/json"]);
    assert_eq!(get("x-note"), ["card [CARD] \u{fffd}"]);
    assert_eq!(out.len(), 6);
}

// ---------------------------------------------------------------- urls

#[test]
fn url_table() {
    let s = s();
    let table = [
        (
            "https://bob:hunter2@api.example.com/v1/users",
            "https://api.example.com/v1/users",
        ),
        (
            "https://bob@api.example.com:8443/x",
            "https://api.example.com:8443/x",
        ),
        (
            "https://api.example.com/search?api_key=abc&page=2",
            "https://api.example.com/search?api_key=[REDACTED]&page=2",
        ),
        (
            "https://api.example.com/?apiKey=abc&ACCESS_TOKEN=x&q=shipping",
            "https://api.example.com/?apiKey=[REDACTED]&ACCESS_TOKEN=[REDACTED]&q=shipping",
        ),
        (
            "https://api.example.com/v1/keys/sk_live_abc123/",
            "https://api.example.com/v1/keys/sk_[REDACTED]/",
        ),
        (
            "https://hooks.slack.com/services/xoxb-1234-abcdef",
            "https://hooks.slack.com/services/xoxb-[REDACTED]",
        ),
        (
            "https://api.example.com/cards/4111111111111111?n=4111%201111%201111%201111",
            "https://api.example.com/cards/[CARD]?n=[CARD]",
        ),
        (
            "https://api.example.com/orders/1234567890123456",
            "https://api.example.com/orders/1234567890123456",
        ),
        (
            "https://api.example.com/cb#access_token=abc&state=1",
            "https://api.example.com/cb#access_token=[REDACTED]&state=1",
        ),
        (
            "https://api.example.com/x?user%5Bpassword%5D=pw&token=",
            "https://api.example.com/x?user%5Bpassword%5D=[REDACTED]&token=",
        ),
        (
            "https://api.example.com/q?note=hi+there%21&flag",
            "https://api.example.com/q?note=hi+there%21&flag",
        ),
        (
            "https://api.example.com/q?note=card+4111111111111111",
            "https://api.example.com/q?note=card%20[CARD]",
        ),
    ];
    for (input, want) in table {
        let url = ::url::Url::parse(input).unwrap();
        assert_eq!(s.url(&url), want, "{input}");
        assert_eq!(s.url_str(input), want, "{input}");
    }
}

#[test]
fn url_str_table() {
    let s = s();
    let table = [
        (
            "/v1/keys/sk_live_abc123?api_key=abc&page=2",
            "/v1/keys/sk_[REDACTED]?api_key=[REDACTED]&page=2",
        ),
        ("/orders?id=7", "/orders?id=7"),
        (
            "http://user:pw@[bad/x?token=t",
            "http://[bad/x?token=[REDACTED]",
        ),
        ("not a url 4111111111111111", "not a url [CARD]"),
        ("", ""),
    ];
    for (input, want) in table {
        assert_eq!(s.url_str(input), want, "{input}");
    }
}

// ---------------------------------------------------------------- bodies

#[test]
fn json_nested() {
    let body = json!({
        "user": {
            "email": "a@example.com",
            "password": "hunter2",
            "cards": [
                {"card_number": "4111111111111111", "cvv": 123, "label": "work"},
                {"note": "spare 5555 5555 5555 4444", "pin": {"value": "1234"}}
            ],
            "tokens": 3
        },
        "list": [[{"apiKey": null}, {"ok": true}]],
        "order": "1234567890123456",
        "shipping": "express"
    });
    let out = s().body(Some("application/json"), body.to_string().as_bytes());
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user"]["password"], "[REDACTED]");
    assert_eq!(v["user"]["email"], "a@example.com");
    assert_eq!(v["user"]["cards"][0]["card_number"], "[REDACTED]");
    assert_eq!(v["user"]["cards"][0]["cvv"], "[REDACTED]");
    assert_eq!(v["user"]["cards"][0]["label"], "work");
    assert_eq!(v["user"]["cards"][1]["note"], "spare [CARD]");
    assert_eq!(v["user"]["cards"][1]["pin"], "[REDACTED]");
    assert_eq!(v["user"]["tokens"], 3);
    assert_eq!(v["list"][0][0]["apiKey"], "[REDACTED]");
    assert_eq!(v["list"][0][1]["ok"], true);
    assert_eq!(v["order"], "1234567890123456");
    assert_eq!(v["shipping"], "express");
}

#[test]
fn json_keeps_formatting_and_escapes() {
    let s = s();
    let body = "{\n  \"a\" : [1, 2.5e3, -0, true, null],\n  \"secret\" : { \"x\": [1, {\"y\": 2}] } ,\n  \"b\": \"\\\"Bearer x\\\"\"\n}\n";
    assert_eq!(
        s.body(Some("application/json"), body.as_bytes()),
        "{\n  \"a\" : [1, 2.5e3, -0, true, null],\n  \"secret\" : \"[REDACTED]\" ,\n  \"b\": \"\\\"Bearer [REDACTED]\\\"\"\n}\n"
    );
    // Escaped key names are decoded before matching.
    let body = r#"{"pass\u0077ord":"x","n\u00e9":"4111 1111 1111 1111\n"}"#;
    assert_eq!(
        s.body(Some("application/json"), body.as_bytes()),
        r#"{"pass\u0077ord":"[REDACTED]","n\u00e9":"[CARD]\n"}"#
    );
}

#[test]
fn json_scalars_and_content_types() {
    let s = s();
    assert_eq!(
        s.body(Some("application/problem+json"), b"\"4111111111111111\""),
        "\"[CARD]\""
    );
    assert_eq!(
        s.body(None, b"[{\"token\":1}]"),
        "[{\"token\":\"[REDACTED]\"}]"
    );
    assert_eq!(s.body(Some("Application/JSON; charset=utf-8"), b"{}"), "{}");
    assert_eq!(s.body(Some("application/json"), b"[]"), "[]");
    assert_eq!(s.body(Some("application/json"), b" 42 "), " 42 ");
    // A JSON number is kept even when its digits would pass as a card in free text.
    assert_eq!(
        s.body(None, b"-1708328009310279941"),
        "-1708328009310279941"
    );
    assert_eq!(
        s.body(Some("text/plain"), b"-1708328009310279941"),
        "-[CARD]"
    );
    assert_eq!(
        s.body(Some("application/json"), br#"{"secret":{}}"#),
        r#"{"secret":"[REDACTED]"}"#
    );
}

#[test]
fn invalid_json_falls_back_to_text() {
    let s = s();
    let table: &[&[u8]] = &[
        b"{\"password\": \"x\", 4111111111111111",
        b"{\"a\":1}}",
        b"{\"a\" 1}",
        b"[1,]",
        b"{\"a\":01}",
        b"\"unterminated",
        b"{\"a\":\"\\x\"}",
        b"nul",
        b"",
        b"{{{{{{{{{{",
        b"\xff\xfe{\"password\":\"x\"}",
    ];
    for body in table {
        let out = s.body(Some("application/json"), body);
        assert!(!out.contains("4111111111111111"), "{out}");
    }
    assert_eq!(
        s.body(Some("application/json"), b"oops 4111111111111111"),
        "oops [CARD]"
    );
}

#[test]
fn deep_nesting_does_not_overflow() {
    let depth = 100_000;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let out = Sanitizer::builder()
        .max_body_bytes(usize::MAX)
        .build()
        .body(Some("application/json"), body.as_bytes());
    assert_eq!(out, body);
    let body = format!(
        "{}{{\"password\":1}}{}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    let out = Sanitizer::builder()
        .max_body_bytes(usize::MAX)
        .build()
        .body(None, body.as_bytes());
    assert!(out.contains("\"password\":\"[REDACTED]\""));
}

#[test]
fn form_bodies() {
    let s = s();
    let ct = Some("application/x-www-form-urlencoded");
    let table = [
        (
            "username=bob&password=hunter2&remember=1",
            "username=bob&password=[REDACTED]&remember=1",
        ),
        (
            "card%5Bnumber%5D=4242424242424242&card%5Bcvc%5D=123&amount=100",
            "card%5Bnumber%5D=[REDACTED]&card%5Bcvc%5D=[REDACTED]&amount=100",
        ),
        ("note=pay+4111+1111+1111+1111", "note=pay%20[CARD]"),
        (
            "grant_type=refresh_token&refresh_token=abc",
            "grant_type=refresh_token&refresh_token=[REDACTED]",
        ),
        ("shipping=fast&pin=1234", "shipping=fast&pin=[REDACTED]"),
        ("", ""),
    ];
    for (input, want) in table {
        assert_eq!(s.body(ct, input.as_bytes()), want, "{input}");
    }
    // Without a content type, a form-shaped body is read as a form.
    assert_eq!(
        s.body(None, b"user=bob&client_secret=x"),
        "user=bob&client_secret=[REDACTED]"
    );
}

#[test]
fn text_bodies() {
    let s = s();
    assert_eq!(
        s.body(
            Some("text/plain"),
            b"card 4111 1111 1111 1111, order 1234567890123456"
        ),
        "card [CARD], order 1234567890123456"
    );
    assert_eq!(
        s.body(None, b"hello sk_live_abcdef123 world"),
        "hello sk_[REDACTED] world"
    );
    // Not JSON despite the brace: text.
    assert_eq!(
        s.body(None, b"{ not json 4111111111111111"),
        "{ not json [CARD]"
    );
}

#[test]
fn truncation_on_char_boundary() {
    let s = Sanitizer::builder().max_body_bytes(10).build();
    // "é" is two bytes: 5 of them fill the limit exactly.
    assert_eq!(s.body(Some("text/plain"), "ééééé".as_bytes()), "ééééé");
    let out = s.body(Some("text/plain"), "éééééé".as_bytes());
    assert_eq!(out, "ééééé…[truncated 2 bytes]");
    // A cut inside a multi-byte character moves back to its start.
    let out = s.body(Some("text/plain"), "aéééééé".as_bytes());
    assert_eq!(out, "aéééé…[truncated 4 bytes]");
    let out = s.body(Some("text/plain"), "日本語のテキスト".as_bytes());
    assert_eq!(out, "日本語…[truncated 15 bytes]");
    // Redaction happens before the cut: the card never shows, even partly.
    let out = s.body(Some("text/plain"), b"x 4111111111111111 tail");
    assert_eq!(out, "x [CARD] t…[truncated 3 bytes]");
    let zero = Sanitizer::builder().max_body_bytes(0).build();
    assert_eq!(zero.body(None, b"abc"), "…[truncated 3 bytes]");
    assert_eq!(
        Sanitizer::default().max_body_bytes(),
        DEFAULT_MAX_BODY_BYTES
    );
}

#[test]
fn inputs_are_not_changed() {
    let s = s();
    let body = br#"{"password":"hunter2"}"#.to_vec();
    let before = body.clone();
    let _ = s.body(Some("application/json"), &body);
    assert_eq!(body, before);
    let url = ::url::Url::parse("https://u:p@x.example/?token=t").unwrap();
    let _ = s.url(&url);
    assert_eq!(url.as_str(), "https://u:p@x.example/?token=t");
}

#[test]
fn sanitizer_is_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug>() {}
    assert_send_sync::<Sanitizer>();
    let s = Sanitizer::builder().extra_fields(["foo"]).build();
    let t = s.clone();
    assert!(Arc::ptr_eq(&s.inner, &t.inner));
    assert!(format!("{s:?}").contains("foo"));
}

// ---------------------------------------------------------------- properties

const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "Password",
    "apiKey",
    "api-key",
    "API_KEY",
    "stripe_api_key",
    "x-client-secret",
    "accessToken",
    "refresh_token",
    "CVV",
    "pin",
    "ssn",
    "card[number]",
    "cookie",
];

/// A secret that no rule would redact by its shape, so only the key can hide it.
fn secret() -> impl Strategy<Value = String> {
    "[a-z]{6,12}".prop_map(|s| format!("PLANTED{s}"))
}

fn plain_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_owned()),
        Just("email".to_owned()),
        Just("shipping".to_owned()),
        Just("items".to_owned()),
        "[a-z]{1,8}".prop_filter("not sensitive", |k| !Sanitizer::default()
            .is_sensitive_field(k)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 é日]{0,12}".prop_map(Value::from),
    ]
}

/// Random JSON where some objects hold a planted secret under a sensitive key (as a
/// string, inside a nested object or inside an array).
fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            (
                prop::collection::vec((plain_key(), inner), 0..5),
                prop::option::of((prop::sample::select(SENSITIVE_KEYS), secret(), 0..3u8)),
            )
                .prop_map(|(entries, planted)| {
                    let mut map = serde_json::Map::new();
                    for (k, v) in entries {
                        map.insert(k, v);
                    }
                    if let Some((key, secret, shape)) = planted {
                        let value = match shape {
                            0 => Value::from(secret),
                            1 => json!({"value": secret}),
                            _ => json!([secret, 1]),
                        };
                        map.insert(key.to_owned(), value);
                    }
                    Value::Object(map)
                }),
        ]
    })
}

fn random_case(name: &str, flips: &[bool]) -> String {
    name.chars()
        .zip(flips.iter().cycle())
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    #[test]
    fn planted_json_secrets_never_appear(tree in tree(), pretty in any::<bool>()) {
        let body = if pretty {
            serde_json::to_string_pretty(&tree).unwrap()
        } else {
            tree.to_string()
        };
        let s = Sanitizer::builder().max_body_bytes(usize::MAX).build();
        for ct in [Some("application/json"), None] {
            let out = s.body(ct, body.as_bytes());
            prop_assert!(!out.contains("PLANTED"), "{}", out);
            // Still JSON, and only the planted values changed.
            let parsed: Value = serde_json::from_str(&out).unwrap();
            if !body.contains("PLANTED") {
                prop_assert_eq!(&parsed, &tree);
            }
        }
    }

    #[test]
    fn sensitive_headers_any_case(
        index in 0..DEFAULT_HEADERS.len(),
        flips in prop::collection::vec(any::<bool>(), 1..8),
        value in "[ -~]{0,40}",
    ) {
        let name = random_case(DEFAULT_HEADERS[index], &flips);
        prop_assert_eq!(Sanitizer::default().header_value(&name, &value), REDACTED);
        let mut map = http::HeaderMap::new();
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            map.insert(n, v);
            let out = Sanitizer::default().headers(&map);
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(out[0].1.as_str(), REDACTED);
        }
    }

    #[test]
    fn query_secrets_never_appear(
        key in prop::sample::select(SENSITIVE_KEYS),
        secret in secret(),
        page in 0..100u32,
    ) {
        let raw = format!("https://u:PLANTEDuser@api.example.com/x?page={page}&{key}={secret}#f");
        let out = Sanitizer::default().url_str(&raw);
        prop_assert!(!out.contains("PLANTED"), "{}", out);
        let form = format!("page={page}&{key}={secret}");
        let out = Sanitizer::default().body(Some("application/x-www-form-urlencoded"), form.as_bytes());
        prop_assert!(!out.contains("PLANTED"), "{}", out);
    }

    #[test]
    fn luhn_valid_cards_never_appear(
        prefix in "[a-z ]{0,6}",
        body in prop::collection::vec(0..10u8, 11..18),
        sep in prop::sample::select(vec!["", " ", "-"]),
        suffix in "[a-z ]{0,6}",
    ) {
        // Complete the digits with the Luhn check digit.
        let mut digits: Vec<u8> = body;
        let sum: u32 = digits.iter().rev().enumerate().map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 { let d2 = d * 2; if d2 > 9 { d2 - 9 } else { d2 } } else { d }
        }).sum();
        digits.push(u8::try_from((10 - sum % 10) % 10).unwrap());
        let card: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        prop_assert!(luhn(card.as_bytes()));
        let grouped = card.as_bytes().chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(sep);
        let text = format!("{prefix}{grouped}{suffix}");
        let out = Sanitizer::default().text(&text);
        prop_assert!(out.contains(CARD), "{}", out);
        prop_assert!(!out.contains(&grouped), "{}", out);
    }

    #[test]
    fn text_never_panics(text in "[ -~\\n\\t]{0,200}") {
        let s = Sanitizer::builder().max_body_bytes(64).build();
        let out = s.text(&text);
        prop_assert!(std::str::from_utf8(out.as_bytes()).is_ok());
        let _ = s.url_str(&text);
        for ct in [None, Some("application/json"), Some("application/x-www-form-urlencoded"), Some("text/plain")] {
            let body = s.body(ct, text.as_bytes());
            prop_assert!(body.len() <= 64 + "…[truncated  bytes]".len() + 20);
        }
        let _ = s.header_value("x-note", &text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let s = Sanitizer::builder().max_body_bytes(100).build();
        for ct in [None, Some("application/json"), Some("application/x-www-form-urlencoded")] {
            let out = s.body(ct, &bytes);
            prop_assert!(std::str::from_utf8(out.as_bytes()).is_ok());
        }
        let lossy = String::from_utf8_lossy(&bytes);
        let _ = s.text(&lossy);
        let _ = s.url_str(&lossy);
    }

    #[test]
    fn json_matches_serde_on_validity(text in "[\\[\\]{}\":,0-9a-z .eE+\\-\\\\]{0,40}") {
        let mut out = String::new();
        let ours = body::redact_json(&Sanitizer::default().inner.fields, &text, &mut out).is_ok();
        let serde = serde_json::from_str::<Value>(&text).is_ok();
        prop_assert_eq!(ours, serde, "{}", text);
    }
}
