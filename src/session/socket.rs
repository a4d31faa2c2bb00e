//! The wire side of one session, shared by both roles: writing through the outbox, server
//! pings and the silence timeout, the per-connection rate limit, parsing with clear errors,
//! and closing with a code.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};

use super::{
    outbox::{Full, Outbox, Outgoing, Pushed},
    RateLimiter, SessionContext, Strikes,
};
use crate::protocol::{
    close,
    ids::AttemptKey,
    inbound::{self, Inbound, MessageId},
    outbound, ErrorCode, Frame,
};

/// Frames written per turn of the writer, so one busy socket yields to the others.
const WRITE_BATCH: usize = 64;

/// How long the frames before a close, and the close frame, may take to leave before the
/// socket is dropped anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Everything about the wire for one connection.
pub struct Socket {
    session: actix_ws::Session,
    outbox: Outbox,
    /// A batch is being written; the next starts when it is done.
    writing: bool,
    /// A close has started: nothing more is queued or read.
    closing: bool,
    last_heard: Instant,
    last_ping: Instant,
    limiter: RateLimiter,
    strikes: Strikes,
    pub shared: Arc<SessionContext>,
}

impl Socket {
    pub fn new(session: actix_ws::Session, shared: Arc<SessionContext>) -> Self {
        let limits = &shared.limits;
        Socket {
            session,
            outbox: Outbox::new(limits.outbox_frames, limits.outbox_bytes),
            writing: false,
            closing: false,
            last_heard: Instant::now(),
            last_ping: Instant::now(),
            limiter: RateLimiter::new(limits.messages_per_second, limits.message_burst),
            strikes: Strikes::default(),
            shared,
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }
}

/// A session actor with a [`Socket`].
pub trait SocketActor: Actor<Context = Context<Self>> {
    fn socket(&mut self) -> &mut Socket;

    /// A text frame passed the rate limit and parsed.
    fn on_message(&mut self, msg: Inbound, received: Instant, ctx: &mut Context<Self>);

    /// The client stayed silent past the heartbeat timeout (the socket closes next).
    fn on_timeout(&mut self) {}
}

/// Queue a frame of wire type `kind`.
pub fn send<A: SocketActor>(act: &mut A, ctx: &mut Context<A>, frame: Frame, kind: &'static str) {
    push(act, ctx, Outgoing::Text(frame), Some(kind));
}

/// Queue a status of `key`; it replaces a waiting status of the same attempt.
pub fn send_status<A: SocketActor>(
    act: &mut A,
    ctx: &mut Context<A>,
    key: &AttemptKey,
    frame: Frame,
) {
    let socket = act.socket();
    if socket.closing {
        return;
    }
    match socket.outbox.push_status(key, frame) {
        Ok(Pushed::Queued) => socket.shared.metrics.message_out("student_status"),
        Ok(Pushed::Replaced) => socket.shared.metrics.coalesced(),
        Err(Full) => return slow_consumer(act, ctx),
    }
    flush(act, ctx);
}

/// Queue `ack` for a message that carried an id.
pub fn ack<A: SocketActor>(act: &mut A, ctx: &mut Context<A>, id: Option<&MessageId>) {
    if let Some(id) = id {
        send(act, ctx, outbound::ack(id), "ack");
    }
}

/// Queue an `error`.
pub fn error<A: SocketActor>(
    act: &mut A,
    ctx: &mut Context<A>,
    id: Option<&MessageId>,
    code: ErrorCode,
    message: &str,
) {
    act.socket().shared.metrics.error(code);
    send(act, ctx, outbound::error(id, code, message), "error");
}

/// Refuse a message the sender may not send; repeated refusals close the socket (4008).
pub fn refuse<A: SocketActor>(
    act: &mut A,
    ctx: &mut Context<A>,
    id: Option<&MessageId>,
    code: ErrorCode,
    message: &str,
) {
    error(act, ctx, id, code, message);
    strike(act, ctx);
}

fn strike<A: SocketActor>(act: &mut A, ctx: &mut Context<A>) {
    let socket = act.socket();
    let limit = socket.shared.limits.max_strikes;
    if socket.strikes.strike(limit) {
        close_with(act, ctx, close::POLICY, "too many refused messages");
    }
}

fn push<A: SocketActor>(
    act: &mut A,
    ctx: &mut Context<A>,
    item: Outgoing,
    kind: Option<&'static str>,
) {
    let socket = act.socket();
    if socket.closing {
        return;
    }
    if socket.outbox.push(item).is_err() {
        return slow_consumer(act, ctx);
    }
    if let Some(kind) = kind {
        socket.shared.metrics.message_out(kind);
    }
    flush(act, ctx);
}

/// Close a socket that cannot keep up, dropping what waits for it (1013).
pub fn slow_consumer<A: SocketActor>(act: &mut A, ctx: &mut Context<A>) {
    log::warn!("closing a socket that cannot keep up with its traffic");
    close(
        act,
        ctx,
        close::TRY_AGAIN_LATER,
        "too slow: reconnect and resync",
        Waiting::Discard,
    );
}

/// Start writing the outbox if no write is under way.
fn flush<A: SocketActor>(act: &mut A, ctx: &mut Context<A>) {
    let socket = act.socket();
    if socket.writing || socket.outbox.is_empty() {
        return;
    }
    let mut session = socket.session.clone();
    let batch = socket.outbox.take(WRITE_BATCH);
    socket.writing = true;
    let write = async move {
        for item in batch {
            match item {
                Outgoing::Text(frame) => session.text(frame).await?,
                Outgoing::Ping => session.ping(b"").await?,
                Outgoing::Pong(payload) => session.pong(&payload).await?,
                Outgoing::Close(code, description) => {
                    let reason = CloseReason {
                        code: CloseCode::from(code),
                        description: Some(description),
                    };
                    session.close(Some(reason)).await?;
                    return Err(actix_ws::Closed);
                }
            }
        }
        Ok::<(), actix_ws::Closed>(())
    };
    ctx.spawn(write.into_actor(act).map(|written, act, ctx| {
        act.socket().writing = false;
        match written {
            Ok(()) => flush(act, ctx),
            // Closed by us (the close frame is out) or by the client.
            Err(actix_ws::Closed) => ctx.stop(),
        }
    }));
}

/// What becomes of the frames waiting when a socket closes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Written before the close frame.
    Deliver,
    /// Dropped: the client is not reading them.
    Discard,
}

