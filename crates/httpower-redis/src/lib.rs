//! The Redis store for httpower limiters.
