//! The `(limiter, identifier)` pair a store keys its state by, and its borrowed form
//! for lookups that allocate nothing (the owned pair is made only when a key is new).

use std::hash::{Hash, Hasher};

use hashbrown::Equivalent;

/// A `(limiter, identifier)` pair as held in a map.
pub type LimiterKey = (Box<str>, Box<str>);

/// A `(limiter, identifier)` pair looked up without allocating: hashes and compares
/// like the owned [`LimiterKey`] in a `hashbrown` map.
#[derive(Debug, Clone, Copy)]
pub struct LimiterKeyRef<'a>(pub &'a str, pub &'a str);

impl LimiterKeyRef<'_> {
    /// The owned pair.
    pub fn to_owned_key(&self) -> LimiterKey {
        (self.0.into(), self.1.into())
    }
}

impl Hash for LimiterKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must match the hash of the owned `(Box<str>, Box<str>)` tuple.
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<LimiterKey> for LimiterKeyRef<'_> {
    fn equivalent(&self, key: &LimiterKey) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1
    }
}
