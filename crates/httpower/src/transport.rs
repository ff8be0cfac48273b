//! The bottom of the pipeline: one attempt on the network (reqwest) or on the stubs of
//! a test-mode client, and the classification of what went wrong.
//!
//! Both paths end in the same [`Failure`], so the retry loop above cannot tell an
//! injected reset from a real one: test mode exercises the same retry rules.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use parking_lot::Mutex;
use url::Url;

use crate::error::{Error, Reason, TimeoutPhase};
use crate::response::Response;
use crate::security::{find_violation, Violation};
use crate::testing::{ReplyKind, StubRequest, Stubs, TransportFault};

/// Where attempts go.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// The network, through reqwest (one pool, shared by every clone of the client).
    Network(reqwest::Client),
    /// Nowhere: stubs answer or the request is blocked.
    Test(Arc<Stubs>),
}

/// A request body that can be sent again (in memory) or only once (a stream).
#[derive(Debug)]
pub(crate) enum ReplayBody {
    Empty,
    Bytes(Bytes),
    Stream(Mutex<Option<reqwest::Body>>),
}

impl ReplayBody {
    pub(crate) fn bytes(&self) -> Option<&Bytes> {
        match self {
            ReplayBody::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Whether another attempt can send this body again.
    pub(crate) fn is_replayable(&self) -> bool {
        !matches!(self, ReplayBody::Stream(_))
    }

    fn for_attempt(&self) -> Option<reqwest::Body> {
        match self {
            ReplayBody::Empty => None,
            ReplayBody::Bytes(bytes) => Some(reqwest::Body::from(bytes.clone())),
            ReplayBody::Stream(stream) => stream.lock().take(),
        }
    }
}

/// A failed attempt, classified.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    /// True when the request certainly never reached the server (connection refused,
    /// DNS, TLS, an HTTP/2 stream the server refused): retrying is safe for any method.
    pub(crate) nothing_sent: bool,
    /// Whether the failure is transient (worth another attempt if the method allows).
    pub(crate) transient: bool,
}

impl Failure {
    fn new(reason: Reason, nothing_sent: bool, transient: bool) -> Self {
        Failure {
            reason,
            nothing_sent,
            transient,
        }
    }

    pub(crate) fn into_error(self, source: impl StdError + Send + Sync + 'static) -> Error {
        Error::with_source(self.reason, source)
    }
}

/// One attempt's failure with its source error, ready to become an [`Error`].
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) failure: Failure,
    pub(crate) error: Error,
}

impl AttemptError {
    fn new(failure: Failure, source: Option<Arc<dyn StdError + Send + Sync>>) -> Self {
        let mut error = Error::new(failure.reason.clone());
        if let Some(source) = source {
            error = error.source_arc(source);
        }
        AttemptError { failure, error }
    }

    pub(crate) fn local(reason: Reason) -> Self {
        AttemptError::new(Failure::new(reason, true, false), None)
    }
}

/// The failure an injected fault stands for: exactly what the real one classifies as.
fn fault_failure(fault: TransportFault) -> Failure {
    match fault {
        TransportFault::Timeout => Failure::new(
            Reason::Timeout {
                phase: TimeoutPhase::Read,
            },
            false,
            true,
        ),
        TransportFault::Reset => Failure::new(Reason::ConnectionReset, false, true),
        TransportFault::Refused => Failure::new(Reason::Connect, true, true),
    }
}

/// A stand-in source for an injected fault.
#[derive(Debug, thiserror::Error)]
#[error("injected transport fault: {0:?}")]
struct InjectedFault(TransportFault);

fn violation_reason(violation: &Violation) -> Reason {
    match violation {
        Violation::HostNotAllowed { host } => Reason::HostNotAllowed { host: host.clone() },
        Violation::BlockedPrivateIp { host, ip } => Reason::BlockedPrivateIp {
            host: host.clone(),
            ip: *ip,
        },
        Violation::TooManyRedirects { .. } => Reason::Redirect,
        _ => Reason::InvalidUrl,
    }
}

/// Maps a host-policy violation to the client's reason.
pub(crate) fn violation_error(violation: Violation) -> AttemptError {
    let reason = violation_reason(&violation);
    AttemptError::new(Failure::new(reason, true, false), Some(Arc::new(violation)))
}

