//! Fuzz target `status_fields`: any UTF-8 text read as a student's STATUS fields, then through
//! `StatusRecord::next`, `outbound::student_status` and the stored form: every value the
//! student sent reaches the proctors as the very text it was, and only the server sets its
//! own fields.

#![no_main]

use std::collections::BTreeMap;

use invigil::protocol::{
    ids::{AttemptId, AttemptKey, QuizId},
    outbound,
    status::{StatusChange, StatusFields, StatusRecord, SERVER_FIELDS},
    OfflineReason,
};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

/// A JSON object read independently of `StatusFields`: each name's last value, as raw text.
type Raw = BTreeMap<String, Box<RawValue>>;

#[derive(serde::Deserialize)]
struct StatusFrame {
    seq: u64,
    data: Raw,
}

const NOW: u64 = 1_733_300_000_000;

fn key() -> AttemptKey {
    AttemptKey {
        quiz: QuizId::new("q1"),
        attempt: AttemptId::new("a1"),
    }
}

/// Every value the student sent (but the server's and `user_status`) is in `data`, unchanged.
fn assert_passed_through(sent: &Raw, data: &Raw) {
    for (name, value) in sent {
        if name == "user_status" || SERVER_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let got = data.get(name).map(|v| v.get());
        assert_eq!(got, Some(value.get()), "field {name:?} changed");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(fields) = serde_json::from_str::<StatusFields>(text) else {
        return;
    };
    let sent: Raw = serde_json::from_str(text).expect("StatusFields read it, so a map does");

    // Read: each name once, with its last value's text.
    assert_eq!(fields.len(), sent.len());
    for (name, value) in &sent {
        assert_eq!(fields.raw(name).map(RawValue::get), Some(value.get()));
    }
    // Written back: the same.
    let written = serde_json::to_string(&fields).expect("fields serialize");
    let again: Raw = serde_json::from_str(&written).expect("written fields are JSON");
    assert_eq!(again.len(), sent.len());
    assert_passed_through(&sent, &again);

    // To the proctors: the student's fields unchanged, the server's set by the server.
    let rec = StatusRecord::next(&key(), None, StatusChange::Reported(fields), NOW);
    let frame: StatusFrame =
        serde_json::from_str(&outbound::student_status(&rec)).expect("student_status is JSON");
    assert_eq!(frame.seq, 1);
    assert_passed_through(&sent, &frame.data);
    let server = |name: &str| frame.data.get(name).map(|v| v.get().to_string());
    assert_eq!(server("connected").as_deref(), Some("true"));
    assert_eq!(server("last_seen"), Some(NOW.to_string()));
    assert_eq!(server("away_count"), Some(rec.away_count.to_string()));
    assert_eq!(server("reason"), None);
    assert_eq!(server("seq"), None);

    // Stored (Redis, the record database, DynamoDB) and read back: the same record.
    let stored = rec.to_stored_json();
    assert_eq!(
        StatusRecord::from_stored_json(key(), &stored).as_ref(),
        Some(&rec),
        "stored form {stored}"
    );

    // Disconnected: the fields stay, the server says why.
    let off = StatusRecord::next(
        &key(),
        Some(&rec),
        StatusChange::Offline(OfflineReason::Timeout),
        NOW + 1,
    );
    let frame: StatusFrame =
        serde_json::from_str(&outbound::student_status(&off)).expect("student_status is JSON");
    assert_eq!(frame.seq, 2);
    assert_passed_through(&sent, &frame.data);
    assert_eq!(
        frame.data.get("reason").map(|v| v.get()),
        Some("\"timeout\"")
    );
});
