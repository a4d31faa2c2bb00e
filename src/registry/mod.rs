//! The `SessionRegistry` actor, one per process: who is connected here and who listens to
//! what. A proctor message goes to the socket of its attempt (here, or through the bridge to
//! the instance that holds it); traffic from other instances goes to the local sockets.
//!
//! A student's status does not pass through the registry: its socket routes it through the
//! shared [`Router`] on its own thread, which assigns `seq`, counts `away_count`, records the
//! status in the store, serializes the `student_status` frame once and hands the same frame to
//! every receiver. The registry keeps the router's tables (who watches which quiz) and reports
//! what no socket can: a lost instance's students.

mod router;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use actix::prelude::*;

pub use router::{AttemptLine, Router};

use crate::{
    bridge::{Bridge, BridgeEvent, Delivery},
    protocol::{
        ids::{AttemptId, AttemptKey, ConnectionId, InstanceId, QuizId},
        status::StatusRecord,
        Frame, MessageKind, OfflineReason,
    },
    session::{ProctorCommand, StudentCommand},
};

/// Requests waiting for an answer from the registry before senders wait their turn.
const REQUEST_MAILBOX: usize = 4096;

/// The live socket of an attempt on this instance.
struct LiveSocket {
    connection: ConnectionId,
    recipient: Recipient<StudentCommand>,
}

/// Routes between the local sockets, and to and from the bridge.
pub struct SessionRegistry {
    instance: InstanceId,
    router: Arc<Router>,
    /// The live student socket of each attempt here.
    attempts: HashMap<AttemptKey, LiveSocket>,
    /// Every proctor socket here, watching or not.
    proctor_sockets: HashMap<ConnectionId, Recipient<ProctorCommand>>,
    /// Attempts of each quiz with a live socket here, for messages to a whole quiz.
    students: HashMap<QuizId, HashSet<AttemptId>>,
    /// Draining with hand-over: closed sockets are left to the cluster (see [`Drain`]).
    handing_over: bool,
}

impl SessionRegistry {
    /// A registry for `router`, whose store and bridge it uses too.
    pub fn new(instance: InstanceId, router: Arc<Router>) -> Self {
        SessionRegistry {
            handing_over: false,
            instance,
            router,
            attempts: HashMap::new(),
            proctor_sockets: HashMap::new(),
            students: HashMap::new(),
        }
    }

    fn bridge(&self) -> &dyn Bridge {
        self.router.bridge().as_ref()
    }

    /// Deliver to the local socket of `key`; false if it has none here.
    fn to_local_student(&self, key: &AttemptKey, frame: &Frame) -> bool {
        match self.attempts.get(key) {
            Some(socket) => {
                socket.recipient.do_send(StudentCommand::Deliver {
                    frame: frame.clone(),
                    kind: "proctor_message",
                });
                true
            }
            None => false,
        }
    }

    fn to_local_quiz_students(&self, quiz: &QuizId, frame: &Frame) -> usize {
        let Some(attempts) = self.students.get(quiz) else {
            return 0;
        };
        attempts
            .iter()
            .filter(|attempt| {
                self.to_local_student(
                    &AttemptKey {
                        quiz: quiz.clone(),
                        attempt: (*attempt).clone(),
                    },
                    frame,
                )
            })
            .count()
    }

    /// Forget that `key` has a socket here (it closed, or moved to another instance).
    fn drop_socket(&mut self, key: &AttemptKey) -> Option<LiveSocket> {
        if let Some(attempts) = self.students.get_mut(&key.quiz) {
            attempts.remove(&key.attempt);
            if attempts.is_empty() {
                self.students.remove(&key.quiz);
            }
        }
        self.attempts.remove(key)
    }

    fn unwatch(&mut self, quiz: &QuizId, connection: &ConnectionId) {
        if self.router.unwatch(quiz, connection) {
            self.bridge().unwatch(quiz);
        }
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Nothing on the hot path waits on the mailbox: sessions and the bridge send with
        // `do_send`, which ignores the capacity. The capacity bounds only the requests that
        // wait for an answer (watch, messages to students), which a busy registry should slow.
        ctx.set_mailbox_capacity(REQUEST_MAILBOX);
        self.bridge()
            .attach(self.instance.clone(), ctx.address().recipient());
        ctx.run_interval(Duration::from_secs(60), |act, _| act.router.evict_offline());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.bridge().detach();
    }
}

