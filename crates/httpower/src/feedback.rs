//! Server rate-limit feedback: reading the limits a server advertises.
