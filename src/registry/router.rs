//! The `Router`: routing that runs on whichever thread a message arrives on, so a student's
//! status goes from its socket straight to the proctors of its quiz, the store, the bridge and
//! the event log, without a hop through the registry's thread and back.
//!
//! Each attempt on this instance has one [`AttemptLine`]: its latest status and the socket
//! that speaks for it. Every change of an attempt (a status from its socket; connect,
//! disconnect or instance loss from the registry) is made under the line's lock, and the new
//! status is handed to every receiver before the lock is released. So `seq` counts up without
//! gaps and every receiver (proctor mailboxes, the bridge, the store, the journal) gets an
//! attempt's statuses in `seq` order, whichever thread made them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::{Duration, Instant},
};

use actix::Recipient;

use super::MessageRecord;
use crate::{
    bridge::Bridge,
    metrics::Metrics,
    now_ms,
    protocol::{
        ids::{AttemptId, AttemptKey, ConnectionId, InstanceId, QuizId, UserId},
        outbound,
        status::{StatusChange, StatusFields, StatusRecord},
        Frame, OfflineReason, UserStatus,
    },
    records::{self, EventIds, Recorder},
    session::ProctorCommand,
    store::{self, StatusStore},
};

/// How long an offline attempt's line is kept in memory (the store keeps its status for
/// good); within this time a reconnect here needs no store read to continue `seq`.
const KEEP_OFFLINE: Duration = Duration::from_secs(600);

/// Take a lock even if a thread panicked while holding it: the state behind every lock here
/// is replaced whole (a record, an entry), never left half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What this instance knows of one attempt.
#[derive(Default)]
struct LineState {
    latest: Option<Arc<StatusRecord>>,
    /// The socket whose reports count; reports from any other (a replaced socket) are dropped.
    speaker: Option<ConnectionId>,
    /// When the last socket went away, for eviction.
    offline_since: Option<Instant>,
}

/// One attempt's line: its socket holds it and reports through it without a map lookup.
pub struct AttemptLine {
    key: AttemptKey,
    state: Mutex<LineState>,
}

impl AttemptLine {
    fn new(key: &AttemptKey) -> Self {
        AttemptLine {
            key: key.clone(),
            state: Mutex::default(),
        }
    }
}

/// Proctor sockets of this instance watching one quiz.
type Watchers = HashMap<ConnectionId, Recipient<ProctorCommand>>;

/// What the routing of a status needs, shared by the registry and every session.
pub struct Router {
    lines: Mutex<HashMap<AttemptKey, Arc<AttemptLine>>>,
    /// Proctor sockets watching each quiz; written by the registry, read on every status.
    proctors: RwLock<HashMap<QuizId, Watchers>>,
    store: Arc<dyn StatusStore>,
    bridge: Arc<dyn Bridge>,
    metrics: Arc<Metrics>,
    /// Where the event log goes, if records are kept.
    records: Option<(Recorder, Arc<EventIds>)>,
}

impl Router {
    pub fn new(
        instance: &InstanceId,
        store: Arc<dyn StatusStore>,
        bridge: Arc<dyn Bridge>,
        metrics: Arc<Metrics>,
        recorder: Option<Recorder>,
    ) -> Self {
        Router {
            lines: Mutex::default(),
            proctors: RwLock::default(),
            records: recorder.map(|r| (r, EventIds::new(instance))),
            store,
            bridge,
            metrics,
        }
    }

    /// The store statuses are recorded in.
    pub fn store(&self) -> &Arc<dyn StatusStore> {
        &self.store
    }

    /// The bridge statuses are published on.
    pub fn bridge(&self) -> &Arc<dyn Bridge> {
        &self.bridge
    }