/// A student socket opened for `key` (and already reported connected through the router).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub key: AttemptKey,
    pub connection: ConnectionId,
    pub recipient: Recipient<StudentCommand>,
}

impl Handler<Connect> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        let live = LiveSocket {
            connection: msg.connection,
            recipient: msg.recipient,
        };
        if let Some(old) = self.attempts.insert(msg.key.clone(), live) {
            old.recipient.do_send(StudentCommand::Replaced);
        }
        self.students
            .entry(msg.key.quiz.clone())
            .or_default()
            .insert(msg.key.attempt.clone());
        self.bridge().claim(&msg.key);
    }
}

/// A student socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub key: AttemptKey,
    pub connection: ConnectionId,
    pub reason: OfflineReason,
}

impl Handler<Disconnect> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        let current = self
            .attempts
            .get(&msg.key)
            .is_some_and(|s| s.connection == msg.connection);
        if !current {
            return;
        }
        self.drop_socket(&msg.key);
        // When handing over, the client reconnects elsewhere; if it does not, a survivor
        // reports it once this instance has left.
        let report = !self.handing_over;
        if report {
            self.bridge().release(&msg.key);
        }
        self.router
            .disconnect(&msg.key, &msg.connection, msg.reason, report);
    }
}

/// A proctor socket opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProctorConnected {
    pub connection: ConnectionId,
    pub recipient: Recipient<ProctorCommand>,
}

impl Handler<ProctorConnected> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ProctorConnected, _: &mut Self::Context) {
        self.proctor_sockets.insert(msg.connection, msg.recipient);
    }
}

/// A proctor socket starts watching a quiz. Answered once the quiz's statuses, here and from
/// other instances, are routed to it, so a snapshot read afterwards misses nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    pub quiz: QuizId,
    pub connection: ConnectionId,
    pub recipient: Recipient<ProctorCommand>,
}

impl Handler<Watch> for SessionRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Watch, _: &mut Self::Context) -> Self::Result {
        if self.router.watch(&msg.quiz, &msg.connection, msg.recipient) {
            self.bridge().watch(&msg.quiz)
        } else {
            Box::pin(async {})
        }
    }
}

/// A proctor socket stops watching a quiz.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    pub quiz: QuizId,
    pub connection: ConnectionId,
}

impl Handler<Unwatch> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, _: &mut Self::Context) {
        self.unwatch(&msg.quiz, &msg.connection);
    }
}

/// A proctor socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProctorGone {
    pub connection: ConnectionId,
    pub quizzes: Vec<QuizId>,
}

impl Handler<ProctorGone> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ProctorGone, _: &mut Self::Context) {
        self.proctor_sockets.remove(&msg.connection);
        for quiz in &msg.quizzes {
            self.unwatch(quiz, &msg.connection);
        }
    }
}

/// Who sent a message to students, and what, for the event log.
pub struct MessageRecord {
    pub kind: MessageKind,
    pub author: String,
    pub text: String,
    pub at: u64,
}

/// A proctor message for one attempt, wherever its socket is.
#[derive(Message)]
#[rtype(result = "Delivery")]
pub struct SendToStudent {
    pub key: AttemptKey,
    pub frame: Frame,
    pub record: MessageRecord,
}

impl Handler<SendToStudent> for SessionRegistry {
    type Result = ResponseFuture<Delivery>;

    fn handle(&mut self, msg: SendToStudent, _: &mut Self::Context) -> Self::Result {
        self.router
            .record_message(&msg.key.quiz, Some(&msg.key), &msg.record);
        if self.to_local_student(&msg.key, &msg.frame) {
            return Box::pin(async { Delivery::Delivered });
        }
        self.bridge().send_to_attempt(&msg.key, &msg.frame)
    }
}

