//! Configuration files (`httpower.toml`).
