//! Matching header and field names against the sensitive lists.
//!
//! Names are compared as "squashed" word sequences: split into words (punctuation,
//! camel-case humps, letter/digit changes), lower-cased and joined. A sensitive name
//! matches when it covers whole words of the candidate, or — when it has at least
//! [`SUFFIX_MIN`] letters — when it ends the candidate. Matching allocates nothing for
//! names up to [`STACK`] bytes, because it runs for every key of every logged body.

use std::fmt;

/// Sensitive names at least this long also match as a plain suffix.
const SUFFIX_MIN: usize = 5;

/// Candidate names up to this many bytes are squashed on the stack.
const STACK: usize = 64;

/// Buckets: one per lower-case ASCII letter and digit.
const BUCKETS: usize = 36;

/// A compiled list of sensitive names.
#[derive(Clone)]
pub(super) struct Names {
    /// Squashed names (lower-case ASCII letters and digits only), deduplicated.
    entries: Vec<Box<[u8]>>,
    /// Indexes into `entries`, by first byte.
    by_first: Vec<Vec<usize>>,
    /// Indexes of entries at least `SUFFIX_MIN` long, by last byte.
    long_by_last: Vec<Vec<usize>>,
}

fn bucket(byte: u8) -> Option<usize> {
    match byte {
        b'a'..=b'z' => Some(usize::from(byte - b'a')),
        b'0'..=b'9' => Some(26 + usize::from(byte - b'0')),
        _ => None,
    }
}

const SEP: u8 = 0;
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DIGIT: u8 = 3;

const CLASSES: [u8; 256] = {
    let mut t = [SEP; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_lowercase() {
            LOWER
        } else if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_digit() {
            DIGIT
        } else {
            SEP
        };
        i += 1;
    }
    t
};

fn class(byte: u8) -> u8 {
    CLASSES[usize::from(byte)]
}

/// Squashes `name` into `out` (which must hold `name.len()` bytes), calling
/// `word_start(position)` for each squashed position that begins a word. Returns the
/// squashed length.
fn squash(name: &[u8], out: &mut [u8], mut word_start: impl FnMut(usize)) -> usize {
    let mut len = 0;
    let mut prev = SEP;
    for (i, &c) in name.iter().enumerate() {
        let cls = class(c);
        if cls == SEP {
            prev = SEP;
            continue;
        }
        let boundary = match (prev, cls) {
            (SEP, _) | (LOWER, UPPER) => true,
            (UPPER, UPPER) => name.get(i + 1).is_some_and(|&n| class(n) == LOWER),
            (a, b) => (a == DIGIT) != (b == DIGIT),
        };
        if let Some(slot) = out.get_mut(len) {
            *slot = c.to_ascii_lowercase();
            if boundary {
                word_start(len);
            }
            len += 1;
        }
        prev = cls;
    }
    len
}

impl Names {
    /// Compiles a list of names; names with no letters or digits are ignored.
    pub(super) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut entries: Vec<Box<[u8]>> = Vec::new();
        for name in names {
            let mut out = vec![0u8; name.len()];
            let len = squash(name.as_bytes(), &mut out, |_| {});
            out.truncate(len);
            if len > 0 && !entries.iter().any(|e| **e == *out) {
                entries.push(out.into_boxed_slice());
            }
        }
        let mut by_first = vec![Vec::new(); BUCKETS];
        let mut long_by_last = vec![Vec::new(); BUCKETS];
        for (i, entry) in entries.iter().enumerate() {
            if let Some(b) = entry.first().copied().and_then(bucket) {
                by_first[b].push(i);
            }
            if entry.len() >= SUFFIX_MIN {
                if let Some(b) = entry.last().copied().and_then(bucket) {
                    long_by_last[b].push(i);
                }
            }
        }
        Self {
            entries,
            by_first,
            long_by_last,
        }
    }

    /// Whether `name` is sensitive.
    pub(super) fn matches(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        if bytes.len() <= STACK {
            // Word starts as bits; bit `len` marks the end of the last word.
            let mut out = [0u8; STACK];
            let mut starts = 0u128;
            let len = squash(bytes, &mut out, |p| starts |= 1 << p);
            starts |= 1 << len;
            self.matches_squashed(&out[..len], |p| starts & (1 << p) != 0)
        } else {
            let mut out = vec![0u8; bytes.len()];
            let mut starts = vec![false; bytes.len() + 1];
            let len = squash(bytes, &mut out, |p| starts[p] = true);
            starts[len] = true;
            self.matches_squashed(&out[..len], |p| starts[p])
        }
    }

    fn matches_squashed(&self, name: &[u8], is_start: impl Fn(usize) -> bool) -> bool {
        let Some(&last) = name.last() else {
            return false;
        };
        let n = name.len();
        for (p, &first) in name.iter().enumerate() {
            if !is_start(p) {
                continue;
            }
            let Some(b) = bucket(first) else { continue };
            for &e in &self.by_first[b] {
                let entry = &self.entries[e];
                let end = p + entry.len();
                if end <= n && is_start(end) && same(&name[p..end], entry) {
                    return true;
                }
            }
        }
        if let Some(b) = bucket(last) {
            for &e in &self.long_by_last[b] {
                let entry = &self.entries[e];
                if n >= entry.len() && same(&name[n - entry.len()..], entry) {
                    return true;
                }
            }
        }
        false
    }
}

/// Byte equality for short slices, inline rather than through `memcmp`.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl fmt::Debug for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| String::from_utf8_lossy(e)))
            .finish()
    }
}
