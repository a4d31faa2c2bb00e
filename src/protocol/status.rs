//! STATUS: the student's `data` object as sent, plus the server's fields.
//!
//! The student's fields are kept as raw JSON text ([`StatusFields`]), so everything the
//! contract passes through (`timestamp_sent` above all) reaches the proctors byte for byte.
//! The server owns `connected`, `last_seen`, `away_count` and `reason` (and `seq` in
//! snapshots): a student cannot set them, and [`StatusRecord::next`] is the one place that
//! writes them.

use std::fmt;

use serde::{
    de::{DeserializeSeed, MapAccess, Visitor},
    ser::SerializeMap,
    Deserialize, Deserializer, Serialize, Serializer,
};
use serde_json::value::RawValue;

use super::{
    ids::{AttemptKey, UserId},
    OfflineReason, UserStatus,
};

/// Field names only the server may write.
pub const SERVER_FIELDS: [&str; 5] = ["connected", "last_seen", "away_count", "reason", "seq"];

/// The names of STATUS fields a student sends (the contract's, and `time_left`): a status
/// naming them, or the [`SERVER_FIELDS`], holds no copy of the name, so a status costs one
/// allocation per field, not two.
const STUDENT_NAMES: [&str; 16] = [
    "quiz_id",
    "quiz_attempt_id",
    "student_id",
    "user_status",
    "question_answered",
    "question_total",
    "question_number_current",
    "quiz_participant_id",
    "quiz_result_id",
    "score",
    "student_name",
    "time_start",
    "time_end",
    "time_left",
    "topic_uuid",
    "timestamp_sent",
];

/// A field's name: one of [`STUDENT_NAMES`] or [`SERVER_FIELDS`], or any other name as sent.
#[derive(Clone)]
enum Name {
    Known(&'static str),
    Other(Box<str>),
}

impl Name {
    fn new(name: &str) -> Name {
        let mut known = STUDENT_NAMES.iter().chain(&SERVER_FIELDS);
        match known.find(|known| **known == name) {
            Some(known) => Name::Known(known),
            None => Name::Other(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Name::Known(name) => name,
            Name::Other(name) => name,
        }
    }
}

/// Reads an object key straight into a [`Name`], with no copy for a known one.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Name;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Name, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NameSeed {
    type Value = Name;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Name, E> {
        Ok(Name::new(name))
    }
}

/// A JSON object kept as (name, raw value) pairs in the order sent; a repeated name keeps its
/// last value.
#[derive(Clone, Default)]
pub struct StatusFields(Vec<(Name, Box<RawValue>)>);

impl fmt::Debug for StatusFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k.as_str(), v.get())))
            .finish()
    }
}

/// Raw values compare by their text.
impl PartialEq for StatusFields {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((ka, va), (kb, vb))| ka.as_str() == kb.as_str() && va.get() == vb.get())
    }
}

