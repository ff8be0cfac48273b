//! Key names: `prefix:{limiter:identifier}`.
//!
//! The braces are a Redis Cluster hash tag: everything a decision touches for one
//! identifier lives in one slot, so one script can read and write it atomically. The
//! limiter name is escaped so that the first `:` inside the tag always ends it; the
//! identifier is kept verbatim (any bytes a caller uses as a key stay distinct).

use std::fmt::Write as _;

/// Builds key names for one store.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    prefix: String,
}

impl KeySpace {
    pub(crate) fn new(prefix: &str) -> KeySpace {
        KeySpace {
            prefix: prefix.to_owned(),
        }
    }

    /// The state key of `identifier` under `limiter`.
    pub(crate) fn key(&self, limiter: &str, identifier: &str) -> String {
        let mut key =
            String::with_capacity(self.prefix.len() + limiter.len() + identifier.len() + 4);
        key.push_str(&self.prefix);
        key.push_str(":{");
        escape_name(limiter, &mut key);
        key.push(':');
        key.push_str(identifier);
        key.push('}');
        key
    }

    /// A `SCAN MATCH` pattern for every key of `limiter`.
    pub(crate) fn pattern(&self, limiter: &str) -> String {
        let mut name = String::new();
        escape_name(limiter, &mut name);
        let mut pattern = String::with_capacity(self.prefix.len() + name.len() + 4);
        escape_glob(&self.prefix, &mut pattern);
        pattern.push_str(":{");
        escape_glob(&name, &mut pattern);
        pattern.push_str(":*");
        pattern
    }

    /// A `SCAN MATCH` pattern for every key of this store.
    pub(crate) fn all(&self) -> String {
        let mut pattern = String::new();
        escape_glob(&self.prefix, &mut pattern);
        pattern.push_str(":{*");
        pattern
    }

    /// Splits a key of this store back into (limiter, identifier), the limiter still
    /// escaped as stored.
    pub(crate) fn split<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let rest = rest.strip_suffix('}')?;
        rest.split_once(':')
    }
}

/// Percent-escapes the characters that would make a limiter name ambiguous in a key.
fn escape_name(name: &str, out: &mut String) {
    for c in name.chars() {
        match c {
            ':' | '{' | '}' | '%' => {
                let _ = write!(out, "%{:02X}", u32::from(c));
            }
            _ => out.push(c),
        }
    }
}

/// Escapes Redis glob metacharacters.
fn escape_glob(text: &str, out: &mut String) {
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn keys_carry_the_hash_tag_and_escape_the_limiter() {
        let keys = KeySpace::new("httpower");
        assert_eq!(
            keys.key("login_ip", "203.0.113.7"),
            "httpower:{login_ip:203.0.113.7}"
        );
        // Without escaping, ("a:b", "c") and ("a", "b:c") would share a key.
        assert_ne!(keys.key("a:b", "c"), keys.key("a", "b:c"));
        assert_eq!(keys.key("a:b", "c"), "httpower:{a%3Ab:c}");
        assert_eq!(keys.split(&keys.key("a:b", "x:y")), Some(("a%3Ab", "x:y")));
    }

    #[test]
    fn every_key_of_one_identifier_shares_a_slot() {
        let keys = KeySpace::new("p");
        let a = keys.key("api", "user-1");
        let tagged_elsewhere = "other:{api:user-1}";
        assert_eq!(Slot::for_key(&a), Slot::for_key(tagged_elsewhere));
    }

    #[test]
    fn patterns_escape_glob_characters() {
        let keys = KeySpace::new("app*");
        assert_eq!(keys.pattern("l[1]"), "app\\*:{l\\[1\\]:*");
        assert_eq!(keys.all(), "app\\*:{*");
    }
}
