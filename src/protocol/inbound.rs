//! What clients send: one text frame parsed once into an [`Inbound`], or an [`Invalid`] that
//! the client is told about (`invalid_message`) while its socket stays open.
//!
//! Parsing checks the shape of a message only. Whether the sender may send it (role, ids
//! against the token, quizzes) is the session's check, because it needs the token.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    ids::{AttemptId, AttemptKey, QuizId},
    status::StatusFields,
    MessageKind,
};

/// The `action` of a student status, kept from the original system.
pub const STATUS_ACTION: &str = "lmsQuizMonitoringStudent";

/// Longest chat line or warning, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// A client's `id`: any JSON string or number, echoed verbatim in `ack` and `error`.
#[derive(Debug, Clone)]
pub struct MessageId(Box<RawValue>);

impl MessageId {
    pub fn raw(&self) -> &RawValue {
        &self.0
    }
}

/// A valid client message.
#[derive(Debug)]
pub enum Inbound {
    /// `message_to_master`: a student status.
    Status {
        id: Option<MessageId>,
        data: StatusFields,
    },
    /// `message_to_proctor`: a student's chat line to the quiz's proctors.
    ToProctor { id: Option<MessageId>, text: String },
    /// `subscribe`: a proctor starts watching a quiz.
    Subscribe { id: Option<MessageId>, quiz: QuizId },
    /// `unsubscribe`: a proctor stops watching a quiz.
    Unsubscribe { id: Option<MessageId>, quiz: QuizId },
    /// `message_to_student`: a proctor's chat line or warning to one attempt.
    ToStudent {
        id: Option<MessageId>,
        key: AttemptKey,
        kind: MessageKind,
        text: String,
    },
    /// `ping`: answered by `pong`.
    Ping { id: Option<MessageId> },
}

impl Inbound {
    /// The wire `type`, for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            Inbound::Status { .. } => "message_to_master",
            Inbound::ToProctor { .. } => "message_to_proctor",
            Inbound::Subscribe { .. } => "subscribe",
            Inbound::Unsubscribe { .. } => "unsubscribe",
            Inbound::ToStudent { .. } => "message_to_student",
            Inbound::Ping { .. } => "ping",
        }
    }

    pub fn id(&self) -> Option<&MessageId> {
        match self {
            Inbound::Status { id, .. }
            | Inbound::ToProctor { id, .. }
            | Inbound::Subscribe { id, .. }
            | Inbound::Unsubscribe { id, .. }
            | Inbound::ToStudent { id, .. }
            | Inbound::Ping { id } => id.as_ref(),
        }
    }
}

/// A message that could not be understood, with the `id` if one could be read.
#[derive(Debug)]
pub struct Invalid {
    pub id: Option<MessageId>,
    pub message: String,
}

/// Every field any client message may carry at the top level; one pass reads them all.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    quiz_id: Option<&'a RawValue>,
    #[serde(borrow)]
    quiz_attempt_id: Option<&'a RawValue>,
    #[serde(rename = "kind", borrow)]
    message_kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MasterMessage {
    action: Option<String>,
    data: Option<StatusFields>,
}

/// Longest piece of a client's own text quoted back in an error.
const QUOTED: usize = 64;

/// A client's text, quoted for an error message and cut short: an error never grows with
/// what the client sent.
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(QUOTED).collect();
    let mut q = format!("{cut:?}");
    if cut.len() < s.len() {
        q.push('…');
    }
    q
}

/// Whether a JSON text is an object (serde's derived structs would also read an array).
fn is_object(json: &str) -> bool {
    json.trim_start().starts_with('{')
}

/// Longest error message, in characters: an answer never grows with what the client sent.
const MAX_ERROR: usize = 300;

/// Parse one text frame.
pub fn parse(frame: &str) -> Result<Inbound, Invalid> {
    parse_frame(frame).map_err(|mut e| {
        if e.message.chars().count() > MAX_ERROR {
            e.message = e.message.chars().take(MAX_ERROR).collect::<String>() + "…";
        }
        e
    })
}

