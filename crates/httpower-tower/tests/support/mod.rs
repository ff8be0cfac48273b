//! Test stores shared by the integration tests of this crate.
#![allow(dead_code)]

use std::time::Duration;

use httpower_core::rate::{AnyAlgorithm, Decision};
use httpower_core::store::{
    Check, CompositeDecision, CompositeMode, LeaseId, SlotGrant, Store, StoreError, StoreFuture,
    StoreHealth,
};

/// Every call fails as an unreachable Redis would: a stand-in until the Redis store
/// exists, since nothing else here can be made unreachable on demand.
#[derive(Debug)]
pub(crate) struct DownStore;

fn down<'a, T>() -> StoreFuture<'a, T> {
    StoreFuture::ready(Err(StoreError::Unavailable {
        store: "down".to_owned(),
        reason: "connection refused (10.0.0.7:6379)".to_owned(),
    }))
}

impl Store for DownStore {
    fn name(&self) -> &str {
        "down"
    }
    fn check<'a>(
        &'a self,
        _: &'a str,
        _: &'a AnyAlgorithm,
        _: &'a str,
        _: u32,
    ) -> StoreFuture<'a, Decision> {
        down()
    }
    fn check_composite<'a>(
        &'a self,
        _: &'a [Check<'a>],
        _: CompositeMode,
    ) -> StoreFuture<'a, CompositeDecision> {
        down()
    }
    fn inspect<'a>(
        &'a self,
        _: &'a str,
        _: &'a AnyAlgorithm,
        _: &'a str,
    ) -> StoreFuture<'a, Decision> {
        down()
    }
    fn acquire_slot<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
        _: Duration,
    ) -> StoreFuture<'a, SlotGrant> {
        down()
    }
    fn release_slot<'a>(&'a self, _: &'a str, _: &'a str, _: LeaseId) -> StoreFuture<'a, ()> {
        down()
    }
    fn reset<'a>(&'a self, _: &'a str, _: Option<&'a str>) -> StoreFuture<'a, u64> {
        down()
    }
    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        down()
    }
}
