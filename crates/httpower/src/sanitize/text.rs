//! The free-text rule: card numbers (Luhn-checked), key-shaped tokens and bearer
//! credentials.
//!
//! One left-to-right pass over the bytes, no regular expressions: digits start a card
//! candidate, and the first byte of a "key token" (a run of `A-Z a-z 0-9 _ -`) is
//! checked against the known prefixes. Everything it looks at is ASCII, so every
//! position it reports is a character boundary.

use std::borrow::Cow;

use super::{CARD, REDACTED};

/// Fewest digits in a card number.
const CARD_MIN: usize = 12;
/// Most digits in a card number.
const CARD_MAX: usize = 19;
/// Fewest key characters after a prefix like `sk_` for the token to count as a key.
const KEY_TAIL_MIN: usize = 6;
/// Fewest characters in a JWT's first part (`eyJ` included).
const JWT_HEAD_MIN: usize = 10;

/// Prefixes of API keys and tokens, kept in the output so a reader still knows what
/// kind of credential was there.
const KEY_PREFIXES: &[&[u8]] = &[
    b"sk_",
    b"pk_",
    b"rk_",
    b"whsec_",
    b"ghp_",
    b"gho_",
    b"ghu_",
    b"ghs_",
    b"github_pat_",
];

/// What a redacted span held, which decides its replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hit {
    /// A card number: replaced by [`CARD`].
    Card,
    /// A secret: the first `keep` bytes (its public prefix) stay, the rest becomes
    /// [`REDACTED`].
    Secret {
        /// Bytes of prefix kept.
        keep: usize,
    },
}

/// Appends the replacement for the span of `s` starting at `start`.
pub(super) fn push_replacement(out: &mut String, s: &str, start: usize, hit: Hit) {
    match hit {
        Hit::Card => out.push_str(CARD),
        Hit::Secret { keep } => {
            out.push_str(s.get(start..start + keep).unwrap_or(""));
            out.push_str(REDACTED);
        }
    }
}

/// The free-text rule as a new string, or the input when nothing matched.
pub(super) fn redact(s: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut mark = 0;
    scan(s, |start, end, hit| {
        let out = out.get_or_insert_with(|| String::with_capacity(s.len()));
        out.push_str(s.get(mark..start).unwrap_or(""));
        push_replacement(out, s, start, hit);
        mark = end;
    });
    match out {
        None => Cow::Borrowed(s),
        Some(mut out) => {
            out.push_str(s.get(mark..).unwrap_or(""));
            Cow::Owned(out)
        }
    }
}

/// Appends `s` with the free-text rule applied.
pub(super) fn redact_into(s: &str, out: &mut String) {
    let mut mark = 0;
    scan(s, |start, end, hit| {
        out.push_str(s.get(mark..start).unwrap_or(""));
        push_replacement(out, s, start, hit);
        mark = end;
    });
    out.push_str(s.get(mark..).unwrap_or(""));
}

/// Byte classes for the scanner, one table lookup per byte.
const DIGIT: u8 = 1;
/// `A-Z a-z 0-9 _ -`: the characters of a key token.
const KEY: u8 = 2;
/// First letters of something to check: key prefixes, `AKIA`, `eyJ`, `Bearer`.
const STARTER: u8 = 4;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_digit() {
            t[i] = DIGIT | KEY;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'-' {
            t[i] = KEY;
        }
        i += 1;
    }
    let starters = b"sprwgxAebB";
    let mut j = 0;
    while j < starters.len() {
        t[starters[j] as usize] |= STARTER;
        j += 1;
    }
    t
};

fn is_key_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & KEY != 0
}

/// Characters of an RFC 6750 `b64token`, before its trailing `=` padding.
fn is_b64token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

fn key_run_end(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() && is_key_byte(b[i]) {
        i += 1;
    }
    i
}

/// Calls `hit(start, end, kind)` for every span of `s` to redact, in order and without
/// overlaps.
pub(super) fn scan(s: &str, mut hit: impl FnMut(usize, usize, Hit)) {
    let b = s.as_bytes();
    let mut i = 0;
    // Whether the byte before `i` is a key byte (so `i` is inside a token).
    let mut in_token = false;
    while i < b.len() {
        let class = CLASSES[usize::from(b[i])];
        if class & DIGIT != 0 {
            i = card_run(b, i, &mut hit);
            in_token = true;
            continue;
        }
        if class & STARTER != 0 && !in_token {
            if let Some((end, keep)) = secret_at(b, i) {
                hit(i, end, Hit::Secret { keep });
                i = end;
                in_token = end > 0 && is_key_byte(b[end - 1]);
                continue;
            }
            if let Some((start, end)) = bearer_at(b, i) {
                hit(start, end, Hit::Secret { keep: 0 });
                i = end;
                in_token = true;
                continue;
            }
        }
        in_token = class & KEY != 0;
        i += 1;
    }
}

