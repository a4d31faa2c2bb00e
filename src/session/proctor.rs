//! `ProctorSession`: the socket of one proctor dashboard, watching the quizzes of its token.

use std::{collections::HashMap, sync::Arc, time::Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};

use super::{
    socket::{self, Socket, SocketActor},
    SessionContext,
};
use crate::{
    auth::{ProctorIdentity, Role},
    bridge::Delivery,
    now_ms,
    protocol::{
        close,
        ids::{AttemptKey, ConnectionId, QuizId},
        inbound::{Inbound, MessageId},
        outbound,
        status::StatusRecord,
        ErrorCode, Frame,
    },
    registry::{
        MessageRecord, ProctorConnected, ProctorGone, SendToStudent, SessionRegistry, Unwatch,
        Watch,
    },
    store::{StatusStore, StoreError},
};

/// What the registry tells a proctor socket.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ProctorCommand {
    /// A `student_status` of `key`; a newer one replaces it while it waits.
    Status { key: AttemptKey, frame: Frame },
    /// Any other frame for the proctor (a `student_message`).
    Deliver { frame: Frame, kind: &'static str },
    /// The server drains: close with 1012.
    Drain,
}

/// One watched quiz.
enum Subscription {
    /// The snapshot is being read; statuses routed meanwhile wait here, to follow it.
    Pending(Vec<(AttemptKey, Frame)>),
    /// The snapshot is out; statuses go straight to the socket.
    Live,
}

/// One proctor's socket.
pub struct ProctorSession {
    identity: ProctorIdentity,
    connection: ConnectionId,
    socket: Socket,
    registry: Addr<SessionRegistry>,
    store: Arc<dyn StatusStore>,
    subscriptions: HashMap<QuizId, Subscription>,
}

impl ProctorSession {
    pub fn new(
        identity: ProctorIdentity,
        session: actix_ws::Session,
        shared: Arc<SessionContext>,
        registry: Addr<SessionRegistry>,
        store: Arc<dyn StatusStore>,
    ) -> Self {
        ProctorSession {
            identity,
            connection: ConnectionId::generate(),
            socket: Socket::new(session, shared),
            registry,
            store,
            subscriptions: HashMap::new(),
        }
    }

    fn subscribe(&mut self, ctx: &mut Context<Self>, id: Option<MessageId>, quiz: QuizId) {
        if !self.identity.quizzes.contains(&quiz) {
            let message = format!("quiz {quiz} is not in this token's quizzes");
            return socket::refuse(self, ctx, id.as_ref(), ErrorCode::Forbidden, &message);
        }
        let max = self.socket.shared.limits.max_subscriptions;
        if !self.subscriptions.contains_key(&quiz) && self.subscriptions.len() >= max {
            let message = format!("a socket may watch at most {max} quizzes");
            return socket::refuse(self, ctx, id.as_ref(), ErrorCode::Forbidden, &message);
        }
        self.subscriptions
            .insert(quiz.clone(), Subscription::Pending(Vec::new()));
        socket::ack(self, ctx, id.as_ref());
        // Watch first, then read: a status recorded before the watch took effect is in the
        // snapshot, and one routed after it waits in `Pending` to follow the snapshot.
        let watch = self.registry.send(Watch {
            quiz: quiz.clone(),
            connection: self.connection.clone(),
            recipient: ctx.address().recipient(),
        });
        let store = self.store.clone();
        let read_quiz = quiz.clone();
        let read = async move {
            watch
                .await
                .map_err(|e| StoreError(format!("registry unavailable: {e}")))?;
            store.quiz(&read_quiz).await
        };
        ctx.spawn(
            read.into_actor(self)
                .map(move |students, act, ctx| act.snapshot_read(ctx, quiz, students)),
        );
    }

    fn snapshot_read(
        &mut self,
        ctx: &mut Context<Self>,
        quiz: QuizId,
        students: Result<Vec<Arc<StatusRecord>>, StoreError>,
    ) {
        let Some(Subscription::Pending(waiting)) = self.subscriptions.get_mut(&quiz) else {
            return; // unsubscribed while the snapshot was read
        };
        let waiting = std::mem::take(waiting);
        match students {
            Ok(students) => {
                let frame = outbound::snapshot(&quiz, students.iter().map(|s| &**s));
                socket::send(self, ctx, frame, "snapshot");
            }
            Err(e) => {
                log::warn!("snapshot of quiz {quiz}: {e}");
                let message = format!("snapshot of quiz {quiz} unavailable: {e}");
                socket::error(self, ctx, None, ErrorCode::NotFound, &message);
            }
        }
        self.subscriptions.insert(quiz, Subscription::Live);
        for (key, frame) in waiting {
            socket::send_status(self, ctx, &key, frame);
        }
    }

