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
    records::EventFields,
    registry::{Connect, Disconnect, SessionRegistry, StudentChat, StudentReport},
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
    /// The attempt's latest status from the store, handed to the registry on start.
    prior: Option<Arc<StatusRecord>>,
    /// Why the attempt goes offline when this socket stops; `None` when it was replaced.
    offline_reason: Option<OfflineReason>,
    /// What the last status on this socket said in the fields that make events.
    last_reported: Option<EventFields>,
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
            offline_reason: Some(OfflineReason::Disconnected),
            last_reported: None,
        }
    }

    /// The ids a status names must be the token's.
    fn owns(&self, data: &StatusFields) -> bool {
        let key = &self.identity.key;
        data.text("quiz_id").as_deref() == Some(key.quiz.as_str())
            && data.text("quiz_attempt_id").as_deref() == Some(key.attempt.as_str())
            && data.text("student_id").as_deref() == Some(self.identity.student.as_str())
    }

    /// Hand `msg` to the registry and acknowledge it. When records are kept and `msg` may
    /// make an event, the ack waits until the registry has routed it and its events are in
    /// the journal, so an acknowledged event survives even a killed process; otherwise (or
    /// without an `id`) there is nothing to wait for.
    fn routed_then_ack<M>(
        &mut self,
        msg: M,
        id: Option<MessageId>,
        may_record: bool,
        ctx: &mut Context<Self>,
    ) where
        M: Message<Result = ()> + Send + 'static,
        SessionRegistry: Handler<M>,
    {
        let id = match id {
            Some(id) if may_record && self.socket.shared.ack_after_routing => id,
            id => {
                self.registry.do_send(msg);
                return socket::ack(self, ctx, id.as_ref());
            }
        };
        let routed = self.registry.send(msg);
        ctx.spawn(routed.into_actor(self).map(move |result, act, ctx| {
            // An error means the registry is gone: the server is stopping, nothing to ack.
            if result.is_ok() {
                socket::ack(act, ctx, Some(&id));
            }
        }));
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
        self.registry.do_send(Connect {
            key: self.identity.key.clone(),
            connection: self.connection.clone(),
            student: self.identity.student.clone(),
            name: self.identity.name.clone(),
            prior: self.prior.take(),
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
                let fields = EventFields::of(&data);
                let may_record = self.last_reported.as_ref() != Some(&fields);
                self.last_reported = Some(fields);
                let report = StudentReport {
                    key: self.identity.key.clone(),
                    connection: self.connection.clone(),
                    data,
                    received,
                };
                self.routed_then_ack(report, id, may_record, ctx);
            }
            Inbound::ToProctor { id, text } => {
                let chat = StudentChat {
                    key: self.identity.key.clone(),
                    student: self.identity.student.clone(),
                    name: self.identity.name.clone(),
                    text,
                };
                self.routed_then_ack(chat, id, true, ctx);
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
