//! Request deduplication: identical requests in flight at the same time share one
//! upstream call.
//!
//! A page that renders ten widgets asking for the same user, or a cache stampede after
//! an expiry, sends the same `GET` many times at once. With dedup on, the first request
//! (the owner) goes upstream and the others wait for its result: the same status,
//! headers and body, or the same error. Identity is the method, the URL, the body and
//! every header but the correlation id, so two callers with different credentials never
//! share a response. Nothing is kept once the call completes: a request that arrives
//! afterwards makes its own call.
//!
//! The shared call is driven by whoever waits for it, so the owner giving up (its task
//! cancelled) does not strand the others; the entry leaves the table when the call
//! completes or when the last participant is gone.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{FutureExt, Shared};
use http::{HeaderName, Method};
use httpower_core::timeout::{timeout_at_after, TimeoutPhase as CoreTimeoutPhase};
use parking_lot::Mutex;

use crate::client::{Client, ClientInner};
use crate::error::{Error, Reason, TimeoutPhase};
use crate::events::{ClientEvent, RequestInfo};
use crate::execute::run_logical;
use crate::request::Prepared;
use crate::response::Response;

/// What makes two requests the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    method: Method,
    url: String,
    body: Bytes,
    headers: Vec<(String, Vec<u8>)>,
}

impl Key {
    fn of(request: &Prepared, correlation_header: &HeaderName) -> Self {
        let mut headers: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .filter(|(name, _)| *name != correlation_header)
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        headers.sort();
        Key {
            method: request.method.clone(),
            url: request.url.as_str().to_owned(),
            body: request.body.bytes().cloned().unwrap_or_default(),
            headers,
        }
    }
}

type Outcome = Result<Arc<Response>, Error>;
type Flight = Shared<Pin<Box<dyn Future<Output = Outcome> + Send>>>;

/// The calls in flight of one client.
#[derive(Default)]
pub(crate) struct InFlight {
    flights: Arc<Mutex<HashMap<Key, Flight>>>,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("len", &self.flights.lock().len())
            .finish()
    }
}

impl InFlight {
    /// Calls in flight now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.flights.lock().len()
    }
}

/// Removes the entry when the last participant leaves before the call completed.
struct Participant<'a> {
    flights: &'a Mutex<HashMap<Key, Flight>>,
    key: &'a Key,
    flight: Option<Flight>,
}

impl Drop for Participant<'_> {
    fn drop(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        let mut flights = self.flights.lock();
        drop(flight);
        // Only the table's own handle is left: nobody will drive the call.
        if flights
            .get(self.key)
            .is_some_and(|entry| entry.strong_count() == Some(1))
        {
            flights.remove(self.key);
        }
    }
}

/// Runs `request` deduplicated.
pub(crate) async fn run(
    client: &Client,
    request: Prepared,
    info: RequestInfo,
) -> Result<Response, Error> {
    let inner: &ClientInner = &client.inner;
    let key = Key::of(&request, &inner.correlation_header);
    let url = request.url.clone();
    let total = request.overrides.total_timeout.or(inner.total_timeout);
    let (flight, owner) = {
        let mut flights = inner.in_flight.flights.lock();
        match flights.get(&key) {
            Some(flight) => (flight.clone(), false),
            None => {
                let owner_client = client.clone();
                let owner_key = key.clone();
                let owner_info = info.clone();
                let call: Pin<Box<dyn Future<Output = Outcome> + Send>> = Box::pin(async move {
                    let inner = &*owner_client.inner;
                    let outcome = run_logical(inner, request, owner_info, true)
                        .await
                        .map(Arc::new);
                    // Done: later requests make their own call.
                    inner.in_flight.flights.lock().remove(&owner_key);
                    outcome
                });
                let flight = call.shared();
                flights.insert(key.clone(), flight.clone());
                (flight, true)
            }
        }
    };
    let mut participant = Participant {
        flights: &inner.in_flight.flights,
        key: &key,
        flight: Some(flight.clone()),
    };

    let outcome = if owner {
        flight.await
    } else {
        if inner.telemetry {
            crate::observe::metrics::dedup_joined(&inner.name);
        }
        tracing::debug!("⇆ joined an identical request in flight");
        inner.emit(|| ClientEvent::Deduplicated {
            request: info.clone(),
        });
        match inner.dedup_wait.or(total) {
            None => flight.await,
            Some(wait) => {
                let deadline = inner.clock.now() + wait;
                match timeout_at_after(
                    &inner.clock,
                    CoreTimeoutPhase::Total,
                    deadline,
                    wait,
                    flight,
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Error::new(Reason::Timeout {
                        phase: TimeoutPhase::DedupWait,
                    })
                    .for_url(&url)),
                }
            }
        }
    };
    drop(participant.flight.take());
    drop(participant);
    let response = outcome?;
    response
        .try_clone()
        .ok_or_else(|| Error::new(Reason::Body).for_url(&url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Stub, StubReply};

    #[tokio::test]
    async fn entry_is_gone_after_completion() {
        let stub = Stub::get("/x").reply(StubReply::text(200, "hello"));
        let client = Client::builder()
            .dedup(true)
            .stub(stub.clone())
            .build()
            .unwrap();
        let response = client.get("http://127.0.0.1/x").send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "hello");
        assert_eq!(client.inner.in_flight.len(), 0);
        client.get("http://127.0.0.1/x").send().await.unwrap();
        assert_eq!(stub.hits(), 2, "nothing is cached after completion");
    }
}