/// Classifies a reqwest error by walking its source chain.
pub(crate) fn classify_reqwest(err: &reqwest::Error) -> Failure {
    if let Some(violation) = find_violation(err) {
        // Refused on a redirect hop, the first request was sent all the same.
        return Failure::new(violation_reason(violation), !err.is_redirect(), false);
    }
    if err.is_timeout() {
        let phase = if err.is_connect() {
            TimeoutPhase::Connect
        } else {
            TimeoutPhase::Read
        };
        return Failure::new(Reason::Timeout { phase }, err.is_connect(), true);
    }
    if err.is_redirect() {
        return Failure::new(Reason::Redirect, false, false);
    }
    if err.is_decode() {
        return Failure::new(Reason::Decode, false, false);
    }
    if err.is_builder() {
        return Failure::new(Reason::InvalidUrl, true, false);
    }
    let chain = Chain::of(err);
    if chain.tls {
        return Failure::new(Reason::Tls, true, false);
    }
    if err.is_connect() {
        if chain.dns {
            return Failure::new(Reason::Dns, true, false);
        }
        return Failure::new(Reason::Connect, true, true);
    }
    if chain.refused_stream {
        return Failure::new(Reason::ConnectionReset, true, true);
    }
    if chain.reset {
        return Failure::new(Reason::ConnectionReset, false, true);
    }
    if err.is_body() {
        return Failure::new(Reason::Body, false, false);
    }
    Failure::new(Reason::Transport, false, false)
}

/// What the source chain of an error says.
#[derive(Default)]
struct Chain {
    tls: bool,
    dns: bool,
    reset: bool,
    refused_stream: bool,
}

impl Chain {
    /// Walks every error reachable from `err`: its `source()` chain and, for I/O
    /// errors, the error they wrap (`io::Error::source` skips it, and reqwest nests
    /// rustls' error two I/O errors deep).
    fn of(err: &(dyn StdError + 'static)) -> Self {
        let mut chain = Chain::default();
        let mut pending: Vec<&(dyn StdError + 'static)> = vec![err];
        // Bounded: error chains are short, but a cyclic `source` must not hang us.
        let mut budget = 64;
        while let Some(err) = pending.pop() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            chain.inspect(err);
            if let Some(io) = err.downcast_ref::<io::Error>() {
                if let Some(inner) = io.get_ref() {
                    pending.push(inner);
                }
            }
            if let Some(next) = err.source() {
                pending.push(next);
            }
        }
        chain
    }

    fn inspect(&mut self, err: &(dyn StdError + 'static)) {
        if err.downcast_ref::<rustls::Error>().is_some() {
            self.tls = true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ) {
                self.reset = true;
            }
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                self.refused_stream = true;
            } else if h2.is_go_away() || h2.is_reset() || h2.is_io() {
                self.reset = true;
            }
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed() {
                self.reset = true;
            }
        }
        // hyper-util's connector names a resolution failure only in its message.
        if err.to_string().starts_with("dns error") {
            self.dns = true;
        }
    }
}

/// One attempt's request.
pub(crate) struct AttemptRequest<'a> {
    pub(crate) method: &'a Method,
    pub(crate) url: &'a Url,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a ReplayBody,
    pub(crate) buffer: bool,
}

impl Transport {
    /// Sends one attempt.
    pub(crate) async fn send(&self, request: AttemptRequest<'_>) -> Result<Response, AttemptError> {
        match self {
            Transport::Network(client) => {
                let mut builder = client
                    .request(request.method.clone(), request.url.clone())
                    .headers(request.headers.clone());
                if let Some(body) = request.body.for_attempt() {
                    builder = builder.body(body);
                }
                let response = builder.send().await.map_err(network_error)?;
                let response = Response::streaming(response);
                if request.buffer {
                    response
                        .into_buffered()
                        .await
                        .map_err(|error| AttemptError {
                            failure: Failure::new(error.reason().clone(), false, true),
                            error,
                        })
                } else {
                    Ok(response)
                }
            }
            Transport::Test(stubs) => {
                let stub_request = StubRequest {
                    method: request.method.clone(),
                    url: request.url.clone(),
                    headers: request.headers.clone(),
                    body: request.body.bytes().cloned(),
                };
                // A stream is consumed by the attempt even when a stub answers.
                drop(request.body.for_attempt());
                let Some(reply) = stubs.answer(&stub_request) else {
                    return Err(AttemptError::local(Reason::NetworkBlocked));
                };
                match reply.kind() {
                    ReplyKind::Respond {
                        status,
                        headers,
                        body,
                    } => Ok(Response::buffered(
                        *status,
                        headers.clone(),
                        request.url.clone(),
                        body.clone(),
                    )),
                    ReplyKind::Fail(fault) => Err(AttemptError::new(
                        fault_failure(*fault),
                        Some(Arc::new(InjectedFault(*fault))),
                    )),
                }
            }
        }
    }
}

fn network_error(err: reqwest::Error) -> AttemptError {
    let failure = classify_reqwest(&err);
    AttemptError::new(failure, Some(Arc::new(err)))
}
