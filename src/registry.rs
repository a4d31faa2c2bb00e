//! The `SessionRegistry` actor, one per process: who is connected here and who listens to
//! what. A student status goes to the proctors of its quiz (here, and through the bridge to
//! the instances that watch the quiz); a proctor message goes to the socket of its attempt
//! (here, or through the bridge to the instance that holds it).
//!
//! The registry is the one writer of attempt statuses on this instance: it assigns `seq`,
//! counts `away_count`, records the status in the store, serializes the `student_status`
//! frame once and hands the same frame to every receiver.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;

use crate::{
    bridge::{Bridge, BridgeEvent, Delivery},
    metrics::Metrics,
    now_ms,
    protocol::{
        ids::{AttemptId, AttemptKey, ConnectionId, InstanceId, QuizId, UserId},
        outbound,
        status::{StatusChange, StatusFields, StatusRecord},
        Frame, MessageKind, OfflineReason, UserStatus,
    },
    records::{self, EventIds, Recorder},
    session::{ProctorCommand, StudentCommand},
    store::StatusStore,
};

/// How long the registry keeps an offline attempt's latest status in memory (the store keeps
/// it for good); within this time a reconnect here needs no store read to continue `seq`.
const KEEP_OFFLINE: Duration = Duration::from_secs(600);

/// Requests waiting for an answer from the registry before senders wait their turn.
const REQUEST_MAILBOX: usize = 4096;

/// The live socket of an attempt on this instance.
struct LiveSocket {
    connection: ConnectionId,
    recipient: Recipient<StudentCommand>,
}

/// What the registry holds for one attempt.
#[derive(Default)]
struct AttemptEntry {
    latest: Option<Arc<StatusRecord>>,
    socket: Option<LiveSocket>,
    /// When the socket went away, for eviction.
    offline_since: Option<Instant>,
}

/// Routes between the local sockets, and to and from the bridge.
pub struct SessionRegistry {
    instance: InstanceId,
    attempts: HashMap<AttemptKey, AttemptEntry>,
    /// Every proctor socket here, watching or not.
    proctor_sockets: HashMap<ConnectionId, Recipient<ProctorCommand>>,
    /// Proctor sockets watching each quiz.
    proctors: HashMap<QuizId, HashMap<ConnectionId, Recipient<ProctorCommand>>>,
    /// Attempts of each quiz with a live socket here, for messages to a whole quiz.
    students: HashMap<QuizId, HashSet<AttemptId>>,
    store: Arc<dyn StatusStore>,
    bridge: Arc<dyn Bridge>,
    metrics: Arc<Metrics>,
    /// Where the event log goes, if records are kept.
    records: Option<(Recorder, Arc<EventIds>)>,
    /// Draining with hand-over: closed sockets are left to the cluster (see [`Drain`]).
    handing_over: bool,
}

impl SessionRegistry {
    pub fn new(
        instance: InstanceId,
        store: Arc<dyn StatusStore>,
        bridge: Arc<dyn Bridge>,
        metrics: Arc<Metrics>,
        recorder: Option<Recorder>,
    ) -> Self {
        SessionRegistry {
            records: recorder.map(|r| (r, EventIds::new(&instance))),
            handing_over: false,
            instance,
            attempts: HashMap::new(),
            proctor_sockets: HashMap::new(),
            proctors: HashMap::new(),
            students: HashMap::new(),
            store,
            bridge,
            metrics,
        }
    }

    /// Apply `change` to an attempt and send the new status to every proctor of its quiz.
    fn update(&mut self, key: &AttemptKey, change: StatusChange, received: Option<Instant>) {
        let entry = self.attempts.entry(key.clone()).or_default();
        let record = Arc::new(StatusRecord::next(
            key,
            entry.latest.as_deref(),
            change,
            now_ms(),
        ));
        if let Some((recorder, ids)) = &self.records {
            for event in records::status_events(ids, entry.latest.as_deref(), &record) {
                recorder.event(event);
            }
        }
        entry.latest = Some(record.clone());
        self.store.record(record.clone());
        let frame = outbound::student_status(&record);
        self.to_local_proctors(&key.quiz, Some(&key.attempt), &frame);
        self.bridge
            .publish_to_proctors(&key.quiz, Some(&key.attempt), &frame);
        if let Some(at) = received {
            self.metrics.routed(at.elapsed());
        }
    }

