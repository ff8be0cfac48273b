//! A resilient HTTP client built on the `httpower-core` policies.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod blocking;
mod client;
pub mod config;
mod dedup;
mod error;
pub mod events;
mod execute;
pub mod feedback;
mod profile;
mod request;
mod response;
pub mod security;
pub mod testing;
mod transport;

pub use client::{Breakers, Client, ClientBuilder, DEFAULT_RETRY_STATUSES};
pub use error::{Error, Reason, TimeoutPhase};
pub use events::{ClientEvent, RequestInfo};
pub use request::RequestBuilder;
pub use response::Response;

pub use httpower_core as core;
