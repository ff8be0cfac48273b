//! Outbound request guards: allowed hosts and private addresses.
