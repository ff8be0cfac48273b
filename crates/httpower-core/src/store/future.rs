//! The future a [`Store`](super::Store) returns: no allocation when the answer is ready.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::StoreError;

/// The result of a store operation, now (memory) or later (network).
///
/// The memory store answers synchronously, so boxing a future for every rate-limit
/// check would cost more than the check itself. This enum carries a ready value without
/// allocation, and boxes only for stores that really wait on I/O.
#[must_use = "futures do nothing unless awaited"]
pub struct StoreFuture<'a, T> {
    inner: Inner<'a, T>,
}

enum Inner<'a, T> {
    Ready(Option<Result<T, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer available now.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        StoreFuture {
            inner: Inner::Ready(Some(result)),
        }
    }

    /// Takes the answer if it is already there (a ready store), so callers can skip the
    /// timeout machinery on the fast path. Afterwards the future must not be polled.
    pub fn take_ready(&mut self) -> Option<Result<T, StoreError>> {
        match &mut self.inner {
            Inner::Ready(value) => value.take(),
            Inner::Pending(_) => None,
        }
    }

    /// An answer that needs I/O.
    pub fn pending(future: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        StoreFuture {
            inner: Inner::Pending(Box::pin(future)),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Pending(_) => "StoreFuture::Pending",
        })
    }
}

impl<T> Unpin for StoreFuture<'_, T> {}

impl<T> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Ready(value) => match value.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Ready(Err(StoreError::Protocol {
                    store: "unknown".into(),
                    detail: "store future polled after completion".into(),
                })),
            },
            Inner::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