    fn line(&self, key: &AttemptKey) -> Arc<AttemptLine> {
        lock(&self.lines)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(AttemptLine::new(key)))
            .clone()
    }

    /// A socket opened for `key` here: it speaks for the attempt from now on, and the attempt
    /// is reported connected. `prior` is the attempt's latest status from the store, read
    /// before the upgrade. Returns the line the socket reports through.
    pub fn connect(
        &self,
        key: &AttemptKey,
        connection: &ConnectionId,
        student: UserId,
        name: Option<String>,
        prior: Option<Arc<StatusRecord>>,
    ) -> Arc<AttemptLine> {
        let line = self.line(key);
        let mut state = lock(&line.state);
        state.latest = store::newest(state.latest.take(), prior);
        state.speaker = Some(connection.clone());
        state.offline_since = None;
        self.update(
            key,
            &mut state,
            StatusChange::Connected { student, name },
            None,
        );
        drop(state);
        line
    }

    /// A status from the socket `from`, routed at once unless that socket no longer speaks
    /// for the attempt. When this returns, the status is with every local proctor's socket,
    /// the bridge and the store, and its events are in the journal.
    pub fn report(
        &self,
        line: &AttemptLine,
        from: &ConnectionId,
        data: StatusFields,
        received: Instant,
    ) {
        let mut state = lock(&line.state);
        if state.speaker.as_ref() == Some(from) {
            self.update(
                &line.key,
                &mut state,
                StatusChange::Reported(data),
                Some(received),
            );
        }
    }

    /// The socket `from` of `key` closed: the attempt goes offline, unless another socket
    /// speaks for it by now. With `report` false (a drain handing students over) the attempt
    /// is only let go, for the cluster to report if its client does not come back.
    pub fn disconnect(
        &self,
        key: &AttemptKey,
        from: &ConnectionId,
        reason: OfflineReason,
        report: bool,
    ) {
        // An attempt with no line here has no socket speaking for it: nothing to report.
        let Some(line) = lock(&self.lines).get(key).cloned() else {
            return;
        };
        let mut state = lock(&line.state);
        if state.speaker.as_ref() != Some(from) {
            return;
        }
        state.speaker = None;
        state.offline_since = Some(Instant::now());
        if report {
            self.update(key, &mut state, StatusChange::Offline(reason), None);
        }
    }

    /// The instance that held `key` is gone: report the attempt offline once, from the newer
    /// of what this instance knows and `stored`, unless a socket here speaks for it again.
    pub fn lost(&self, key: &AttemptKey, stored: Option<Arc<StatusRecord>>) {
        let line = self.line(key);
        let mut state = lock(&line.state);
        if state.speaker.is_some() {
            return; // reconnected here in the meantime
        }
        state.latest = store::newest(state.latest.take(), stored);
        let already_offline = state
            .latest
            .as_ref()
            .is_some_and(|l| l.user_status == UserStatus::Offline && !l.connected);
        if state.offline_since.is_none() {
            state.offline_since = Some(Instant::now());
        }
        if !already_offline {
            self.update(
                key,
                &mut state,
                StatusChange::Offline(OfflineReason::InstanceLost),
                None,
            );
        }
    }

    /// Another instance took `key` over: forget it here (that instance continues its `seq`
    /// from the store), and drop whatever the socket here still reports.
    pub fn forget(&self, key: &AttemptKey) {
        if let Some(line) = lock(&self.lines).remove(key) {
            lock(&line.state).speaker = None;
        }
    }

    /// Forget attempts offline for longer than [`KEEP_OFFLINE`].
    pub fn evict_offline(&self) {
        let mut lines = lock(&self.lines);
        let before = lines.len();
        lines.retain(|_, line| {
            let state = lock(&line.state);
            state.speaker.is_some()
                || state
                    .offline_since
                    .is_none_or(|t| t.elapsed() < KEEP_OFFLINE)
        });
        let evicted = before - lines.len();
        if evicted > 0 {
            log::debug!("evicted {evicted} offline attempts from the registry");
        }
    }

    /// Apply `change` to the attempt and hand the new status to every receiver, all under
    /// the line's lock (see the module's documentation).
    fn update(
        &self,
        key: &AttemptKey,
        state: &mut LineState,
        change: StatusChange,
        received: Option<Instant>,
    ) {
        let record = Arc::new(StatusRecord::next(
            key,
            state.latest.as_deref(),
            change,
            now_ms(),
        ));
        if let Some((recorder, ids)) = &self.records {
            for event in records::status_events(ids, state.latest.as_deref(), &record) {
                recorder.event(event);
            }
        }
        state.latest = Some(record.clone());
        self.store.record(record.clone());
        let frame = outbound::student_status(&record);
        self.to_local_proctors(&key.quiz, Some(&key.attempt), &frame);
        self.bridge
            .publish_to_proctors(&key.quiz, Some(&key.attempt), &frame);
        if let Some(at) = received {
            self.metrics.routed(at.elapsed());
        }
    }

    /// A student's chat line, to the proctors of its quiz here and elsewhere. When this
    /// returns, its event is in the journal.
    pub fn chat(&self, key: &AttemptKey, student: &UserId, name: Option<&str>, text: &str) {
        let now = now_ms();
        if let Some((recorder, ids)) = &self.records {
            recorder.event(records::student_message_event(ids, key, student, text, now));
        }
        let frame = outbound::student_message(key, student, name, text, now);
        self.to_local_proctors(&key.quiz, None, &frame);
        self.bridge.publish_to_proctors(&key.quiz, None, &frame);
    }

    /// A proctor's message to one attempt (`attempt`) or to a whole quiz, for the event log.
    pub fn record_message(&self, quiz: &QuizId, attempt: Option<&AttemptKey>, m: &MessageRecord) {
        if let Some((recorder, ids)) = &self.records {
            recorder.event(records::proctor_message_event(
                ids, quiz, attempt, m.kind, &m.author, &m.text, m.at,
            ));
        }
    }

    /// Hand `frame` to the proctor sockets here watching `quiz`: a `student_status` of
    /// `attempt`, or a `student_message` when `attempt` is `None`.
    pub fn to_local_proctors(&self, quiz: &QuizId, attempt: Option<&AttemptId>, frame: &Frame) {
        let proctors = self.proctors.read().unwrap_or_else(|p| p.into_inner());
        let Some(watchers) = proctors.get(quiz) else {
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

    /// A proctor socket watches `quiz`; false if it already did. Every status routed after
    /// this returns reaches it.
    pub fn watch(
        &self,
        quiz: &QuizId,
        connection: &ConnectionId,
        recipient: Recipient<ProctorCommand>,
    ) -> bool {
        let mut proctors = self.proctors.write().unwrap_or_else(|p| p.into_inner());
        let watchers = proctors.entry(quiz.clone()).or_default();
        if watchers.contains_key(connection) {
            return false;
        }
        watchers.insert(connection.clone(), recipient);
        true
    }

    /// A proctor socket stops watching `quiz`; false if it did not watch it.
    pub fn unwatch(&self, quiz: &QuizId, connection: &ConnectionId) -> bool {
        let mut proctors = self.proctors.write().unwrap_or_else(|p| p.into_inner());
        let Some(watchers) = proctors.get_mut(quiz) else {
            return false;
        };
        let removed = watchers.remove(connection).is_some();
        if watchers.is_empty() {
            proctors.remove(quiz);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use actix::prelude::*;
    use tokio::sync::mpsc;

    use super::*;
    use crate::{bridge::MemoryBridge, store::MemoryStore};

    /// A proctor socket that passes on the `seq` and `user_status` of every status it gets.
    struct FakeProctor(mpsc::UnboundedSender<(u64, String)>);

    impl Actor for FakeProctor {
        type Context = Context<Self>;
    }

    impl Handler<ProctorCommand> for FakeProctor {
        type Result = ();

        fn handle(&mut self, cmd: ProctorCommand, _: &mut Self::Context) {
            if let ProctorCommand::Status { frame, .. } = cmd {
                let v: serde_json::Value = serde_json::from_str(&frame).expect("a status frame");
                let seq = v["seq"].as_u64().expect("seq");
                let status = v["data"]["user_status"].as_str().unwrap_or("").to_string();
                let _ = self.0.send((seq, status));
            }
        }
    }

    fn key() -> AttemptKey {
        AttemptKey {
            quiz: QuizId::new("q1"),
            attempt: AttemptId::new("a1"),
        }
    }

    fn status(user_status: &str) -> StatusFields {
        serde_json::from_str(&format!(r#"{{"user_status":"{user_status}"}}"#)).expect("fields")
    }

    /// A router on a memory store and a single-node bridge, with one proctor watching `q1`.
    fn router_with_proctor() -> (Arc<Router>, mpsc::UnboundedReceiver<(u64, String)>) {
        let router = Arc::new(Router::new(
            &InstanceId::new("i1"),
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryBridge::single()),
            Arc::new(Metrics::default()),
            None,
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let proctor = FakeProctor(tx).start();
        assert!(router.watch(&key().quiz, &ConnectionId::generate(), proctor.recipient()));
        (router, rx)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<(u64, String)>) -> (u64, String) {
        actix_rt::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a status within 5 s")
            .expect("the proctor is alive")
    }

    #[actix_rt::test]
    async fn statuses_from_many_threads_reach_a_proctor_in_seq_order() {
        let (router, mut rx) = router_with_proctor();
        let socket = ConnectionId::generate();
        let line = router.connect(&key(), &socket, UserId::new("s1"), None, None);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (router, line, socket) = (router.clone(), line.clone(), socket.clone());
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        router.report(&line, &socket, status("active"), Instant::now());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a reporting thread");
        }
        for expected in 1..=1001 {
            assert_eq!(next(&mut rx).await.0, expected, "seq in order, no gap");
        }
        let stored = router
            .store
            .latest(&key())
            .await
            .expect("store")
            .expect("a status");
        assert_eq!(stored.seq, 1001);
    }

    #[actix_rt::test]
    async fn a_replaced_socket_is_not_heard_and_its_close_reports_nothing() {
        let (router, mut rx) = router_with_proctor();
        let (old, new) = (ConnectionId::generate(), ConnectionId::generate());
        let old_line = router.connect(&key(), &old, UserId::new("s1"), None, None);
        assert_eq!(next(&mut rx).await, (1, "active".into()));
        let line = router.connect(&key(), &new, UserId::new("s1"), None, None);
        assert_eq!(next(&mut rx).await, (2, "active".into()));
        router.report(&old_line, &old, status("away"), Instant::now());
        router.disconnect(&key(), &old, OfflineReason::Disconnected, true);
        router.report(&line, &new, status("away"), Instant::now());
        assert_eq!(
            next(&mut rx).await,
            (3, "away".into()),
            "only the new socket speaks"
        );
        router.disconnect(&key(), &new, OfflineReason::Disconnected, true);
        assert_eq!(next(&mut rx).await, (4, "offline".into()));
    }

    #[actix_rt::test]
    async fn a_lost_attempt_is_reported_once_and_not_while_connected_here() {
        let (router, mut rx) = router_with_proctor();
        let socket = ConnectionId::generate();
        router.connect(&key(), &socket, UserId::new("s1"), None, None);
        assert_eq!(next(&mut rx).await, (1, "active".into()));
        router.lost(&key(), None);
        router.disconnect(&key(), &socket, OfflineReason::Disconnected, false);
        router.lost(&key(), None);
        assert_eq!(next(&mut rx).await, (2, "offline".into()));
        router.lost(&key(), None);
        router.connect(&key(), &socket, UserId::new("s1"), None, None);
        assert_eq!(
            next(&mut rx).await,
            (3, "active".into()),
            "the second loss reported nothing"
        );
    }

    #[actix_rt::test]
    async fn a_forgotten_attempt_continues_from_what_the_store_says() {
        let (router, mut rx) = router_with_proctor();
        let socket = ConnectionId::generate();
        let line = router.connect(&key(), &socket, UserId::new("s1"), None, None);
        assert_eq!(next(&mut rx).await.0, 1);
        router.forget(&key());
        router.report(&line, &socket, status("away"), Instant::now());
        let mut prior = StatusRecord::next(&key(), None, StatusChange::Reported(status("away")), 1);
        prior.seq = 41;
        router.connect(
            &key(),
            &socket,
            UserId::new("s1"),
            None,
            Some(Arc::new(prior)),
        );
        assert_eq!(
            next(&mut rx).await,
            (42, "away".into()),
            "after the store's seq, kept away, and the forgotten socket unheard"
        );
    }
}