impl StatusFields {
    pub fn raw(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| &**v)
    }

    /// A field read as text: a JSON string, or the text of a number.
    pub fn text(&self, name: &str) -> Option<String> {
        let raw = self.raw(name)?.get();
        // A string without escapes (ids, statuses: nearly every one) is its own text.
        if let Some(plain) = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .filter(|r| !r.contains('\\'))
        {
            return Some(plain.to_string());
        }
        match serde_json::from_str::<serde_json::Value>(raw).ok()? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Set a field to a value (replacing one of the same name).
    pub fn set(&mut self, name: &str, value: &impl Serialize) {
        // Serializing our own plain values (bools, numbers, strings) cannot fail.
        let Ok(raw) = serde_json::value::to_raw_value(value) else {
            return;
        };
        match self.0.iter_mut().find(|(k, _)| k.as_str() == name) {
            Some(slot) => slot.1 = raw,
            None => self.0.push((Name::new(name), raw)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k.as_str() != name);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn without_server_fields(mut self) -> Self {
        self.0.retain(|(k, _)| !SERVER_FIELDS.contains(&k.as_str()));
        self
    }
}

impl<'de> Deserialize<'de> for StatusFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = StatusFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StatusFields, A::Error> {
                let mut fields = StatusFields(Vec::with_capacity(map.size_hint().unwrap_or(16)));
                while let Some(k) = map.next_key_seed(NameSeed)? {
                    let v: Box<RawValue> = map.next_value()?;
                    match fields
                        .0
                        .iter_mut()
                        .find(|(name, _)| name.as_str() == k.as_str())
                    {
                        Some(slot) => slot.1 = v,
                        None => fields.0.push((k, v)),
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Fields)
    }
}

impl Serialize for StatusFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

/// The latest status of one attempt: what the store keeps and snapshots list.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord {
    pub key: AttemptKey,
    /// Grows by one with every update of the attempt, across reconnects and instances.
    pub seq: u64,
    pub user_status: UserStatus,
    pub connected: bool,
    pub last_seen: u64,
    pub away_count: u64,
    pub reason: Option<OfflineReason>,
    /// The STATUS object as proctors see it, server fields included (but not `seq`).
    pub fields: StatusFields,
}

/// What changed an attempt's status.
#[derive(Debug, Clone)]
pub enum StatusChange {
    /// The student sent a status (`data` of `message_to_master`, ids already validated).
    Reported(StatusFields),
    /// A socket for the attempt opened.
    Connected {
        student: UserId,
        name: Option<String>,
    },
    /// The server set the attempt offline.
    Offline(OfflineReason),
}

impl StatusRecord {
    /// The status that follows `previous` (if any) after `change`, stamped at `now_ms`.
    pub fn next(
        key: &AttemptKey,
        previous: Option<&StatusRecord>,
        change: StatusChange,
        now_ms: u64,
    ) -> StatusRecord {
        let seq = previous.map_or(0, |p| p.seq) + 1;
        let prev_status = previous.map(|p| p.user_status);
        let mut away_count = previous.map_or(0, |p| p.away_count);
        let (mut fields, user_status, connected, reason) = match change {
            StatusChange::Reported(data) => {
                let fields = data.without_server_fields();
                let status = fields
                    .text("user_status")
                    .and_then(|s| UserStatus::parse(&s))
                    .or(prev_status.filter(|s| *s != UserStatus::Offline))
                    .unwrap_or(UserStatus::Active);
                (fields, status, true, None)
            }
            StatusChange::Connected { student, name } => {
                let mut fields = previous.map(|p| p.fields.clone()).unwrap_or_else(|| {
                    let mut f = StatusFields::default();
                    f.set("quiz_id", &key.quiz);
                    f.set("quiz_attempt_id", &key.attempt);
                    f.set("student_id", &student);
                    if let Some(name) = &name {
                        f.set("student_name", name);
                    }
                    f
                });
                // A socket that opens means the exam page is open: what it was before the
                // disconnect no longer holds, so the attempt counts as active until it says
                // otherwise.
                let status = match prev_status {
                    Some(UserStatus::Away) => UserStatus::Away,
                    _ => UserStatus::Active,
                };
                fields.remove("reason");
                (fields, status, true, None)
            }
            StatusChange::Offline(reason) => {
                let fields = previous.map(|p| p.fields.clone()).unwrap_or_default();
                (fields, UserStatus::Offline, false, Some(reason))
            }
        };
        if user_status == UserStatus::Away && prev_status != Some(UserStatus::Away) {
            away_count += 1;
        }
        fields.set("user_status", &user_status.as_str());
        fields.set("connected", &connected);
        fields.set("last_seen", &now_ms);
        fields.set("away_count", &away_count);
        match reason {
            Some(r) => fields.set("reason", &r.as_str()),
            None => fields.remove("reason"),
        }
        StatusRecord {
            key: key.clone(),
            seq,
            user_status,
            connected,
            last_seen: now_ms,
            away_count,
            reason,
            fields,
        }
    }
}

/// A record as stored (Redis, the record database): `seq` first, so a Lua script can compare
/// without decoding. Written with the record's fields borrowed (`F` = `&StatusFields`), so
/// storing a status copies none of them; read with them owned.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<F> {
    seq: u64,
    user_status: UserStatus,
    connected: bool,
    last_seen: u64,
    away_count: u64,
    reason: Option<OfflineReason>,
    fields: F,
}

impl StatusRecord {
    /// The stored form: JSON starting with `{"seq":N`.
    pub fn to_stored_json(&self) -> String {
        let stored = Stored {
            seq: self.seq,
            user_status: self.user_status,
            connected: self.connected,
            last_seen: self.last_seen,
            away_count: self.away_count,
            reason: self.reason,
            fields: &self.fields,
        };
        // Plain values and raw JSON that was valid when read: serialization cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Read the stored form back; `None` if it is not one.
    pub fn from_stored_json(key: AttemptKey, json: &str) -> Option<StatusRecord> {
        let s: Stored<StatusFields> = serde_json::from_str(json).ok()?;
        Some(StatusRecord {
            key,
            seq: s.seq,
            user_status: s.user_status,
            connected: s.connected,
            last_seen: s.last_seen,
            away_count: s.away_count,
            reason: s.reason,
            fields: s.fields,
        })
    }
}

/// A STATUS as listed in a snapshot: the fields plus `seq`.
pub struct WithSeq<'a>(pub &'a StatusRecord);