    fn to_local_proctors(&self, quiz: &QuizId, attempt: Option<&AttemptId>, frame: &Frame) {
        let Some(watchers) = self.proctors.get(quiz) else {
            return;
        };
        for proctor in watchers.values() {
            let command = match attempt {
                Some(attempt) => ProctorCommand::Status {
                    key: AttemptKey {
                        quiz: quiz.clone(),
                        attempt: attempt.clone(),
                    },
                    frame: frame.clone(),
                },
                None => ProctorCommand::Deliver {
                    frame: frame.clone(),
                    kind: "student_message",
                },
            };
            proctor.do_send(command);
        }
    }

    /// Deliver to the local socket of `key`; false if it has none here.
    fn to_local_student(&self, key: &AttemptKey, frame: &Frame) -> bool {
        match self.attempts.get(key).and_then(|e| e.socket.as_ref()) {
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
    fn drop_socket(&mut self, key: &AttemptKey) {
        if let Some(entry) = self.attempts.get_mut(key) {
            entry.socket = None;
            entry.offline_since = Some(Instant::now());
        }
        if let Some(attempts) = self.students.get_mut(&key.quiz) {
            attempts.remove(&key.attempt);
            if attempts.is_empty() {
                self.students.remove(&key.quiz);
            }
        }
    }

    fn unwatch(&mut self, quiz: &QuizId, connection: &ConnectionId) {
        if let Some(watchers) = self.proctors.get_mut(quiz) {
            if watchers.remove(connection).is_some() {
                self.bridge.unwatch(quiz);
            }
            if watchers.is_empty() {
                self.proctors.remove(quiz);
            }
        }
    }

    fn evict_offline(&mut self) {
        let before = self.attempts.len();
        self.attempts.retain(|_, e| {
            e.socket.is_some() || e.offline_since.is_none_or(|t| t.elapsed() < KEEP_OFFLINE)
        });
        let evicted = before - self.attempts.len();
        if evicted > 0 {
            log::debug!("evicted {evicted} offline attempts from the registry");
        }
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Routing never waits on the mailbox: sessions and the bridge send statuses with
        // `do_send`, which ignores the capacity. The capacity bounds only the requests that
        // wait for an answer (watch, messages to students), which a busy registry should slow.
        ctx.set_mailbox_capacity(REQUEST_MAILBOX);
        self.bridge
            .attach(self.instance.clone(), ctx.address().recipient());
        ctx.run_interval(Duration::from_secs(60), |act, _| act.evict_offline());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.bridge.detach();
    }
}

/// A student socket opened for `key`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub key: AttemptKey,
    pub connection: ConnectionId,
    pub student: UserId,
    pub name: Option<String>,
    /// The attempt's latest status from the store, read before the upgrade.
    pub prior: Option<Arc<StatusRecord>>,
    pub recipient: Recipient<StudentCommand>,
}

impl Handler<Connect> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        let entry = self.attempts.entry(msg.key.clone()).or_default();
        if let Some(prior) = msg.prior {
            if entry.latest.as_ref().is_none_or(|l| l.seq < prior.seq) {
                entry.latest = Some(prior);
            }
        }
        let live = LiveSocket {
            connection: msg.connection,
            recipient: msg.recipient,
        };
        if let Some(old) = entry.socket.replace(live) {
            old.recipient.do_send(StudentCommand::Replaced);
        }
        entry.offline_since = None;
        self.students
            .entry(msg.key.quiz.clone())
            .or_default()
            .insert(msg.key.attempt.clone());
        self.bridge.claim(&msg.key);
        self.update(
            &msg.key,
            StatusChange::Connected {
                student: msg.student,
                name: msg.name,
            },
            None,
        );
    }
}

/// A student sent a status (ids already checked against its token).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StudentReport {
    pub key: AttemptKey,
    pub connection: ConnectionId,
    pub data: StatusFields,
    /// When the frame arrived on its socket, for the routing latency metric.
    pub received: Instant,
}