fn parse_frame(frame: &str) -> Result<Inbound, Invalid> {
    if !is_object(frame) {
        return Err(Invalid {
            id: None,
            message: "a message must be a JSON object with a string field type".into(),
        });
    }
    let env: Envelope = serde_json::from_str(frame).map_err(|e| Invalid {
        id: None,
        message: format!("not a JSON object of the protocol: {e}"),
    })?;
    let id = match env.id {
        None => None,
        Some(raw) => match raw.get().as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9') => Some(MessageId(raw.to_owned())),
            Some(b'n') => None,
            _ => {
                return Err(Invalid {
                    id: None,
                    message: "id must be a string or a number".into(),
                })
            }
        },
    };
    let invalid = |message: String| Invalid {
        id: id.clone(),
        message,
    };
    let Some(kind) = env.kind else {
        return Err(invalid("missing string field type".into()));
    };
    let quiz = || -> Result<QuizId, Invalid> {
        let raw = env
            .quiz_id
            .ok_or_else(|| invalid("missing field quiz_id".into()))?;
        serde_json::from_str(raw.get()).map_err(|_| invalid("quiz_id must be a string".into()))
    };
    let text = |required_for: &str| -> Result<String, Invalid> {
        match &env.text {
            Some(t) if t.trim().is_empty() => {
                Err(invalid(format!("{required_for} needs a non-empty text")))
            }
            Some(t) if t.len() > MAX_TEXT_BYTES => Err(invalid(format!(
                "text is longer than {MAX_TEXT_BYTES} bytes"
            ))),
            Some(t) => Ok(t.to_string()),
            None => Err(invalid(format!("{required_for} needs a string field text"))),
        }
    };
    match &*kind {
        "message_to_master" => {
            let raw = env
                .message
                .ok_or_else(|| invalid("message_to_master needs a message object".into()))?;
            if !is_object(raw.get()) {
                return Err(invalid(
                    "message must be an object with action and data".into(),
                ));
            }
            let master: MasterMessage = serde_json::from_str(raw.get()).map_err(|e| {
                invalid(format!(
                    "message must be an object with action and data: {e}"
                ))
            })?;
            match master.action.as_deref() {
                Some(STATUS_ACTION) => {}
                other => {
                    return Err(invalid(format!(
                        "message.action must be {STATUS_ACTION:?}, got {}",
                        other.map_or("none".to_string(), quoted)
                    )))
                }
            }
            let data = master
                .data
                .ok_or_else(|| invalid("message.data must be an object".into()))?;
            if data.raw("user_status").is_some() {
                let status = data.text("user_status").unwrap_or_default();
                if super::UserStatus::parse(&status).is_none() {
                    return Err(invalid(format!(
                        "user_status must be active, away or offline, got {}",
                        quoted(&status)
                    )));
                }
            }
            Ok(Inbound::Status { id, data })
        }
        "message_to_proctor" => Ok(Inbound::ToProctor {
            text: text("message_to_proctor")?,
            id,
        }),
        "subscribe" => Ok(Inbound::Subscribe { quiz: quiz()?, id }),
        "unsubscribe" => Ok(Inbound::Unsubscribe { quiz: quiz()?, id }),
        "message_to_student" => {
            let quiz = quiz()?;
            let attempt: AttemptId = env
                .quiz_attempt_id
                .ok_or_else(|| invalid("missing field quiz_attempt_id".into()))
                .and_then(|raw| {
                    serde_json::from_str(raw.get())
                        .map_err(|_| invalid("quiz_attempt_id must be a string".into()))
                })?;
            let kind = env
                .message_kind
                .as_deref()
                .and_then(MessageKind::parse)
                .ok_or_else(|| invalid("kind must be chat or warning".into()))?;
            Ok(Inbound::ToStudent {
                key: AttemptKey { quiz, attempt },
                kind,
                text: text("message_to_student")?,
                id,
            })
        }
        "ping" => Ok(Inbound::Ping { id }),
        other => Err(invalid(format!("unknown type {}", quoted(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_with_everything_the_contract_shows() {
        let m = parse(
            r#"{"type":"message_to_master","clientConnectionSocketId":"x","id":17,
            "message":{"action":"lmsQuizMonitoringStudent","data":{"quiz_id":"q1",
            "quiz_attempt_id":"a1","student_id":"s1","user_status":"away","score":null,
            "timestamp_sent":1733300000123.5}}}"#,
        )
        .unwrap();
        let Inbound::Status { id, data } = m else {
            panic!("expected a status")
        };
        assert_eq!(id.unwrap().raw().get(), "17");
        assert_eq!(data.text("quiz_id").unwrap(), "q1");
        assert_eq!(data.raw("timestamp_sent").unwrap().get(), "1733300000123.5");
    }

    #[test]
    fn ids_are_echoed_verbatim_and_checked() {
        let m = parse(r#"{"type":"ping","id":"abc-1"}"#).unwrap();
        assert_eq!(m.id().unwrap().raw().get(), r#""abc-1""#);
        assert!(parse(r#"{"type":"ping","id":null}"#)
            .unwrap()
            .id()
            .is_none());
        assert!(parse(r#"{"type":"ping","id":{"a":1}}"#).is_err());
        assert!(parse(r#"{"type":"ping","id":true}"#).is_err());
    }

    #[test]
    fn bad_messages_say_what_is_wrong_and_keep_the_id() {
        for (frame, needle) in [
            ("not json", "JSON"),
            ("[1,2]", "JSON"),
            (r#"{"id":3}"#, "type"),
            (r#"{"type":"dance","id":3}"#, "unknown type"),
            (r#"{"type":"subscribe","id":3}"#, "quiz_id"),
            (
                r#"{"type":"message_to_student","id":3,"quiz_id":"q","quiz_attempt_id":"a","kind":"shout","text":"x"}"#,
                "kind",
            ),
            (
                r#"{"type":"message_to_student","id":3,"quiz_id":"q","quiz_attempt_id":"a","kind":"chat","text":"  "}"#,
                "text",
            ),
            (
                r#"{"type":"message_to_master","id":3,"message":{"action":"other","data":{}}}"#,
                "action",
            ),
            (
                r#"{"type":"message_to_master","id":3,"message":{"action":"lmsQuizMonitoringStudent","data":{"user_status":"asleep"}}}"#,
                "user_status",
            ),
            (
                r#"{"type":"message_to_master","id":3,"message":{"action":"lmsQuizMonitoringStudent","data":[1]}}"#,
                "data",
            ),
        ] {
            let err = parse(frame).unwrap_err();
            assert!(err.message.contains(needle), "{frame}: {}", err.message);
            if frame.contains("\"type\"") {
                assert_eq!(
                    err.id.map(|i| i.raw().get().to_string()).as_deref(),
                    Some("3"),
                    "{frame}"
                );
            }
        }
    }

    #[test]
    fn message_to_student_reads_its_target() {
        let m = parse(r#"{"type":"message_to_student","quiz_id":"q1","quiz_attempt_id":7,"kind":"warning","text":"eyes on screen"}"#).unwrap();
        let Inbound::ToStudent {
            key, kind, text, ..
        } = m
        else {
            panic!("expected message_to_student")
        };
        assert_eq!(key.to_string(), "q1/7");
        assert_eq!(kind, MessageKind::Warning);
        assert_eq!(text, "eyes on screen");
    }

    #[test]
    fn long_text_is_refused() {
        let frame = format!(
            r#"{{"type":"message_to_proctor","text":"{}"}}"#,
            "x".repeat(MAX_TEXT_BYTES + 1)
        );
        assert!(parse(&frame).unwrap_err().message.contains("longer"));
    }
}