/// Close the socket with `code` after the frames already waiting, then stop the actor.
pub fn close_with<A: SocketActor>(act: &mut A, ctx: &mut Context<A>, code: u16, reason: &str) {
    close(act, ctx, code, reason, Waiting::Deliver);
}

fn close<A: SocketActor>(
    act: &mut A,
    ctx: &mut Context<A>,
    code: u16,
    reason: &str,
    waiting: Waiting,
) {
    let socket = act.socket();
    if socket.closing {
        return;
    }
    socket.closing = true;
    socket.shared.metrics.close(code);
    if waiting == Waiting::Discard {
        socket.outbox.clear();
    }
    socket.outbox.push_close(code, reason);
    // A client that takes nothing more does not hold the socket open.
    ctx.run_later(CLOSE_WAIT, |_, ctx| ctx.stop());
    flush(act, ctx);
}

/// Send pings and close a client that stays silent past the timeout.
pub fn start_heartbeat<A: SocketActor>(act: &mut A, ctx: &mut Context<A>) {
    let hb = act.socket().shared.heartbeat.clone();
    let tick = hb.interval().min(hb.timeout() / 4);
    ctx.run_interval(tick, move |act, ctx| {
        let socket = act.socket();
        if socket.closing {
            return;
        }
        if socket.last_heard.elapsed() >= hb.timeout() {
            act.on_timeout();
            close(
                act,
                ctx,
                close::NORMAL,
                "heartbeat timeout",
                Waiting::Discard,
            );
        } else if socket.last_ping.elapsed() >= hb.interval() {
            socket.last_ping = Instant::now();
            push(act, ctx, Outgoing::Ping, None);
        }
    });
}

/// Handle one item of the socket's inbound stream.
pub fn on_frame<A: SocketActor>(
    act: &mut A,
    ctx: &mut Context<A>,
    item: Result<AggregatedMessage, ProtocolError>,
) {
    let received = Instant::now();
    let socket = act.socket();
    if socket.closing {
        return;
    }
    socket.last_heard = received;
    let max = socket.shared.limits.max_message_bytes;
    match item {
        Ok(AggregatedMessage::Text(text)) => on_text(act, ctx, &text, received),
        Ok(AggregatedMessage::Binary(_)) => {
            act.socket().shared.metrics.message_in("invalid");
            refuse(
                act,
                ctx,
                None,
                ErrorCode::InvalidMessage,
                "binary frames are not part of the protocol: send JSON text",
            );
        }
        Ok(AggregatedMessage::Ping(payload)) => push(act, ctx, Outgoing::Pong(payload), None),
        Ok(AggregatedMessage::Pong(_)) => {}
        Ok(AggregatedMessage::Close(_)) => close_with(act, ctx, close::NORMAL, "goodbye"),
        // A single frame above the limit, or continuations adding up past it.
        Err(ProtocolError::Overflow) | Err(ProtocolError::Io(_)) => close_with(
            act,
            ctx,
            close::TOO_LARGE,
            &format!("message larger than {max} bytes"),
        ),
        Err(e) => {
            log::debug!("WebSocket protocol error: {e}");
            close_with(act, ctx, close::PROTOCOL_ERROR, "WebSocket protocol error");
        }
    }
}

fn on_text<A: SocketActor>(act: &mut A, ctx: &mut Context<A>, text: &str, received: Instant) {
    let socket = act.socket();
    let allowed = socket.limiter.allow();
    match inbound::parse(text) {
        Err(invalid) => {
            socket.shared.metrics.message_in("invalid");
            refuse(
                act,
                ctx,
                invalid.id.as_ref(),
                ErrorCode::InvalidMessage,
                &invalid.message,
            );
        }
        Ok(msg) if !allowed => {
            refuse(
                act,
                ctx,
                msg.id(),
                ErrorCode::RateLimited,
                "too many messages: slow down",
            );
        }
        Ok(msg) => {
            socket.strikes.clear();
            socket.shared.metrics.message_in(msg.type_name());
            act.on_message(msg, received, ctx);
        }
    }
}

/// Answer `ping` with `pong` (and `ack` if it carried an id).
pub fn pong<A: SocketActor>(act: &mut A, ctx: &mut Context<A>, id: Option<&MessageId>) {
    send(act, ctx, outbound::pong(), "pong");
    ack(act, ctx, id);
}