impl Handler<StudentReport> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: StudentReport, _: &mut Self::Context) {
        let current = self
            .attempts
            .get(&msg.key)
            .and_then(|e| e.socket.as_ref())
            .is_some_and(|s| s.connection == msg.connection);
        // A report from a socket already replaced is dropped: the newer socket speaks now.
        if current {
            self.update(
                &msg.key,
                StatusChange::Reported(msg.data),
                Some(msg.received),
            );
        }
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
            .and_then(|e| e.socket.as_ref())
            .is_some_and(|s| s.connection == msg.connection);
        if !current {
            return;
        }
        self.drop_socket(&msg.key);
        if self.handing_over {
            // The client reconnects elsewhere; if it does not, a survivor reports it once
            // this instance has left.
            return;
        }
        self.bridge.release(&msg.key);
        self.update(&msg.key, StatusChange::Offline(msg.reason), None);
    }
}

/// A student's chat line for its quiz's proctors.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StudentChat {
    pub key: AttemptKey,
    pub student: UserId,
    pub name: Option<String>,
    pub text: String,
}

impl Handler<StudentChat> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: StudentChat, _: &mut Self::Context) {
        let now = now_ms();
        if let Some((recorder, ids)) = &self.records {
            recorder.event(records::student_message_event(
                ids,
                &msg.key,
                &msg.student,
                &msg.text,
                now,
            ));
        }
        let frame =
            outbound::student_message(&msg.key, &msg.student, msg.name.as_deref(), &msg.text, now);
        self.to_local_proctors(&msg.key.quiz, None, &frame);
        self.bridge.publish_to_proctors(&msg.key.quiz, None, &frame);
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
        let watchers = self.proctors.entry(msg.quiz.clone()).or_default();
        match watchers.entry(msg.connection) {
            Entry::Vacant(slot) => {
                slot.insert(msg.recipient);
                self.bridge.watch(&msg.quiz)
            }
            Entry::Occupied(_) => Box::pin(async {}),
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

impl SessionRegistry {
    fn record_message(&self, quiz: &QuizId, attempt: Option<&AttemptKey>, m: &MessageRecord) {
        if let Some((recorder, ids)) = &self.records {
            recorder.event(records::proctor_message_event(
                ids, quiz, attempt, m.kind, &m.author, &m.text, m.at,
            ));
        }
    }
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
        self.record_message(&msg.key.quiz, Some(&msg.key), &msg.record);
        if self.to_local_student(&msg.key, &msg.frame) {
            return Box::pin(async { Delivery::Delivered });
        }
        self.bridge.send_to_attempt(&msg.key, &msg.frame)
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
        self.record_message(&msg.quiz, None, &msg.record);
        self.bridge.publish_to_quiz_students(&msg.quiz, &msg.frame);
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
        self.handing_over = self.bridge.hands_over_on_drain();
        let mut told = 0;
        for socket in self.attempts.values().filter_map(|e| e.socket.as_ref()) {
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
            let left = self.bridge.leave_after_drain();
            // Bounded: a Redis that does not answer lets the liveness key expire instead.
            Box::pin(async move {
                let _ = actix_rt::time::timeout(std::time::Duration::from_secs(2), left).await;
            })
        } else {
            self.bridge.detach();
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
            let entry = self.attempts.entry(key.clone()).or_default();
            if entry.socket.is_some() {
                continue; // reconnected here in the meantime
            }
            if let Some(stored) = stored {
                if entry.latest.as_ref().is_none_or(|l| l.seq < stored.seq) {
                    entry.latest = Some(stored);
                }
            }
            let already_offline = entry
                .latest
                .as_ref()
                .is_some_and(|l| l.user_status == UserStatus::Offline && !l.connected);
            if !already_offline {
                self.update(
                    &key,
                    StatusChange::Offline(OfflineReason::InstanceLost),
                    None,
                );
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
            } => self.to_local_proctors(&quiz, attempt.as_ref(), &frame),
            BridgeEvent::ToAttempt { key, frame } => {
                self.to_local_student(&key, &frame);
            }
            BridgeEvent::ToQuizStudents { quiz, frame } => {
                self.to_local_quiz_students(&quiz, &frame);
            }
            BridgeEvent::AttemptTaken { key } => {
                if let Some(socket) = self.attempts.get(&key).and_then(|e| e.socket.as_ref()) {
                    socket.recipient.do_send(StudentCommand::Replaced);
                }
                self.drop_socket(&key);
                // The other instance continues the attempt's `seq` from the store.
                self.attempts.remove(&key);
            }
            BridgeEvent::AttemptsLost { attempts } => {
                let store = self.store.clone();
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
