//! Property tests of what faces untrusted input (issue 7): inbound parsing, `ack` ids, STATUS
//! pass-through and the server-owned fields, `away_count`, the outbox's slow-consumer policy,
//! the rate limit and token verification, through the library's public API only.
//!
//! They run in the normal `cargo test` (a few seconds): case counts stay modest, and failures
//! are not persisted to files, since proptest prints the shrunk input anyway. The `fuzz/`
//! targets go further on the same surfaces, on a nightly toolchain.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write as _,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::{prelude::*, sample::select};
use serde::Deserialize;
use serde_json::{value::RawValue, Map, Value};

use invigil::{
    auth::{mint, AuthError, Claims, Identity, Role, Verifier},
    config::{Secret, Settings},
    protocol::{
        ids::{AttemptId, AttemptKey, QuizId, UserId},
        inbound::{self, Inbound, Invalid, MessageId, MAX_TEXT_BYTES},
        outbound,
        status::{StatusChange, StatusFields, StatusRecord, SERVER_FIELDS},
        ErrorCode, Frame, OfflineReason, UserStatus,
    },
    session::{Outbox, RateLimiter},
};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A failure prints its shrunk input; no regression files are left in the repository.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// JSON text generators. Values are generated as *text*, in the many spellings JSON allows
// (escapes, exponents, trailing zeros, whitespace), because the contract promises the text
// itself survives, not just the value.

/// Whitespace JSON allows between tokens.
fn ws() -> impl Strategy<Value = String> {
    select(vec!["", "", " ", "\n", "\t ", "\r\n  "]).prop_map(String::from)
}

/// A string written with every UTF-16 unit as a `\uXXXX` escape (upper- or lowercase hex).
fn escaped_all(s: &str, upper: bool) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        if upper {
            let _ = write!(out, "\\u{unit:04X}");
        } else {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
    out.push('"');
    out
}

/// A JSON string literal, plain or escaped; `(text, decoded)`.
fn json_string_with(s: impl Strategy<Value = String>) -> impl Strategy<Value = (String, String)> {
    (s, 0..4u8).prop_map(|(s, how)| {
        let text = match how {
            0 | 1 => serde_json::to_string(&s).expect("a String always serializes"),
            2 => escaped_all(&s, false),
            _ => escaped_all(&s, true),
        };
        (text, s)
    })
}

fn json_string() -> impl Strategy<Value = String> {
    json_string_with(prop_oneof![any::<String>(), "[a-z0-9_/]{0,12}"]).prop_map(|(text, _)| text)
}

/// A JSON number, in any of its spellings, including some beyond 64 bits.
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (any::<i32>(), 0u32..100_000, 0usize..4)
            .prop_map(|(i, f, zeros)| format!("{i}.{f}{}", "0".repeat(zeros))),
        (
            any::<i16>(),
            select(vec!["e", "E", "e+", "E-", "e-"]),
            0u16..400
        )
            .prop_map(|(m, e, x)| format!("{m}{e}{x}")),
        "-?[1-9][0-9]{20,40}",
        select(vec![
            "0",
            "-0",
            "0.0",
            "-0.0e-0",
            "1733300000123.5",
            "1733300000123.50"
        ])
        .prop_map(String::from),
    ]
}

/// Any JSON value, as text.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(vec!["null", "true", "false"]).prop_map(String::from),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), ws(), ws()).prop_map(|(items, a, b)| {
                format!("[{a}{}{b}]", items.join(&format!("{b},{a}")))
            }),
            (prop::collection::vec((json_string(), inner), 0..4), ws()).prop_map(|(pairs, w)| {
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}{w}:{w}{v}"))
                    .collect();
                format!("{{{w}{}{w}}}", body.join(&format!("{w},{w}")))
            }),
        ]
    })
}

/// A field name: short ones from a small pool (so names repeat), or anything.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-d]{1,2}", 1 => any::<String>(), 1 => "[a-z_]{1,20}"]
}

/// A JSON object as `(text, fields in order)`, with repeated names possible.
fn json_object(
    names: impl Strategy<Value = String>,
) -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    (
        prop::collection::vec((json_string_with(names), json_value()), 0..8),
        ws(),
    )
        .prop_map(|(pairs, w)| {
            let body: Vec<String> = pairs
                .iter()
                .map(|((key_text, _), v)| format!("{key_text}{w}:{w}{v}"))
                .collect();
            let text = format!("{w}{{{w}{}{w}}}{w}", body.join(&format!("{w},{w}")));
            let fields = pairs.into_iter().map(|((_, k), v)| (k, v)).collect();
            (text, fields)
        })
}

/// What [`StatusFields`] promises to keep: the first position of each name, its last value.
fn last_value_wins(fields: &[(String, String)]) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in fields {
        match kept.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => kept.push((k.clone(), v.clone())),
        }
    }
    kept
}

// ---------------------------------------------------------------------------------------------
// Inbound parsing.

/// Valid frames of every type, as PROTOCOL.md shows them: the seeds of the mutations.
const VALID_FRAMES: [&str; 7] = [
    r#"{"type":"message_to_master","clientConnectionSocketId":"x","id":17,"message":{"action":"lmsQuizMonitoringStudent","data":{"quiz_id":"q1","quiz_attempt_id":"a1","student_id":"s1","user_status":"away","question_answered":3,"question_total":40,"question_number_current":4,"quiz_participant_id":"p","quiz_result_id":"r","score":null,"student_name":"Ann","time_start":"2026-01-01T09:00:00Z","time_end":"2026-01-01T10:00:00Z","topic_uuid":"t","timestamp_sent":1733300000123.5}}}"#,
    r#"{"type":"message_to_proctor","text":"may I use a calculator?","id":"c-1"}"#,
    r#"{"type":"subscribe","quiz_id":"q1","id":2}"#,
    r#"{"type":"unsubscribe","quiz_id":7}"#,
    r#"{"type":"message_to_student","quiz_id":"q1","quiz_attempt_id":"a1","kind":"warning","text":"eyes on screen","id":-3}"#,
    r#"{"type":"ping","id":"p"}"#,
    r#"{"type":"ping"}"#,
];

