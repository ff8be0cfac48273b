//! Dotted key paths (`clients.stripe.retry.max_retries`) for error messages.

/// `path.key`, quoting `key` when it is not a bare TOML key.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(join("", "clients"), "clients");
        assert_eq!(join("clients", "stripe"), "clients.stripe");
        assert_eq!(join("h", "X-Api-Key"), "h.X-Api-Key");
        assert_eq!(join("h", "a.b"), "h.\"a.b\"");
        assert_eq!(index("server.routes", 2), "server.routes[2]");
    }
}