/// A message for every student of a quiz (the LMS API); answers how many sockets here got it.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct BroadcastToQuiz {
    pub quiz: QuizId,
    pub frame: Frame,
    pub record: MessageRecord,
}

impl Handler<BroadcastToQuiz> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, msg: BroadcastToQuiz, _: &mut Self::Context) -> usize {
        self.router.record_message(&msg.quiz, None, &msg.record);
        self.bridge()
            .publish_to_quiz_students(&msg.quiz, &msg.frame);
        self.to_local_quiz_students(&msg.quiz, &msg.frame)
    }
}

/// The server drains: every socket is closed with 1012 so its client reconnects elsewhere.
/// In a cluster the closed students are not reported offline here: the instance leaves with
/// its claims ([`LeaveCluster`]) and a survivor reports those who did not reconnect. Answers
/// how many sockets were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

impl Handler<Drain> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> usize {
        self.handing_over = self.bridge().hands_over_on_drain();
        let mut told = 0;
        for socket in self.attempts.values() {
            socket.recipient.do_send(StudentCommand::Drain);
            told += 1;
        }
        for proctor in self.proctor_sockets.values() {
            proctor.do_send(ProctorCommand::Drain);
            told += 1;
        }
        told
    }
}

/// Whether this drain hands its students over to the cluster.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct HandingOver;

impl Handler<HandingOver> for SessionRegistry {
    type Result = bool;

    fn handle(&mut self, _: HandingOver, _: &mut Self::Context) -> bool {
        self.handing_over
    }
}

/// The drain is done: leave the cluster (with the claims in place when handing over).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveCluster;

impl Handler<LeaveCluster> for SessionRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: LeaveCluster, _: &mut Self::Context) -> Self::Result {
        if self.handing_over {
            let left = self.bridge().leave_after_drain();
            // Bounded: a Redis that does not answer lets the liveness key expire instead.
            Box::pin(async move {
                let _ = actix_rt::time::timeout(std::time::Duration::from_secs(2), left).await;
            })
        } else {
            self.bridge().detach();
            Box::pin(async {})
        }
    }
}

/// Attempts whose instance was lost, with their latest status read from the store.
#[derive(Message)]
#[rtype(result = "()")]
struct ReportLost {
    lost: Vec<(AttemptKey, Option<Arc<StatusRecord>>)>,
}

impl Handler<ReportLost> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ReportLost, _: &mut Self::Context) {
        for (key, stored) in msg.lost {
            if !self.attempts.contains_key(&key) {
                self.router.lost(&key, stored);
            }
        }
    }
}

impl Handler<BridgeEvent> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, event: BridgeEvent, ctx: &mut Self::Context) {
        match event {
            BridgeEvent::ToProctors {
                quiz,
                attempt,
                frame,
            } => self
                .router
                .to_local_proctors(&quiz, attempt.as_ref(), &frame),
            BridgeEvent::ToAttempt { key, frame } => {
                self.to_local_student(&key, &frame);
            }
            BridgeEvent::ToQuizStudents { quiz, frame } => {
                self.to_local_quiz_students(&quiz, &frame);
            }
            BridgeEvent::AttemptTaken { key } => {
                if let Some(socket) = self.drop_socket(&key) {
                    socket.recipient.do_send(StudentCommand::Replaced);
                }
                // The other instance continues the attempt's `seq` from the store.
                self.router.forget(&key);
            }
            BridgeEvent::AttemptsLost { attempts } => {
                let store = self.router.store().clone();
                let read = async move {
                    let mut lost = Vec::with_capacity(attempts.len());
                    for key in attempts {
                        let stored = store.latest(&key).await.unwrap_or_else(|e| {
                            log::warn!("reading {key} for an instance loss: {e}");
                            None
                        });
                        lost.push((key, stored));
                    }
                    ReportLost { lost }
                };
                ctx.spawn(read.into_actor(self).map(|msg, act, ctx| {
                    Handler::handle(act, msg, ctx);
                }));
            }
        }
    }
}
