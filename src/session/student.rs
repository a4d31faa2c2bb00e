//! `StudentSession`: the socket of one exam page, reporting on one quiz attempt.

use std::{sync::Arc, time::Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};

use super::{
    socket::{self, Socket, SocketActor},
    SessionContext,
};
use crate::{
    auth::{Role, StudentIdentity},
    protocol::{
        close,
        ids::ConnectionId,
        inbound::{Inbound, MessageId},
        outbound,
        status::{StatusFields, StatusRecord},
        ErrorCode, Frame, OfflineReason,
    },
    registry::{AttemptLine, Connect, Disconnect, SessionRegistry},
};

/// What the registry tells a student socket.
#[derive(Message)]
#[rtype(result = "()")]
pub enum StudentCommand {
    /// Write this frame (a proctor message) to the student.
    Deliver { frame: Frame, kind: &'static str },
    /// A newer connection took over the attempt: close with 4009.
    Replaced,
    /// The server drains: close with 1012.
    Drain,
}

/// One student's socket.
pub struct StudentSession {
    identity: StudentIdentity,
    connection: ConnectionId,
    socket: Socket,
    registry: Addr<SessionRegistry>,
    /// The attempt's latest status from the store, handed to the router on start.
    prior: Option<Arc<StatusRecord>>,
    /// The attempt's line in the router, once started: statuses go through it.
    line: Option<Arc<AttemptLine>>,
    /// Why the attempt goes offline when this socket stops; `None` when it was replaced.
    offline_reason: Option<OfflineReason>,
}

impl StudentSession {
    pub fn new(
        identity: StudentIdentity,
        session: actix_ws::Session,
        shared: Arc<SessionContext>,
        registry: Addr<SessionRegistry>,
        prior: Option<Arc<StatusRecord>>,
    ) -> Self {
        StudentSession {
            identity,
            connection: ConnectionId::generate(),
            socket: Socket::new(session, shared),
            registry,
            prior,
            line: None,
            offline_reason: Some(OfflineReason::Disconnected),
        }
    }

    /// The ids a status names must be the token's.
    fn owns(&self, data: &StatusFields) -> bool {
        let key = &self.identity.key;
        data.text("quiz_id").as_deref() == Some(key.quiz.as_str())
            && data.text("quiz_attempt_id").as_deref() == Some(key.attempt.as_str())
            && data.text("student_id").as_deref() == Some(self.identity.student.as_str())
    }

    fn forbidden(&mut self, ctx: &mut Context<Self>, id: Option<&MessageId>, what: &str) {
        socket::refuse(
            self,
            ctx,
            id,
            ErrorCode::Forbidden,
            &format!("a student socket may not send {what}"),
        );
    }
}

impl Actor for StudentSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let shared = self.socket.shared.clone();
        shared.metrics.connection_opened(Role::Student);
        log::info!(
            "student connected: attempt {} student {} connection {}",
            self.identity.key,
            self.identity.student,
            self.connection
        );
        let welcome = outbound::welcome(
            &self.connection,
            &shared.instance,
            Role::Student,
            shared.heartbeat.interval_ms,
        );
        socket::send(self, ctx, welcome, "welcome");
        socket::start_heartbeat(self, ctx);
        let key = &self.identity.key;
        self.line = Some(shared.router.connect(
            key,
            &self.connection,
            self.identity.student.clone(),
            self.identity.name.clone(),
            self.prior.take(),
        ));
        self.registry.do_send(Connect {
            key: key.clone(),
            connection: self.connection.clone(),
            recipient: ctx.address().recipient(),
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.socket.shared.metrics.connection_closed(Role::Student);
        let reason = self
            .offline_reason
            .map_or("replaced", OfflineReason::as_str);
        log::info!(
            "student disconnected: attempt {} connection {} ({reason})",
            self.identity.key,
            self.connection
        );
        if let Some(reason) = self.offline_reason {
            self.registry.do_send(Disconnect {
                key: self.identity.key.clone(),
                connection: self.connection.clone(),
                reason,
            });
        }
    }
}

impl SocketActor for StudentSession {
    fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    fn on_message(&mut self, msg: Inbound, received: Instant, ctx: &mut Context<Self>) {
        match msg {
            Inbound::Status { id, data } => {
                if !self.owns(&data) {
                    return socket::refuse(
                        self,
                        ctx,
                        id.as_ref(),
                        ErrorCode::Forbidden,
                        "quiz_id, quiz_attempt_id and student_id must match the token",
                    );
                }
                // Routed on this thread: when `report` returns, the status is with its
                // receivers and its events are in the journal, so the ack promises both.
                // (`line` is set in `started`, which actix runs before any frame arrives.)
                if let Some(line) = &self.line {
                    let router = &self.socket.shared.router;
                    router.report(line, &self.connection, data, received);
                }
                socket::ack(self, ctx, id.as_ref());
            }
            Inbound::ToProctor { id, text } => {
                let identity = &self.identity;
                self.socket.shared.router.chat(
                    &identity.key,
                    &identity.student,
                    identity.name.as_deref(),
                    &text,
                );
                socket::ack(self, ctx, id.as_ref());
            }
            Inbound::Ping { id } => socket::pong(self, ctx, id.as_ref()),
            Inbound::Subscribe { id, .. } => self.forbidden(ctx, id.as_ref(), "subscribe"),
            Inbound::Unsubscribe { id, .. } => self.forbidden(ctx, id.as_ref(), "unsubscribe"),
            Inbound::ToStudent { id, .. } => self.forbidden(ctx, id.as_ref(), "message_to_student"),
        }
    }

    fn on_timeout(&mut self) {
        self.offline_reason = Some(OfflineReason::Timeout);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for StudentSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        socket::on_frame(self, ctx, item);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<StudentCommand> for StudentSession {
    type Result = ();

    fn handle(&mut self, cmd: StudentCommand, ctx: &mut Self::Context) {
        match cmd {
            StudentCommand::Deliver { frame, kind } => socket::send(self, ctx, frame, kind),
            StudentCommand::Replaced => {
                self.offline_reason = None;
                socket::close_with(self, ctx, close::REPLACED, "replaced by a newer connection");
            }
            StudentCommand::Drain => {
                socket::close_with(self, ctx, close::DRAINING, "server draining: reconnect")
            }
        }
    }
}