impl Serialize for WithSeq<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = &self.0.fields.0;
        let mut map = s.serialize_map(Some(fields.len() + 1))?;
        for (k, v) in fields {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.serialize_entry("seq", &self.0.seq)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::{AttemptId, QuizId};

    fn key() -> AttemptKey {
        AttemptKey {
            quiz: QuizId::new("q1"),
            attempt: AttemptId::new("a1"),
        }
    }

    fn report(json: &str) -> StatusChange {
        StatusChange::Reported(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn reported_fields_pass_through_byte_for_byte() {
        let rec = StatusRecord::next(
            &key(),
            None,
            report(
                r#"{"user_status":"active","timestamp_sent":1733300000123.50,"x":{"b":1,"a":2}}"#,
            ),
            5,
        );
        let out = serde_json::to_string(&rec.fields).unwrap();
        assert!(
            out.contains(r#""timestamp_sent":1733300000123.50"#),
            "{out}"
        );
        assert!(out.contains(r#""x":{"b":1,"a":2}"#), "{out}");
        assert!(out.contains(r#""connected":true"#));
        assert!(out.contains(r#""last_seen":5"#));
    }

    #[test]
    fn known_and_unknown_names_keep_their_order_and_a_repeat_keeps_its_last_value() {
        let sent = r#"{"quiz_id":"q1","custom":1,"a\"b":2,"score":null,"custom":3,"score":70}"#;
        let fields: StatusFields = serde_json::from_str(sent).unwrap();
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"quiz_id":"q1","custom":3,"a\"b":2,"score":70}"#
        );
        assert_eq!(fields.raw("a\"b").map(RawValue::get), Some("2"));
        assert!(
            matches!(fields.0[0].0, Name::Known("quiz_id")),
            "a contract name is not copied"
        );
    }

    #[test]
    fn students_cannot_set_server_fields() {
        let rec = StatusRecord::next(
            &key(),
            None,
            report(
                r#"{"user_status":"active","connected":false,"away_count":99,"reason":"timeout","seq":1000}"#,
            ),
            5,
        );
        assert_eq!(rec.fields.raw("connected").unwrap().get(), "true");
        assert_eq!(rec.fields.raw("away_count").unwrap().get(), "0");
        assert!(rec.fields.raw("reason").is_none());
        assert!(rec.fields.raw("seq").is_none());
        assert_eq!(rec.seq, 1);
    }

    #[test]
    fn away_count_counts_transitions_into_away() {
        let mut rec = StatusRecord::next(&key(), None, report(r#"{"user_status":"active"}"#), 1);
        for (status, expect) in [("away", 1), ("away", 1), ("active", 1), ("away", 2)] {
            rec = StatusRecord::next(
                &key(),
                Some(&rec),
                report(&format!(r#"{{"user_status":"{status}"}}"#)),
                2,
            );
            assert_eq!(rec.away_count, expect, "after {status}");
        }
        assert_eq!(rec.seq, 5);
    }

    #[test]
    fn offline_then_connect_keeps_fields_and_clears_reason() {
        let first = StatusRecord::next(
            &key(),
            None,
            report(r#"{"user_status":"active","question_number_current":4}"#),
            1,
        );
        let off = StatusRecord::next(
            &key(),
            Some(&first),
            StatusChange::Offline(OfflineReason::Timeout),
            2,
        );
        assert_eq!(off.fields.text("user_status").unwrap(), "offline");
        assert_eq!(off.fields.text("reason").unwrap(), "timeout");
        assert_eq!(off.fields.raw("connected").unwrap().get(), "false");
        let back = StatusRecord::next(
            &key(),
            Some(&off),
            StatusChange::Connected {
                student: UserId::new("s1"),
                name: None,
            },
            3,
        );
        assert_eq!(back.fields.text("user_status").unwrap(), "active");
        assert!(back.fields.raw("reason").is_none());
        assert_eq!(back.fields.text("question_number_current").unwrap(), "4");
        assert_eq!(back.seq, 3);
    }

    #[test]
    fn first_connect_names_the_attempt() {
        let rec = StatusRecord::next(
            &key(),
            None,
            StatusChange::Connected {
                student: UserId::new("s1"),
                name: Some("Ann".into()),
            },
            3,
        );
        let json = serde_json::to_value(WithSeq(&rec)).unwrap();
        assert_eq!(json["quiz_id"], "q1");
        assert_eq!(json["quiz_attempt_id"], "a1");
        assert_eq!(json["student_id"], "s1");
        assert_eq!(json["student_name"], "Ann");
        assert_eq!(json["user_status"], "active");
        assert_eq!(json["seq"], 1);
    }
}
