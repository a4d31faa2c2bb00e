//! `GET /ws`: verify the token before the upgrade, then start the socket's actor.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use actix::{Actor, AsyncContext};
use actix_web::{
    body::{BodySize, MessageBody},
    web::{self, Bytes},
    HttpRequest, HttpResponse,
};

use super::{
    client_ip::{client_ip, IpSlot},
    credential, ApiError, AppState,
};
use crate::{
    auth::{AuthError, Identity},
    session::{ProctorSession, StudentSession},
};

/// Upgrade to a WebSocket for the identity of the token; 401 before the upgrade if the token
/// does not verify, 503 while draining.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let gate = &state.gate;
    let refuse = |reason: &'static str, error: ApiError| {
        state.metrics.handshake_refused(reason);
        error
    };
    gate.check_origin(&req).map_err(|e| refuse("origin", e))?;
    if state.is_draining() {
        return Err(refuse(
            "draining",
            ApiError::Unavailable("server draining: connect to another instance".into()),
        ));
    }
    if !gate.admit_handshake() {
        return Err(refuse(
            "rate",
            ApiError::TooMany("too many connections opening: retry shortly".into()),
        ));
    }
    let open = state.metrics.open_connections().max(0) as usize;
    if gate.max_connections > 0 && open >= gate.max_connections {
        return Err(refuse(
            "capacity",
            ApiError::Unavailable("server full: connect to another instance".into()),
        ));
    }
    let identity = credential(&req)
        .ok_or(AuthError::Missing)
        .and_then(|token| state.verifier.verify(&token))
        .map_err(|e| refuse("auth", e.into()))?;
    let slot = match client_ip(&req, &gate.trusted_proxies) {
        Some(ip) => Some(
            gate.per_ip
                .take(ip, gate.max_connections_per_ip)
                .ok_or_else(|| {
                    refuse(
                        "per_ip",
                        ApiError::TooMany(format!("too many connections from {ip}")),
                    )
                })?,
        ),
        None => None,
    };
    // Read the attempt's last status before the upgrade, so the session starts with it and
    // routing never waits on the store.
    let prior = match &identity {
        Identity::Student(student) => state.store.latest(&student.key).await.unwrap_or_else(|e| {
            log::warn!("reading the last status of {}: {e}", student.key);
            None
        }),
        Identity::Proctor(_) => None,
    };
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::Invalid(format!("not a WebSocket upgrade: {e}")))?;
    let max = state.sessions.limits.max_message_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let shared = state.sessions.clone();
    let registry = state.registry.clone();
    match identity {
        Identity::Student(student) => {
            StudentSession::create(move |ctx| {
                ctx.add_stream(stream);
                StudentSession::new(student, session, shared, registry, prior)
            });
        }
        Identity::Proctor(proctor) => {
            let store = state.store.clone();
            ProctorSession::create(move |ctx| {
                ctx.add_stream(stream);
                ProctorSession::new(proctor, session, shared, registry, store)
            });
        }
    }
    let guard = TransportGuard::new(state.transports.clone(), slot);
    Ok(response
        .map_body(|_, body| Tracked {
            inner: body,
            _guard: guard,
        })
        .map_into_boxed_body())
}

/// Counts an upgraded connection as open until its response body, which carries every frame
/// the server writes, is dropped: only then has the close frame left. The drain waits on it.
/// It also holds the socket's place in its client address's count.
struct TransportGuard(Arc<AtomicUsize>, #[allow(dead_code)] Option<IpSlot>);

impl TransportGuard {
    fn new(count: Arc<AtomicUsize>, slot: Option<IpSlot>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        TransportGuard(count, slot)
    }
}

impl Drop for TransportGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body with a [`TransportGuard`].
struct Tracked<B> {
    inner: B,
    _guard: TransportGuard,
}

impl<B: MessageBody + Unpin> MessageBody for Tracked<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }
}
