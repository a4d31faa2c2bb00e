//! The records of an exam, kept for after it: one row per attempt and an append-only log of
//! what happened, in SQLite (the embedded default) or PostgreSQL/Aurora.
//!
//! # Contract
//!
//! - Routing hands events to a [`Recorder`] and never waits: the recorder queues them for the
//!   persistence actor ([`queue::RecordQueue`]), which writes them in batches on its own
//!   thread ([`db::DbWriter`] on a `SyncArbiter`).
//! - **No event is lost.** A failed write is retried with backoff; while the database is away,
//!   events wait in a bounded queue and, past its bound, in an append-only spool file on disk,
//!   replayed in order when the database returns. The queue is mirrored in a journal file
//!   ([`journal`]), so even a killed process (kill -9) leaves its queued events for the next
//!   start of the instance to replay. On drain the queue is flushed before exit.
//! - **No event is written twice.** Each event has a unique id; the write ignores an id
//!   already present, so a retried batch adds only what was missing, and the attempt's
//!   counters move only for events actually added.
//! - The latest status of each attempt is written too (coalesced: see [`queue`]), so a
//!   snapshot after a restart lists every attempt with its last known status.

pub mod db;
pub mod journal;
pub mod queue;
pub mod schema;
pub mod spool;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::protocol::{
    ids::{AttemptKey, InstanceId, QuizId, UserId},
    status::StatusRecord,
    MessageKind, UserStatus,
};

pub use queue::Recorder;

/// What happened, as the log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A socket for the attempt opened.
    Connected,
    /// The attempt's socket went away (`detail.reason`).
    Disconnected,
    /// `user_status` changed other than into or out of away (`detail.from`, `detail.to`).
    StatusChange,
    /// The student left the exam page (switched tab, minimised).
    Away,
    /// The student came back to the exam page.
    Back,
    /// The current question changed (`detail.from`, `detail.to`).
    QuestionChange,
    /// The attempt was submitted (`detail.score`).
    Submitted,
    /// A proctor's chat line or warning (`detail.kind`, `detail.author`, `detail.text`).
    ProctorMessage,
    /// A student's chat line to the proctors (`detail.text`).
    StudentMessage,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connected => "connected",
            EventKind::Disconnected => "disconnected",
            EventKind::StatusChange => "status_change",
            EventKind::Away => "away",
            EventKind::Back => "back",
            EventKind::QuestionChange => "question_change",
            EventKind::Submitted => "submitted",
            EventKind::ProctorMessage => "proctor_message",
            EventKind::StudentMessage => "student_message",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvent {
    pub event_id: String,
    pub quiz_id: String,
    /// The attempt, or `*` for a message to a whole quiz.
    pub attempt_id: String,
    pub student_id: Option<String>,
    pub kind: EventKind,
    pub detail: serde_json::Value,
    /// Server time, ms since epoch.
    pub server_time: u64,
    pub instance_id: String,
}

/// Makes unique event ids: the instance, a per-process nonce (so a restarted instance of the
/// same name cannot reuse an id), and a counter.
pub struct EventIds {
    prefix: String,
    instance: InstanceId,
    next: AtomicU64,
}

impl EventIds {
    pub fn new(instance: &InstanceId) -> Arc<Self> {
        Arc::new(EventIds {
            prefix: format!("{instance}-{:016x}", rand::random::<u64>()),
            instance: instance.clone(),
            next: AtomicU64::new(0),
        })
    }

    /// A new event of this instance.
    pub fn event(
        &self,
        key: &AttemptKey,
        student: Option<&str>,
        kind: EventKind,
        detail: serde_json::Value,
        server_time: u64,
    ) -> RecordEvent {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        RecordEvent {
            // Zero-padded, so ids of one instance sort in the order they were made.
            event_id: format!("{}-{n:012}", self.prefix),
            quiz_id: key.quiz.to_string(),
            attempt_id: key.attempt.to_string(),
            student_id: student.map(str::to_string),
            kind,
            detail,
            server_time,
            instance_id: self.instance.to_string(),
        }
    }
}

/// The events a status update makes, from the previous status of the attempt (if any).
pub fn status_events(
    ids: &EventIds,
    previous: Option<&StatusRecord>,
    next: &StatusRecord,
) -> Vec<RecordEvent> {
    let student = next.fields.text("student_id");
    let at = next.last_seen;
    let mut out = Vec::new();
    let mut push = |kind, detail| {
        out.push(ids.event(&next.key, student.as_deref(), kind, detail, at));
    };
    let was_connected = previous.is_some_and(|p| p.connected);
    if next.connected && !was_connected {
        push(EventKind::Connected, json!({}));
    }
    if !next.connected && was_connected {
        let reason = next.reason.map(|r| r.as_str());
        push(EventKind::Disconnected, json!({ "reason": reason }));
    }
    let before = previous.map(|p| p.user_status);
    if before != Some(next.user_status) {
        match (before, next.user_status) {
            (_, UserStatus::Away) => push(EventKind::Away, json!({})),
            (Some(UserStatus::Away), UserStatus::Active) => push(EventKind::Back, json!({})),
            (from, to) => push(
                EventKind::StatusChange,
                json!({ "from": from.map(UserStatus::as_str), "to": to.as_str() }),
            ),
        }
    }
    let question = |r: &StatusRecord| r.fields.text("question_number_current");
    let (from, to) = (previous.and_then(question), question(next));
    if to.is_some() && from != to {
        push(EventKind::QuestionChange, json!({ "from": from, "to": to }));
    }
    let score = |r: &StatusRecord| {
        r.fields
            .raw("score")
            .map(|raw| raw.get().to_string())
            .filter(|s| s != "null")
    };
    if let (None, Some(score)) = (previous.and_then(score), score(next)) {
        let score: serde_json::Value =
            serde_json::from_str(&score).unwrap_or(serde_json::Value::String(score));
        push(EventKind::Submitted, json!({ "score": score }));
    }
    out
}

