//! What the server sends: each function serializes one message once, into a [`Frame`] that
//! every receiver of it shares.

use serde::Serialize;
use serde_json::value::RawValue;

use super::{
    ids::{AttemptKey, ConnectionId, InstanceId, QuizId, UserId},
    inbound::MessageId,
    status::{StatusRecord, WithSeq},
    ErrorCode, Frame, MessageKind,
};
use crate::auth::Role;

fn frame(value: &impl Serialize) -> Frame {
    // Every message here is built from strings, numbers and raw JSON that was valid when read,
    // so serialization cannot fail; an empty object is still a valid frame if it ever did.
    serde_json::to_string(value)
        .unwrap_or_else(|_| "{}".to_string())
        .into()
}

pub fn welcome(
    connection: &ConnectionId,
    instance: &InstanceId,
    role: Role,
    heartbeat_ms: u64,
) -> Frame {
    #[derive(Serialize)]
    struct Welcome<'a> {
        r#type: &'static str,
        connection_id: &'a ConnectionId,
        instance_id: &'a InstanceId,
        role: Role,
        heartbeat_ms: u64,
    }
    frame(&Welcome {
        r#type: "welcome",
        connection_id: connection,
        instance_id: instance,
        role,
        heartbeat_ms,
    })
}

pub fn ack(id: &MessageId) -> Frame {
    #[derive(Serialize)]
    struct Ack<'a> {
        r#type: &'static str,
        id: &'a RawValue,
    }
    frame(&Ack {
        r#type: "ack",
        id: id.raw(),
    })
}

pub fn error(id: Option<&MessageId>, code: ErrorCode, message: &str) -> Frame {
    #[derive(Serialize)]
    struct Error<'a> {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        code: ErrorCode,
        message: &'a str,
    }
    frame(&Error {
        r#type: "error",
        id: id.map(MessageId::raw),
        code,
        message,
    })
}

pub fn pong() -> Frame {
    Frame::from_static(r#"{"type":"pong"}"#)
}

pub fn snapshot<'a>(quiz: &'a QuizId, students: impl Iterator<Item = &'a StatusRecord>) -> Frame {
    frame(&Students::new("snapshot", quiz, students))
}

/// `{"type"?, "quiz_id", "students": [STATUS...]}`: the snapshot and the HTTP listing.
#[derive(Serialize)]
pub struct Students<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    quiz_id: &'a QuizId,
    students: Vec<WithSeq<'a>>,
}

impl<'a> Students<'a> {
    fn new(
        kind: &'static str,
        quiz: &'a QuizId,
        students: impl Iterator<Item = &'a StatusRecord>,
    ) -> Self {
        Students {
            r#type: Some(kind),
            quiz_id: quiz,
            students: students.map(WithSeq).collect(),
        }
    }

    /// The body of `GET /api/v1/quizzes/{quiz_id}/students`.
    pub fn listing(quiz: &'a QuizId, students: impl Iterator<Item = &'a StatusRecord>) -> Self {
        Students {
            r#type: None,
            ..Students::new("", quiz, students)
        }
    }
}

pub fn student_status(record: &StatusRecord) -> Frame {
    #[derive(Serialize)]
    struct StudentStatus<'a> {
        r#type: &'static str,
        quiz_id: &'a QuizId,
        seq: u64,
        data: &'a super::status::StatusFields,
    }
    frame(&StudentStatus {
        r#type: "student_status",
        quiz_id: &record.key.quiz,
        seq: record.seq,
        data: &record.fields,
    })
}

/// A student's chat line, as its quiz's proctors receive it.
pub fn student_message(
    key: &AttemptKey,
    student: &UserId,
    student_name: Option<&str>,
    text: &str,
    ts: u64,
) -> Frame {
    #[derive(Serialize)]
    struct StudentMessage<'a> {
        r#type: &'static str,
        quiz_id: &'a QuizId,
        quiz_attempt_id: &'a super::ids::AttemptId,
        student_id: &'a UserId,
        #[serde(skip_serializing_if = "Option::is_none")]
        student_name: Option<&'a str>,
        text: &'a str,
        ts: u64,
    }
    frame(&StudentMessage {
        r#type: "student_message",
        quiz_id: &key.quiz,
        quiz_attempt_id: &key.attempt,
        student_id: student,
        student_name,
        text,
        ts,
    })
}

/// A proctor's (or the LMS's) chat line or warning, as the student receives it.
pub fn proctor_message(kind: MessageKind, from: &str, text: &str, ts: u64) -> Frame {
    #[derive(Serialize)]
    struct ProctorMessage<'a> {
        r#type: &'static str,
        kind: MessageKind,
        from: &'a str,
        text: &'a str,
        ts: u64,
    }
    frame(&ProctorMessage {
        r#type: "proctor_message",
        kind,
        from,
        text,
        ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        ids::AttemptId,
        status::{StatusChange, StatusRecord},
    };

    #[test]
    fn student_status_has_the_contract_shape() {
        let key = AttemptKey {
            quiz: QuizId::new("q1"),
            attempt: AttemptId::new("a1"),
        };
        let data = serde_json::from_str(r#"{"quiz_id":"q1","user_status":"away"}"#).unwrap();
        let rec = StatusRecord::next(&key, None, StatusChange::Reported(data), 9);
        let v: serde_json::Value = serde_json::from_str(&student_status(&rec)).unwrap();
        assert_eq!(v["type"], "student_status");
        assert_eq!(v["quiz_id"], "q1");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["data"]["user_status"], "away");
        assert_eq!(v["data"]["away_count"], 1);
        assert!(v["data"].get("seq").is_none());
        let snap: serde_json::Value =
            serde_json::from_str(&snapshot(&key.quiz, [&rec].into_iter())).unwrap();
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["students"][0]["seq"], 1);
        let listing =
            serde_json::to_value(Students::listing(&key.quiz, [&rec].into_iter())).unwrap();
        assert!(listing.get("type").is_none());
        assert_eq!(listing["quiz_id"], "q1");
    }

    #[test]
    fn errors_carry_the_id_only_when_given() {
        let v: serde_json::Value =
            serde_json::from_str(&error(None, ErrorCode::NotFound, "gone")).unwrap();
        assert_eq!(v["code"], "not_found");
        assert!(v.get("id").is_none());
    }
}