/// A key-shaped token starting at `i` (which starts a token): its end and the length
/// of the prefix to keep.
fn secret_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = &b[i..];
    match rest.first()? {
        b's' | b'p' | b'r' | b'w' | b'g' => {
            let prefix = KEY_PREFIXES.iter().find(|p| rest.starts_with(p))?;
            let end = key_run_end(b, i + prefix.len());
            (end - i >= prefix.len() + KEY_TAIL_MIN).then_some((end, prefix.len()))
        }
        b'x' => {
            let slack = rest.len() >= 5 + KEY_TAIL_MIN
                && rest.starts_with(b"xox")
                && matches!(rest[3], b'a' | b'b' | b'p' | b'r' | b's')
                && rest[4] == b'-';
            if !slack {
                return None;
            }
            let end = key_run_end(b, i + 5);
            (end - i >= 5 + KEY_TAIL_MIN).then_some((end, 5))
        }
        b'A' => {
            let aws = rest.len() >= 20
                && rest.starts_with(b"AKIA")
                && rest[4..20]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && !rest.get(20).is_some_and(|&c| is_key_byte(c));
            aws.then_some((i + 20, 4))
        }
        b'e' if rest.starts_with(b"eyJ") => {
            jwt_end(b, i, key_run_end(b, i + 3)).map(|end| (end, 0))
        }
        _ => None,
    }
}

/// The end of a JWT (`eyJ<head>.<payload>.<signature>`) whose first part is
/// `b[i..head_end]`.
fn jwt_end(b: &[u8], i: usize, head_end: usize) -> Option<usize> {
    if head_end - i < JWT_HEAD_MIN {
        return None;
    }
    if b.get(head_end) != Some(&b'.') {
        return None;
    }
    let payload_end = key_run_end(b, head_end + 1);
    if payload_end == head_end + 1 || b.get(payload_end) != Some(&b'.') {
        return None;
    }
    // The signature may be empty (unsecured JWTs end with the dot).
    Some(key_run_end(b, payload_end + 1))
}

/// `Bearer <credentials>` with the word starting at `i`: the span of the credentials.
fn bearer_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let word = b.get(i..i + 6)?;
    if !word.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let mut j = i + 6;
    if j < b.len() && is_key_byte(b[j]) {
        return None;
    }
    let spaces = j;
    while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
        j += 1;
    }
    if j == spaces {
        return None;
    }
    let start = j;
    while j < b.len() && is_b64token_byte(b[j]) {
        j += 1;
    }
    if j == start {
        return None;
    }
    while j < b.len() && b[j] == b'=' {
        j += 1;
    }
    Some((start, j))
}

/// Handles the digit run starting at `start` (the byte before it is not a digit):
/// reports the card numbers in it and returns where it ends.
fn card_run(b: &[u8], start: usize, hit: &mut impl FnMut(usize, usize, Hit)) -> usize {
    // First pass: the run's extent, digit count and group count, without storing.
    let mut i = start;
    let mut digits = 0;
    let mut groups = 0;
    loop {
        let group_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - group_start;
        groups += 1;
        let separated =
            i + 1 < b.len() && (b[i] == b' ' || b[i] == b'-') && b[i + 1].is_ascii_digit();
        if !separated {
            break;
        }
        i += 1;
    }
    let end = i;
    if digits < CARD_MIN {
        return end;
    }
    if groups == 1 {
        if digits <= CARD_MAX && luhn(&b[start..end]) {
            hit(start, end, Hit::Card);
        }
        return end;
    }
    // Several groups: the card may be only part of the run ("paid 20 4111 1111 …").
    // Take, from the leftmost group on, the longest group span of 12–19 digits that
    // passes Luhn.
    let mut spans = Vec::with_capacity(groups);
    let mut i = start;
    while i < end {
        let s = i;
        while i < end && b[i].is_ascii_digit() {
            i += 1;
        }
        spans.push((s, i));
        i += 1;
    }
    let mut a = 0;
    while a < spans.len() {
        let mut count = 0;
        let mut best = None;
        for (j, &(s, e)) in spans.iter().enumerate().skip(a) {
            count += e - s;
            if count > CARD_MAX {
                break;
            }
            if count >= CARD_MIN && luhn(&b[spans[a].0..e]) {
                best = Some(j);
            }
        }
        match best {
            Some(j) => {
                hit(spans[a].0, spans[j].1, Hit::Card);
                a = j + 1;
            }
            None => a += 1,
        }
    }
    end
}

/// The Luhn check over the digits of `b` (other bytes are skipped).
pub(super) fn luhn(b: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &c in b.iter().rev() {
        if !c.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(c - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum % 10 == 0
}