/// A proctor's (or the LMS's) message to one attempt, or to every attempt (`*`) of a quiz.
pub fn proctor_message_event(
    ids: &EventIds,
    quiz: &QuizId,
    attempt: Option<&AttemptKey>,
    kind: MessageKind,
    author: &str,
    text: &str,
    at: u64,
) -> RecordEvent {
    let key = match attempt {
        Some(key) => key.clone(),
        None => AttemptKey {
            quiz: quiz.clone(),
            attempt: crate::protocol::ids::AttemptId::new("*"),
        },
    };
    let kind = match kind {
        MessageKind::Chat => "chat",
        MessageKind::Warning => "warning",
    };
    ids.event(
        &key,
        None,
        EventKind::ProctorMessage,
        json!({ "kind": kind, "author": author, "text": text }),
        at,
    )
}

/// A student's chat line to the proctors of its quiz.
pub fn student_message_event(
    ids: &EventIds,
    key: &AttemptKey,
    student: &UserId,
    text: &str,
    at: u64,
) -> RecordEvent {
    ids.event(
        key,
        Some(student.as_str()),
        EventKind::StudentMessage,
        json!({ "text": text }),
        at,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        ids::AttemptId,
        status::{StatusChange, StatusRecord},
        OfflineReason,
    };

    fn key() -> AttemptKey {
        AttemptKey {
            quiz: QuizId::new("q1"),
            attempt: AttemptId::new("a1"),
        }
    }

    fn kinds(events: &[RecordEvent]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    fn report(prev: Option<&StatusRecord>, json: &str) -> StatusRecord {
        let data = serde_json::from_str(json).unwrap();
        StatusRecord::next(&key(), prev, StatusChange::Reported(data), 10)
    }

    #[test]
    fn an_attempt_tells_its_story_in_events() {
        let ids = EventIds::new(&InstanceId::new("i"));
        let connect = StatusRecord::next(
            &key(),
            None,
            StatusChange::Connected {
                student: UserId::new("s1"),
                name: None,
            },
            1,
        );
        assert_eq!(
            kinds(&status_events(&ids, None, &connect)),
            [EventKind::Connected, EventKind::StatusChange]
        );
        let q1 = report(
            Some(&connect),
            r#"{"student_id":"s1","user_status":"active","question_number_current":1,"score":null}"#,
        );
        assert_eq!(
            kinds(&status_events(&ids, Some(&connect), &q1)),
            [EventKind::QuestionChange]
        );
        let away = report(
            Some(&q1),
            r#"{"user_status":"away","question_number_current":1}"#,
        );
        assert_eq!(
            kinds(&status_events(&ids, Some(&q1), &away)),
            [EventKind::Away]
        );
        let back = report(
            Some(&away),
            r#"{"user_status":"active","question_number_current":2}"#,
        );
        assert_eq!(
            kinds(&status_events(&ids, Some(&away), &back)),
            [EventKind::Back, EventKind::QuestionChange]
        );
        let done = report(
            Some(&back),
            r#"{"user_status":"active","question_number_current":2,"score":87.5}"#,
        );
        let events = status_events(&ids, Some(&back), &done);
        assert_eq!(kinds(&events), [EventKind::Submitted]);
        assert_eq!(events[0].detail["score"], 87.5);
        let gone = StatusRecord::next(
            &key(),
            Some(&done),
            StatusChange::Offline(OfflineReason::Timeout),
            20,
        );
        let events = status_events(&ids, Some(&done), &gone);
        assert_eq!(
            kinds(&events),
            [EventKind::Disconnected, EventKind::StatusChange]
        );
        assert_eq!(events[0].detail["reason"], "timeout");
        // Every id differs.
        let mut all: Vec<String> = [connect, q1, away, back, done, gone]
            .windows(2)
            .flat_map(|w| status_events(&ids, Some(&w[0]), &w[1]))
            .map(|e| e.event_id)
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn a_repeated_status_makes_no_event() {
        let ids = EventIds::new(&InstanceId::new("i"));
        let a = report(
            None,
            r#"{"user_status":"active","question_number_current":3}"#,
        );
        let b = report(
            Some(&a),
            r#"{"user_status":"active","question_number_current":3}"#,
        );
        assert!(status_events(&ids, Some(&a), &b).is_empty());
    }
}