    fn unsubscribe(&mut self, ctx: &mut Context<Self>, id: Option<MessageId>, quiz: QuizId) {
        if self.subscriptions.remove(&quiz).is_some() {
            self.registry.do_send(Unwatch {
                quiz,
                connection: self.connection.clone(),
            });
        }
        socket::ack(self, ctx, id.as_ref());
    }

    fn message_student(
        &mut self,
        ctx: &mut Context<Self>,
        id: Option<MessageId>,
        key: AttemptKey,
        frame: Frame,
        record: MessageRecord,
    ) {
        if !self.identity.quizzes.contains(&key.quiz) {
            let message = format!("quiz {} is not in this token's quizzes", key.quiz);
            return socket::refuse(self, ctx, id.as_ref(), ErrorCode::Forbidden, &message);
        }
        let sent = self.registry.send(SendToStudent {
            key: key.clone(),
            frame,
            record,
        });
        ctx.spawn(
            sent.into_actor(self)
                .map(move |delivery, act, ctx| match delivery {
                    Ok(Delivery::Delivered) => socket::ack(act, ctx, id.as_ref()),
                    Ok(Delivery::NotFound) | Err(_) => {
                        let message = format!("attempt {key} is not connected anywhere");
                        socket::error(act, ctx, id.as_ref(), ErrorCode::NotFound, &message);
                    }
                }),
        );
    }

    fn forbidden(&mut self, ctx: &mut Context<Self>, id: Option<&MessageId>, what: &str) {
        let message = format!("a proctor socket may not send {what}");
        socket::refuse(self, ctx, id, ErrorCode::Forbidden, &message);
    }
}

impl Actor for ProctorSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let shared = self.socket.shared.clone();
        shared.metrics.connection_opened(Role::Proctor);
        log::info!(
            "proctor connected: user {} connection {}",
            self.identity.user,
            self.connection
        );
        let welcome = outbound::welcome(
            &self.connection,
            &shared.instance,
            Role::Proctor,
            shared.heartbeat.interval_ms,
        );
        socket::send(self, ctx, welcome, "welcome");
        socket::start_heartbeat(self, ctx);
        self.registry.do_send(ProctorConnected {
            connection: self.connection.clone(),
            recipient: ctx.address().recipient(),
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.socket.shared.metrics.connection_closed(Role::Proctor);
        log::info!(
            "proctor disconnected: user {} connection {}",
            self.identity.user,
            self.connection
        );
        self.registry.do_send(ProctorGone {
            connection: self.connection.clone(),
            quizzes: self.subscriptions.drain().map(|(quiz, _)| quiz).collect(),
        });
    }
}

impl SocketActor for ProctorSession {
    fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    fn on_message(&mut self, msg: Inbound, _: Instant, ctx: &mut Context<Self>) {
        match msg {
            Inbound::Subscribe { id, quiz } => self.subscribe(ctx, id, quiz),
            Inbound::Unsubscribe { id, quiz } => self.unsubscribe(ctx, id, quiz),
            Inbound::ToStudent {
                id,
                key,
                kind,
                text,
            } => {
                let author = self.identity.display_name().to_string();
                let at = now_ms();
                let frame = outbound::proctor_message(kind, &author, &text, at);
                let record = MessageRecord {
                    kind,
                    author,
                    text,
                    at,
                };
                self.message_student(ctx, id, key, frame, record);
            }
            Inbound::Ping { id } => socket::pong(self, ctx, id.as_ref()),
            Inbound::Status { id, .. } => self.forbidden(ctx, id.as_ref(), "message_to_master"),
            Inbound::ToProctor { id, .. } => self.forbidden(ctx, id.as_ref(), "message_to_proctor"),
        }
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for ProctorSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        socket::on_frame(self, ctx, item);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ProctorCommand> for ProctorSession {
    type Result = ();

    fn handle(&mut self, cmd: ProctorCommand, ctx: &mut Self::Context) {
        match cmd {
            ProctorCommand::Status { key, frame } => match self.subscriptions.get_mut(&key.quiz) {
                Some(Subscription::Live) => socket::send_status(self, ctx, &key, frame),
                Some(Subscription::Pending(waiting)) => {
                    if waiting.len() >= self.socket.shared.limits.outbox_frames {
                        return socket::slow_consumer(self, ctx);
                    }
                    waiting.push((key, frame));
                }
                None => {}
            },
            ProctorCommand::Deliver { frame, kind } => socket::send(self, ctx, frame, kind),
            ProctorCommand::Drain => {
                socket::close_with(self, ctx, close::DRAINING, "server draining: reconnect")
            }
        }
    }
}