/// Pieces of the protocol's vocabulary, so random text and mutations reach deep branches.
const SNIPPETS: [&str; 30] = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\\",
    " ",
    "null",
    "true",
    "1e999",
    "-",
    "0",
    "\"type\"",
    "\"id\"",
    "\"message\"",
    "\"action\"",
    "\"data\"",
    "\"quiz_id\"",
    "\"quiz_attempt_id\"",
    "\"kind\"",
    "\"text\"",
    "\"user_status\"",
    "\"message_to_master\"",
    "\"lmsQuizMonitoringStudent\"",
    "\"ping\"",
    "\"away\"",
    "\"\\ud800\"",
    "\u{7f}",
];

/// Random text made of the protocol's vocabulary and a few arbitrary pieces.
fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => select(SNIPPETS.to_vec()).prop_map(String::from),
            1 => any::<String>(),
            1 => json_value(),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Replace { at: usize, len: usize, text: String },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let text = prop_oneof![
        3 => select(SNIPPETS.to_vec()).prop_map(String::from),
        1 => any::<String>(),
        1 => json_value(),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), text.clone()).prop_map(|(at, text)| Mutation::Insert { at, text }),
        (any::<usize>(), 1usize..8, text).prop_map(|(at, len, text)| Mutation::Replace {
            at,
            len,
            text
        }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

/// Apply mutations on characters, so the frame stays UTF-8 as a text frame must be.
fn mutate(frame: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = frame.chars().collect();
    for m in mutations {
        let n = chars.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
        match m {
            Mutation::Delete { at, len } => {
                let start = pos(*at);
                let end = (start + len).min(n);
                chars.drain(start..end);
            }
            Mutation::Insert { at, text } => {
                let start = pos(*at);
                chars.splice(start..start, text.chars());
            }
            Mutation::Replace { at, len, text } => {
                let start = pos(*at);
                let end = (start + len).min(n);
                chars.splice(start..end, text.chars());
            }
            Mutation::Truncate { at } => chars.truncate(pos(*at)),
            Mutation::Duplicate { at, len } => {
                let start = pos(*at);
                let end = (start + len).min(n);
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
        }
    }
    chars.into_iter().collect()
}

/// Words the protocol gives meaning to, so perturbed values often hit a branch.
const WORDS: [&str; 17] = [
    "away",
    "active",
    "offline",
    "asleep",
    "chat",
    "warning",
    "shout",
    "ping",
    "subscribe",
    "message_to_master",
    "message_to_student",
    "lmsQuizMonitoringStudent",
    "q1",
    "a1",
    "s1",
    "",
    "  ",
];

/// Field names of every message, at any depth.
const FIELD_NAMES: [&str; 12] = [
    "type",
    "id",
    "message",
    "action",
    "data",
    "quiz_id",
    "quiz_attempt_id",
    "student_id",
    "user_status",
    "kind",
    "text",
    "x",
];

/// Any JSON value, as a tree, leaning towards the protocol's words and limits.
fn json_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        3 => select(WORDS.to_vec()).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => (0usize..3).prop_map(|d| Value::from("x".repeat(MAX_TEXT_BYTES - 1 + d))),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::vec((select(FIELD_NAMES.to_vec()), inner), 0..3).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// One change to one object of a message (the `obj`-th, counting depth first).
#[derive(Debug, Clone)]
enum Edit {
    Drop {
        obj: usize,
        field: &'static str,
    },
    Set {
        obj: usize,
        field: &'static str,
        value: Value,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    let field = select(FIELD_NAMES.to_vec());
    prop_oneof![
        1 => (any::<usize>(), field.clone()).prop_map(|(obj, field)| Edit::Drop { obj, field }),
        3 => (any::<usize>(), field, json_tree())
            .prop_map(|(obj, field, value)| Edit::Set { obj, field, value }),
    ]
}

fn count_objects(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(count_objects).sum::<usize>(),
        Value::Array(a) => a.iter().map(count_objects).sum(),
        _ => 0,
    }
}

/// Apply `edit` to the `*left`-th object of `v`; true once applied.
fn apply_edit(v: &mut Value, left: &mut usize, edit: &Edit) -> bool {
    match v {
        Value::Object(m) => {
            if *left == 0 {
                match edit {
                    Edit::Drop { field, .. } => {
                        m.remove(*field);
                    }
                    Edit::Set { field, value, .. } => {
                        m.insert(field.to_string(), value.clone());
                    }
                }
                return true;
            }
            *left -= 1;
            m.values_mut().any(|child| apply_edit(child, left, edit))
        }
        Value::Array(a) => a.iter_mut().any(|child| apply_edit(child, left, edit)),
        _ => false,
    }
}

/// A valid frame with a few fields dropped or set to other values, anywhere in it.
fn perturbed_frame() -> impl Strategy<Value = String> {
    (
        select(VALID_FRAMES.to_vec()),
        prop::collection::vec(edit(), 0..4),
    )
        .prop_map(|(seed, edits)| {
            let mut v: Value = serde_json::from_str(seed).expect("the seeds are JSON");
            for e in &edits {
                let (Edit::Drop { obj, .. } | Edit::Set { obj, .. }) = e;
                let mut left = obj % count_objects(&v).max(1);
                apply_edit(&mut v, &mut left, e);
            }
            v.to_string()
        })
}

/// The `error` frame a client gets, read back without losing the id's text.
#[derive(Deserialize)]
struct ErrorFrame {
    r#type: String,
    id: Option<Box<RawValue>>,
    code: String,
    message: String,
}

/// Longest `Invalid` message, whatever the frame's length: the library quotes at most a
/// short piece of what the client sent and cuts every message at 300 characters.
fn echo_bound(_len: usize) -> usize {
    1024
}

/// What every refusal must be: a clear one-line message, bounded, and a valid `error` frame
/// that keeps the client's id.
fn check_invalid(frame: &str, err: &Invalid) -> Result<(), TestCaseError> {
    prop_assert!(
        !err.message.trim().is_empty(),
        "empty message for {frame:?}"
    );
    prop_assert!(
        !err.message.chars().any(char::is_control),
        "control character in {:?} for {frame:?}",
        err.message
    );
    prop_assert!(
        err.message.len() <= echo_bound(frame.len()),
        "message of {} bytes for a frame of {}",
        err.message.len(),
        frame.len()
    );
    if let Some(id) = &err.id {
        check_id_shape(id)?;
        prop_assert!(frame.contains(id.raw().get()), "id not from the frame");
    }
    let answer = outbound::error(err.id.as_ref(), ErrorCode::InvalidMessage, &err.message);
    let back: ErrorFrame = serde_json::from_str(&answer)
        .map_err(|e| TestCaseError::fail(format!("error frame {answer:?} is not JSON: {e}")))?;
    prop_assert_eq!(back.r#type, "error");
    prop_assert_eq!(back.code, "invalid_message");
    prop_assert_eq!(&back.message, &err.message);
    prop_assert_eq!(
        back.id.as_ref().map(|r| r.get()),
        err.id.as_ref().map(|i| i.raw().get())
    );
    Ok(())
}

/// An id is a JSON string or number.
fn check_id_shape(id: &MessageId) -> Result<(), TestCaseError> {
    let first = id.raw().get().as_bytes().first().copied();
    prop_assert!(
        matches!(first, Some(b'"' | b'-' | b'0'..=b'9')),
        "id {:?} is not a string or a number",
        id.raw().get()
    );
    Ok(())
}

/// What every accepted message must be.
fn check_valid(msg: &Inbound) -> Result<(), TestCaseError> {
    if let Some(id) = msg.id() {
        check_id_shape(id)?;
    }
    match msg {
        Inbound::ToProctor { text, .. } | Inbound::ToStudent { text, .. } => {
            prop_assert!(!text.trim().is_empty());
            prop_assert!(text.len() <= MAX_TEXT_BYTES);
        }
        Inbound::Status { data, .. } => {
            if let Some(status) = data.text("user_status") {
                prop_assert!(
                    UserStatus::parse(&status).is_some(),
                    "user_status {status:?}"
                );
            }
        }
        Inbound::Subscribe { .. } | Inbound::Unsubscribe { .. } | Inbound::Ping { .. } => {}
    }
    Ok(())
}

fn check_parse(frame: &str) -> Result<(), TestCaseError> {
    match inbound::parse(frame) {
        Ok(msg) => check_valid(&msg),
        Err(err) => check_invalid(frame, &err),
    }
}

#[test]
fn the_seeds_are_valid() {
    for frame in VALID_FRAMES {
        assert!(inbound::parse(frame).is_ok(), "{frame}");
    }
}

#[test]
fn deep_nesting_neither_panics_nor_overflows_the_stack() {
    let depth = 50_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for frame in [
        deep.clone(),
        format!(r#"{{"type":"ping","id":{deep}}}"#),
        format!(r#"{{"type":"ping","ignored":{deep}}}"#),
        format!(
            r#"{{"type":"message_to_master","message":{{"action":"lmsQuizMonitoringStudent","data":{{"user_status":{deep},"x":{deep}}}}}}}"#
        ),
        format!(r#"{{"type":"subscribe","quiz_id":{deep}}}"#),
    ] {
        if let Err(err) = inbound::parse(&frame) {
            assert!(!err.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_refuses_arbitrary_text_clearly(frame in any::<String>()) {
        check_parse(&frame)?;
    }

    #[test]
    fn parse_handles_protocol_shaped_noise(frame in token_soup()) {
        check_parse(&frame)?;
    }

    #[test]
    fn parse_handles_mutated_valid_frames(
        seed in select(VALID_FRAMES.to_vec()),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        check_parse(&mutate(seed, &mutations))?;
    }

    #[test]
    fn parse_handles_perturbed_valid_frames(frame in perturbed_frame()) {
        check_parse(&frame)?;
    }

    #[test]
    fn parse_handles_any_value_in_any_field(
        kind in prop_oneof![
            select(vec!["message_to_master", "message_to_proctor", "subscribe", "unsubscribe",
                "message_to_student", "ping"]).prop_map(|t| format!("{t:?}")),
            json_value(),
        ],
        fields in prop::collection::vec(
            (select(vec!["id", "message", "quiz_id", "quiz_attempt_id", "kind", "text", "x"]),
             json_value()),
            0..5,
        ),
    ) {
        let mut frame = format!(r#"{{"type":{kind}"#);
        for (name, value) in &fields {
            let _ = write!(frame, r#","{name}":{value}"#);
        }
        frame.push('}');
        check_parse(&frame)?;
    }

    #[test]
    fn a_refused_message_keeps_its_id(
        id in prop_oneof![json_string(), json_number()],
        frame in select(vec![
            r#"{"type":"dance","id":ID}"#,
            r#"{"type":"subscribe","id":ID}"#,
            r#"{"id":ID,"type":"message_to_student","quiz_id":"q","quiz_attempt_id":"a","kind":"shout","text":"x"}"#,
            r#"{"type":"message_to_proctor","text":"  ","id":ID}"#,
            r#"{"type":"message_to_master","id":ID,"message":{"action":"lmsQuizMonitoringStudent","data":{"user_status":"asleep"}}}"#,
        ]),
    ) {
        let frame = frame.replace("ID", &id);
        let err = inbound::parse(&frame).expect_err("the frame is invalid");
        prop_assert_eq!(err.id.as_ref().map(|i| i.raw().get()), Some(id.as_str()));
        check_invalid(&frame, &err)?;
    }

    /// Any string or number id comes back in `ack` as the very text the client wrote.
    #[test]
    fn ack_echoes_any_id_verbatim(
        id in prop_oneof![json_string(), json_number()],
        w in ws(),
        frame in select(vec![
            r#"{"type":"ping","id":ID}"#,
            r#"{"type":"subscribe","quiz_id":"q1","id":ID}"#,
            r#"{"type":"message_to_proctor","text":"hello","id":ID}"#,
            r#"{"id":ID,"type":"message_to_master","message":{"action":"lmsQuizMonitoringStudent","data":{"quiz_id":"q1"}}}"#,
        ]),
    ) {
        let frame = frame.replace("ID", &format!("{w}{id}{w}"));
        let msg = inbound::parse(&frame)
            .map_err(|e| TestCaseError::fail(format!("{frame}: {}", e.message)))?;
        let parsed = msg.id().expect("the frame carries an id");
        prop_assert_eq!(parsed.raw().get(), id.as_str());
        prop_assert_eq!(outbound::ack(parsed).to_string(), format!(r#"{{"type":"ack","id":{id}}}"#));
        let error = outbound::error(Some(parsed), ErrorCode::RateLimited, "slow down");
        let back: ErrorFrame = serde_json::from_str(&error)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.id.as_ref().map(|r| r.get()), Some(id.as_str()));
    }
}

/// A refusal's message is short whatever the client sent, so a 64 KiB frame is never answered
/// by a larger one (a `type` of 64 KiB of DEL characters once got a message of 6 × 64 KiB).
#[test]
fn invalid_messages_are_short() {
    let big = "\u{7f}".repeat(60 * 1024);
    for frame in [
        format!(r#"{{"type":"{big}"}}"#),
        format!(r#""{big}""#),
        format!(r#"{{"type":"message_to_master","message":{{"action":"{big}","data":{{}}}}}}"#),
        format!(
            r#"{{"type":"message_to_master","message":{{"action":"lmsQuizMonitoringStudent","data":{{"user_status":"{big}"}}}}}}"#
        ),
    ] {
        let err = inbound::parse(&frame).expect_err("invalid");
        assert!(
            err.message.len() <= 1024,
            "a {} byte frame got a {} byte message",
            frame.len(),
            err.message.len()
        );
    }
}

/// PROTOCOL.md: "Every JSON message is one UTF-8 text frame holding one object". serde's
/// derived structs would also read a JSON array as their fields in order; arrays are refused.
#[test]
fn only_json_objects_are_messages() {
    for frame in [
        r#"["ping",null,null,null,null,null,null]"#,
        r#"["message_to_proctor",7,null,null,null,null,"hi"]"#,
        r#"{"type":"message_to_master","message":["lmsQuizMonitoringStudent",{"quiz_id":"q1"}]}"#,
    ] {
        assert!(inbound::parse(frame).is_err(), "{frame} was accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// STATUS: pass-through and server-owned fields.

fn key() -> AttemptKey {
    AttemptKey {
        quiz: QuizId::new("q1"),
        attempt: AttemptId::new("a1"),
    }
}

/// `student_status`, read back with every value as raw text.
#[derive(Deserialize)]
struct StatusFrame {
    r#type: String,
    quiz_id: String,
    seq: u64,
    data: BTreeMap<String, Box<RawValue>>,
}

/// `snapshot`, read back with every value as raw text (serde_json's `Value` refuses numbers
/// such as `1e999` that a student may send and the contract passes through).
#[derive(Deserialize)]
struct Snapshot {
    students: Vec<BTreeMap<String, Box<RawValue>>>,
}

fn read_status_frame(frame: &Frame) -> Result<StatusFrame, TestCaseError> {
    serde_json::from_str(frame)
        .map_err(|e| TestCaseError::fail(format!("student_status {frame:?} unreadable: {e}")))
}

/// A status change for the sequence properties.
#[derive(Debug, Clone)]
enum Change {
    Reported(Option<UserStatus>),
    Connected,
    Offline(OfflineReason),
}

fn change() -> impl Strategy<Value = Change> {
    let status = select(vec![
        UserStatus::Active,
        UserStatus::Away,
        UserStatus::Offline,
    ]);
    let reason = select(vec![
        OfflineReason::Disconnected,
        OfflineReason::Timeout,
        OfflineReason::InstanceLost,
    ]);
    prop_oneof![
        4 => prop::option::of(status).prop_map(Change::Reported),
        1 => Just(Change::Connected),
        1 => reason.prop_map(Change::Offline),
    ]
}

fn apply(previous: Option<&StatusRecord>, change: &Change, now: u64) -> StatusRecord {
    let change = match change {
        Change::Reported(status) => {
            let json = match status {
                Some(s) => format!(r#"{{"quiz_id":"q1","user_status":"{}"}}"#, s.as_str()),
                None => r#"{"quiz_id":"q1"}"#.to_string(),
            };
            StatusChange::Reported(serde_json::from_str(&json).expect("a literal status object"))
        }
        Change::Connected => StatusChange::Connected {
            student: UserId::new("s1"),
            name: Some("Ann".into()),
        },
        Change::Offline(reason) => StatusChange::Offline(*reason),
    };
    StatusRecord::next(&key(), previous, change, now)
}

proptest! {
    #![proptest_config(config(256))]

    /// Any JSON object reads into `StatusFields` and writes back with every value's text
    /// unchanged, in the order sent (a repeated name keeps its first place and last value).
    #[test]
    fn status_fields_round_trip_byte_for_byte((text, fields) in json_object(field_name())) {
        let parsed: StatusFields = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let kept = last_value_wins(&fields);
        prop_assert_eq!(parsed.len(), kept.len());
        for (name, value) in &kept {
            prop_assert_eq!(parsed.raw(name).map(RawValue::get), Some(value.as_str()));
        }
        let written = serde_json::to_string(&parsed).expect("fields serialize");
        let expected: Vec<String> = kept
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).expect("a name serializes")))
            .collect();
        prop_assert_eq!(&written, &format!("{{{}}}", expected.join(",")));
        let again: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&written)
            .map_err(|e| TestCaseError::fail(format!("{written}: {e}")))?;
        for (name, value) in &kept {
            prop_assert_eq!(again.get(name).map(|r| r.get()), Some(value.as_str()));
        }
    }

    /// What a student sends reaches the proctors' `student_status` frame byte for byte,
    /// except the fields the server owns.
    #[test]
    fn student_fields_reach_the_proctors_unchanged(
        (text, fields) in json_object(field_name()),
        now in any::<u64>(),
    ) {
        let data: StatusFields = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let rec = StatusRecord::next(&key(), None, StatusChange::Reported(data), now);
        let frame = read_status_frame(&outbound::student_status(&rec))?;
        prop_assert_eq!(frame.r#type, "student_status");
        prop_assert_eq!(frame.quiz_id, "q1");
        prop_assert_eq!(frame.seq, 1);
        let passed: Vec<(String, String)> = last_value_wins(&fields)
            .into_iter()
            .filter(|(k, _)| k != "user_status" && !SERVER_FIELDS.contains(&k.as_str()))
            .collect();
        for (name, value) in &passed {
            prop_assert_eq!(frame.data.get(name).map(|r| r.get()), Some(value.as_str()), "{}", name);
        }
        // Theirs plus user_status, connected, last_seen and away_count: nothing else.
        prop_assert_eq!(frame.data.len(), passed.len() + 4);
        // The stored form (Redis, the record database, DynamoDB) reads back the same record.
        let stored = rec.to_stored_json();
        let read_back = StatusRecord::from_stored_json(key(), &stored);
        prop_assert_eq!(read_back.as_ref(), Some(&rec), "{}", stored);
    }

    /// `connected`, `last_seen`, `away_count`, `reason` and `seq` are the server's, whatever
    /// a student puts in them (plainly or spelled with escapes).
    #[test]
    fn students_cannot_set_server_fields(
        forged in prop::collection::vec(
            (select(SERVER_FIELDS.to_vec()), any::<bool>(), json_value()),
            1..8,
        ),
        (_, others) in json_object("[a-z_]{1,12}"),
        status in prop::option::of(select(vec!["active", "away", "offline"])),
        history in prop::collection::vec(change(), 0..6),
        now in 1u64..u64::MAX / 2,
    ) {
        let mut previous: Option<StatusRecord> = None;
        for (i, c) in history.iter().enumerate() {
            previous = Some(apply(previous.as_ref(), c, i as u64));
        }
        let mut parts: Vec<String> = Vec::new();
        for (name, value) in &others {
            parts.push(format!("{}:{value}", serde_json::to_string(name).expect("a name")));
        }
        for (name, escaped, value) in &forged {
            let name = if *escaped { escaped_all(name, false) } else { format!("{name:?}") };
            parts.push(format!("{name}:{value}"));
        }
        if let Some(s) = status {
            parts.push(format!(r#""user_status":"{s}""#));
        }
        let text = format!("{{{}}}", parts.join(","));
        let data: StatusFields = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let rec = StatusRecord::next(&key(), previous.as_ref(), StatusChange::Reported(data), now);

        prop_assert_eq!(rec.seq, previous.as_ref().map_or(0, |p| p.seq) + 1);
        prop_assert!(rec.connected);
        prop_assert_eq!(rec.last_seen, now);
        prop_assert_eq!(rec.reason, None);
        let was_away = previous.as_ref().map(|p| p.user_status) == Some(UserStatus::Away);
        let count_before = previous.as_ref().map_or(0, |p| p.away_count);
        let into_away = u64::from(rec.user_status == UserStatus::Away && !was_away);
        prop_assert_eq!(rec.away_count, count_before + into_away);

        let raw = |name: &str| rec.fields.raw(name).map(|r| r.get().to_string());
        prop_assert_eq!(raw("connected"), Some("true".to_string()));
        prop_assert_eq!(raw("last_seen"), Some(now.to_string()));
        prop_assert_eq!(raw("away_count"), Some(rec.away_count.to_string()));
        prop_assert_eq!(raw("reason"), None);
        prop_assert_eq!(raw("seq"), None);
        prop_assert_eq!(raw("user_status"), Some(format!("{:?}", rec.user_status.as_str())));

        let frame = read_status_frame(&outbound::student_status(&rec))?;
        prop_assert_eq!(frame.seq, rec.seq);
        prop_assert!(!frame.data.contains_key("seq") && !frame.data.contains_key("reason"));
        prop_assert_eq!(frame.data.get("connected").map(|r| r.get()), Some("true"));
        let snapshot: Snapshot = serde_json::from_str(&outbound::snapshot(&key().quiz, [&rec].into_iter()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let listed = snapshot.students.first().and_then(|s| s.get("seq")).map(|r| r.get().to_string());
        prop_assert_eq!(listed, Some(rec.seq.to_string()));
    }

    /// Over any sequence of reports, connects and disconnects, `away_count` is the number of
    /// transitions into away, `seq` counts the updates, and `user_status` follows the policy
    /// of the README.
    #[test]
    fn away_count_counts_transitions_into_away(changes in prop::collection::vec(change(), 1..40)) {
        let mut previous: Option<StatusRecord> = None;
        let mut transitions = 0u64;
        for (i, c) in changes.iter().enumerate() {
            let before = previous.as_ref().map(|p| p.user_status);
            let rec = apply(previous.as_ref(), c, 1_000 + i as u64);
            let expected = match c {
                Change::Reported(Some(s)) => *s,
                Change::Reported(None) => match before {
                    Some(UserStatus::Offline) | None => UserStatus::Active,
                    Some(s) => s,
                },
                Change::Connected if before == Some(UserStatus::Away) => UserStatus::Away,
                Change::Connected => UserStatus::Active,
                Change::Offline(_) => UserStatus::Offline,
            };
            prop_assert_eq!(rec.user_status, expected, "after {:?}", c);
            if rec.user_status == UserStatus::Away && before != Some(UserStatus::Away) {
                transitions += 1;
            }
            prop_assert_eq!(rec.away_count, transitions);
            prop_assert_eq!(rec.seq, i as u64 + 1);
            prop_assert_eq!(rec.connected, !matches!(c, Change::Offline(_)));
            let reason = rec.fields.text("reason");
            match c {
                Change::Offline(r) => prop_assert_eq!(reason.as_deref(), Some(r.as_str())),
                _ => prop_assert_eq!(reason, None),
            }
            previous = Some(rec);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The outbox and the rate limit.

#[derive(Debug, Clone)]
enum OutboxOp {
    /// A status of attempt `a{0}`.
    Status(u8),
    Take(usize),
    /// A close frame, which the outbox takes past its limit.
    Close,
    Clear,
}

fn outbox_op() -> impl Strategy<Value = OutboxOp> {
    prop_oneof![
        8 => (0u8..6).prop_map(OutboxOp::Status),
        3 => (0usize..5).prop_map(OutboxOp::Take),
        1 => Just(OutboxOp::Close),
        1 => Just(OutboxOp::Clear),
    ]
}

fn attempt(a: u8) -> AttemptKey {
    AttemptKey {
        quiz: QuizId::new("q1"),
        attempt: AttemptId::new(format!("a{a}")),
    }
}

/// What the outbox holds, in the model: a status of an attempt, or a close frame.
#[derive(Debug, Clone, PartialEq)]
enum Waiting {
    Status(u8, String),
    Close,
}

impl Waiting {
    /// The `Debug` text of the outbox's entry. `Outgoing` (like `Pushed` and `Full`) is not
    /// exported by `invigil::session`, so its `Debug` text is the only public view of it.
    fn debug(&self) -> String {
        match self {
            Waiting::Status(_, frame) => format!("Text({frame:?})"),
            Waiting::Close => format!("Close(1013, {:?})", "bye"),
        }
    }

    /// What it weighs against the outbox's byte limit.
    fn bytes(&self) -> usize {
        match self {
            Waiting::Status(_, frame) => frame.len(),
            Waiting::Close => "bye".len(),
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The outbox never holds more than its limit of frames nor (past its first frame) of
    /// bytes, a close frame aside, which is never refused; keeps only the latest status of
    /// each attempt, in the place of the first; and writes in order.
    #[test]
    fn outbox_is_bounded_and_keeps_the_latest_status_in_order(
        limit in 1usize..12,
        max_bytes in 4usize..64,
        ops in prop::collection::vec(outbox_op(), 0..120),
    ) {
        let mut outbox = Outbox::new(limit, max_bytes);
        let mut model: VecDeque<Waiting> = VecDeque::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                OutboxOp::Status(a) => {
                    let frame = format!("a{a} #{n}");
                    let got = format!("{:?}", outbox.push_status(&attempt(*a), Frame::from(frame.clone())));
                    let bytes: usize = model.iter().map(Waiting::bytes).sum();
                    let full = model.len() >= limit
                        || (!model.is_empty() && bytes + frame.len() > max_bytes);
                    let waiting = model.iter_mut().find(|w| matches!(w, Waiting::Status(x, _) if x == a));
                    let expected = match waiting {
                        Some(slot) => {
                            *slot = Waiting::Status(*a, frame);
                            "Ok(Replaced)"
                        }
                        None if full => "Err(Full)",
                        None => {
                            model.push_back(Waiting::Status(*a, frame));
                            "Ok(Queued)"
                        }
                    };
                    prop_assert_eq!(got, expected, "op {} {:?}", n, op);
                }
                OutboxOp::Take(k) => {
                    let taken: Vec<String> = outbox.take(*k).iter().map(|o| format!("{o:?}")).collect();
                    let k = (*k).min(model.len());
                    let expected: Vec<String> = model.drain(..k).map(|w| w.debug()).collect();
                    prop_assert_eq!(taken, expected, "op {} {:?}", n, op);
                }
                OutboxOp::Close => {
                    outbox.push_close(1013, "bye");
                    model.push_back(Waiting::Close);
                }
                OutboxOp::Clear => {
                    outbox.clear();
                    model.clear();
                }
            }
            let closes = model.iter().filter(|w| **w == Waiting::Close).count();
            prop_assert_eq!(outbox.len(), model.len());
            prop_assert_eq!(outbox.bytes(), model.iter().map(Waiting::bytes).sum::<usize>());
            prop_assert!(outbox.len() <= limit + closes, "{} frames, limit {}", outbox.len(), limit);
            prop_assert_eq!(outbox.is_empty(), model.is_empty());
            let mut attempts: Vec<u8> = model
                .iter()
                .filter_map(|w| match w { Waiting::Status(a, _) => Some(*a), Waiting::Close => None })
                .collect();
            let statuses = attempts.len();
            attempts.sort_unstable();
            attempts.dedup();
            prop_assert_eq!(attempts.len(), statuses, "two statuses of one attempt waiting");
        }
        let rest: Vec<String> = outbox.take(usize::MAX).iter().map(|o| format!("{o:?}")).collect();
        let expected: Vec<String> = model.iter().map(Waiting::debug).collect();
        prop_assert_eq!(rest, expected);
    }
}

proptest! {
    // Real time passes in these cases (a few milliseconds each), so fewer of them.
    #![proptest_config(config(64))]

    /// However fast messages come, the bucket allows at most `burst + rate × elapsed`, and
    /// at least the burst when that many come at once.
    #[test]
    fn rate_limiter_never_allows_more_than_burst_plus_rate(
        rate in 0.5f64..5_000.0,
        burst in 1.0f64..50.0,
        rounds in prop::collection::vec((1usize..200, 0u64..3), 1..5),
    ) {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(rate, burst);
        let (mut calls, mut allowed) = (0usize, 0usize);
        for (n, pause_ms) in &rounds {
            for _ in 0..*n {
                calls += 1;
                allowed += usize::from(limiter.allow());
            }
            std::thread::sleep(Duration::from_millis(*pause_ms));
        }
        let elapsed = start.elapsed().as_secs_f64();
        prop_assert!(
            allowed as f64 <= burst + rate * elapsed + 1e-9,
            "{allowed} allowed of {calls} in {elapsed}s (rate {rate}, burst {burst})"
        );
        let first_round = rounds[0].0;
        prop_assert!(allowed >= first_round.min(burst.floor() as usize));
    }
}

// ---------------------------------------------------------------------------------------------
// Token verification.

fn verifier() -> Verifier {
    Verifier::new(&Secret::new("k"), &Settings::defaults().auth).expect("a non-empty secret")
}

fn now_secs() -> u64 {
    invigil::now_ms() / 1000
}

/// Unpadded base64url, as JWT segments are written.
fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A claim's value: sometimes right, often the wrong type or out of range.
fn claim_value(name: &'static str) -> BoxedStrategy<Value> {
    let now = now_secs();
    let id = prop_oneof![
        "[a-z0-9]{0,8}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(serde_json::json!(["q1"])),
        Just(serde_json::json!({"a": 1})),
    ];
    match name {
        "role" => prop_oneof![
            select(vec!["student", "proctor", "admin", "Student", ""]).prop_map(Value::from),
            id,
        ]
        .boxed(),
        "exp" | "nbf" | "iat" => prop_oneof![
            (0u64..7200).prop_map(move |d| Value::from(now + d)),
            (0u64..7200).prop_map(move |d| Value::from(now.saturating_sub(d))),
            Just(Value::from(u64::MAX)),
            Just(Value::from(-1)),
            Just(serde_json::json!(1e300)),
            Just(Value::from(format!("{now}"))),
        ]
        .boxed(),
        "quizzes" | "aud" => prop_oneof![
            prop::collection::vec(id.clone(), 0..4).prop_map(Value::from),
            id,
        ]
        .boxed(),
        _ => id.boxed(),
    }
}

const CLAIMS: [&str; 11] = [
    "sub",
    "role",
    "exp",
    "quiz_id",
    "attempt_id",
    "name",
    "quizzes",
    "nbf",
    "iat",
    "aud",
    "iss",
];

/// A claims object: a valid student or proctor token's, then a few claims removed or set to
/// any value, so that both acceptance and every refusal are reached.
fn claims_object() -> impl Strategy<Value = Map<String, Value>> {
    let now = now_secs();
    let valid = (
        any::<bool>(),
        "[a-z0-9]{1,6}",
        prop::collection::vec("[a-z0-9]{1,4}", 0..3),
        60u64..86_400,
    )
        .prop_map(move |(student, id, quizzes, ttl)| {
            let mut m = Map::new();
            m.insert("sub".into(), Value::from(format!("u-{id}")));
            m.insert("exp".into(), Value::from(now + ttl));
            if student {
                m.insert("role".into(), Value::from("student"));
                m.insert("quiz_id".into(), Value::from(format!("q-{id}")));
                m.insert("attempt_id".into(), Value::from(format!("a-{id}")));
            } else {
                m.insert("role".into(), Value::from("proctor"));
                m.insert("quizzes".into(), Value::from(quizzes));
            }
            m
        });
    let change = select(CLAIMS.to_vec()).prop_flat_map(|name| {
        prop::option::weighted(0.8, claim_value(name)).prop_map(move |v| (name, v))
    });
    (valid, prop::collection::vec(change, 0..3)).prop_map(|(mut m, changes)| {
        for (name, value) in changes {
            match value {
                Some(v) => m.insert(name.to_string(), v),
                None => m.remove(name),
            };
        }
        m
    })
}

/// An id claim as the server reads it: a string, or an integer's text.
fn id_claim(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn verify_refuses_arbitrary_text(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=.-]{0,200}",
        (prop::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5)).prop_map(|s| s.join(".")),
    ]) {
        prop_assert!(verifier().verify(&token).is_err());
    }

    /// Three well-formed segments around any header and payload text, and any signature.
    #[test]
    fn verify_refuses_forged_tokens(
        header in prop_oneof![
            json_value(),
            Just(r#"{"alg":"none","typ":"JWT"}"#.to_string()),
            Just(r#"{"alg":"HS256"}"#.to_string()),
            Just(r#"{"alg":"HS512"}"#.to_string()),
            Just(r#"{"alg":"RS256","jwk":{"kty":"oct","k":"aw"}}"#.to_string()),
        ],
        payload in prop_oneof![json_value(), claims_object().prop_map(|m| Value::Object(m).to_string())],
        signature in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let token = format!("{}.{}.{}", b64url(header.as_bytes()), b64url(payload.as_bytes()), b64url(&signature));
        prop_assert!(verifier().verify(&token).is_err(), "{token}");
    }

    /// Correctly signed tokens with any claims: never a panic, and a token is accepted only if
    /// its claims say exactly what it grants and it has not expired.
    #[test]
    fn verify_grants_only_what_the_claims_say(claims in claims_object()) {
        let key = EncodingKey::from_secret(b"k").expect("an HMAC key");
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Value::Object(claims.clone()), &key)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Ok(identity) = verifier().verify(&token) else { return Ok(()) };
        let leeway = Settings::defaults().auth.leeway_secs;
        let exp = claims.get("exp").and_then(Value::as_u64);
        prop_assert!(exp.is_some_and(|exp| exp.saturating_add(leeway) >= now_secs()), "accepted exp {:?}", claims.get("exp"));
        prop_assert!(id_claim(claims.get("sub")).is_some());
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64();
            prop_assert!(nbf.is_some_and(|nbf| nbf <= now_secs() + leeway), "accepted nbf {:?}", claims.get("nbf"));
        }
        match identity {
            Identity::Student(s) => {
                prop_assert_eq!(claims.get("role"), Some(&Value::from("student")));
                prop_assert_eq!(id_claim(claims.get("sub")), Some(s.student.to_string()));
                prop_assert_eq!(id_claim(claims.get("quiz_id")), Some(s.key.quiz.to_string()));
                prop_assert_eq!(id_claim(claims.get("attempt_id")), Some(s.key.attempt.to_string()));
            }
            Identity::Proctor(p) => {
                prop_assert_eq!(claims.get("role"), Some(&Value::from("proctor")));
                let listed: Vec<String> = match claims.get("quizzes") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items.iter().map(|v| id_claim(Some(v))).collect::<Option<_>>()
                        .ok_or_else(|| TestCaseError::fail("accepted a quiz id that is not an id"))?,
                    Some(other) => return Err(TestCaseError::fail(format!("accepted quizzes {other}"))),
                };
                let mut granted: Vec<String> = p.quizzes.iter().map(ToString::to_string).collect();
                granted.sort();
                let mut listed = listed;
                listed.sort();
                listed.dedup();
                prop_assert_eq!(granted, listed);
            }
        }
    }

    /// What `mint` signs, `verify` reads back; the wrong secret or an expired token is refused.
    #[test]
    fn minted_tokens_verify_to_their_claims(
        sub in any::<String>(),
        quiz in any::<String>(),
        attempt in any::<String>(),
        name in prop::option::of(any::<String>()),
        student in any::<bool>(),
        ttl in 60u64..100_000,
    ) {
        let claims = Claims {
            sub: sub.clone(),
            role: if student { Role::Student } else { Role::Proctor },
            exp: now_secs() + ttl,
            quiz_id: Some(QuizId::new(&quiz)),
            attempt_id: Some(AttemptId::new(&attempt)),
            name: name.clone(),
            quizzes: vec![QuizId::new(&quiz)],
        };
        let token = mint(&Secret::new("k"), &claims).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match verifier().verify(&token).map_err(|e| TestCaseError::fail(e.to_string()))? {
            Identity::Student(s) => {
                prop_assert!(student);
                prop_assert_eq!(s.student.as_str(), sub.as_str());
                prop_assert_eq!(s.key.quiz.as_str(), quiz.as_str());
                prop_assert_eq!(s.key.attempt.as_str(), attempt.as_str());
                prop_assert_eq!(s.name, name);
            }
            Identity::Proctor(p) => {
                prop_assert!(!student);
                prop_assert_eq!(p.user.as_str(), sub.as_str());
                prop_assert!(p.quizzes.len() == 1 && p.quizzes.contains(&QuizId::new(&quiz)));
            }
        }
        let other = Verifier::new(&Secret::new("not-k"), &Settings::defaults().auth).expect("a secret");
        prop_assert_eq!(other.verify(&token).err(), Some(AuthError::BadSignature));
        let leeway = Settings::defaults().auth.leeway_secs;
        let expired = Claims { exp: now_secs() - leeway - ttl, ..claims };
        let token = mint(&Secret::new("k"), &expired).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verifier().verify(&token).err(), Some(AuthError::Expired));
    }

    /// During a secret rotation, a token signed with the previous secret is accepted until the
    /// deadline (or always, with none) and never after; one signed with any other, never.
    #[test]
    fn the_previous_secret_is_accepted_only_until_its_deadline(
        offset in prop_oneof![-100_000i64..-2, 3i64..100_000],
        forever in any::<bool>(),
        signer in select(vec!["new", "old", "other"]),
    ) {
        let now = now_secs();
        let until = if forever { 0 } else { now.saturating_add_signed(offset) };
        let mut settings = Settings::defaults().auth;
        settings.previous_jwt_secret = Secret::new("old");
        settings.previous_jwt_secret_until = until;
        let v = Verifier::new(&Secret::new("new"), &settings).expect("non-empty secrets");
        let claims = Claims {
            sub: "p".into(),
            role: Role::Proctor,
            exp: now + 600,
            quiz_id: None,
            attempt_id: None,
            name: None,
            quizzes: vec![QuizId::new("q1")],
        };
        let token = mint(&Secret::new(signer), &claims).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = match signer {
            "new" => true,
            "old" => forever || now < until,
            _ => false,
        };
        let got = v.verify(&token);
        prop_assert_eq!(got.is_ok(), expected, "{:?}", got.err());
        if !expected {
            prop_assert_eq!(got.err(), Some(AuthError::BadSignature));
        }
    }
}
