//! Routing: statuses to the proctors of the quiz, messages to the socket of the attempt.

use serde_json::{json, Value};

use crate::helpers::*;

/// The `student_status` that a student's connect produces.
async fn connected(p: &mut Client, attempt: &str) -> Value {
    let v = p.recv().await;
    assert_eq!(v["type"], "student_status", "{v}");
    assert_eq!(v["data"]["quiz_attempt_id"], attempt);
    assert_eq!(v["data"]["connected"], true);
    v
}

#[actix_rt::test]
async fn a_status_reaches_the_proctors_of_its_quiz_with_the_server_fields() {
    let app = spawn_app().await;
    let (mut p, snapshot) = app.watching("q1").await;
    assert_eq!(
        snapshot,
        json!({"type": "snapshot", "quiz_id": "q1", "students": []})
    );
    let (mut other_quiz, _) = app.watching("q2").await;

    let mut s = app.student("q1", "a1", "s1").await;
    let hello = connected(&mut p, "a1").await;
    assert_eq!(hello["seq"], 1);
    assert_eq!(hello["data"]["user_status"], "active");
    assert_eq!(hello["data"]["student_id"], "s1");
    assert_eq!(hello["data"]["student_name"], "Student s1");

    // Unlisted fields and timestamp_sent pass through byte for byte.
    let before = invigil::now_ms();
    s.send_text(
        r#"{"type":"message_to_master","clientConnectionSocketId":"ignored","message":{"action":"lmsQuizMonitoringStudent","data":{"quiz_id":"q1","quiz_attempt_id":"a1","student_id":"s1","user_status":"away","question_answered":3,"question_total":40,"question_number_current":4,"topic_uuid":"t-9","extra":{"z":1,"a":[1.50,2]},"timestamp_sent":1733300000123.50}}}"#,
    )
    .await;
    let raw = p.recv_text().await;
    assert!(
        raw.contains(r#""timestamp_sent":1733300000123.50"#),
        "{raw}"
    );
    assert!(raw.contains(r#""extra":{"z":1,"a":[1.50,2]}"#), "{raw}");
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["type"], "student_status");
    assert_eq!(v["quiz_id"], "q1");
    assert_eq!(v["seq"], 2);
    let data = &v["data"];
    assert_eq!(data["user_status"], "away");
    assert_eq!(data["connected"], true);
    assert_eq!(data["away_count"], 1);
    assert_eq!(data["topic_uuid"], "t-9");
    assert!(data.get("reason").is_none());
    assert!(data["last_seen"].as_u64().unwrap() >= before);

    // Back, then away again: the count of transitions into away grows.
    for (st, away) in [("active", 1), ("away", 2), ("away", 2)] {
        s.send(status("q1", "a1", "s1", st, Value::Null)).await;
        let v = p.recv().await;
        assert_eq!(v["data"]["away_count"], away, "{v}");
    }
    // The proctor of another quiz saw none of it: its next frame answers its own ping.
    other_quiz.send(json!({"type": "ping"})).await;
    assert_eq!(other_quiz.recv().await, json!({"type": "pong"}));
}

#[actix_rt::test]
async fn ids_that_do_not_match_the_token_are_forbidden_and_not_routed() {
    let app = spawn_app().await;
    let (mut p, _) = app.watching("q1").await;
    let mut s = app.student("q1", "a1", "s1").await;
    connected(&mut p, "a1").await;
    for (quiz, attempt, sub) in [("q2", "a1", "s1"), ("q1", "a2", "s1"), ("q1", "a1", "s2")] {
        s.send(status(quiz, attempt, sub, "away", json!(9))).await;
        let err = s.recv().await;
        assert_eq!(err["type"], "error");
        assert_eq!(err["code"], "forbidden");
        assert_eq!(err["id"], 9);
    }
    // Missing ids are not the token's either.
    s.send(json!({"type": "message_to_master", "id": 10,
        "message": {"action": "lmsQuizMonitoringStudent", "data": {"user_status": "away"}}}))
        .await;
    assert_eq!(s.recv().await["code"], "forbidden");
    // Nothing was routed or stored: the next status the proctor gets is seq 2, not away.
    s.send(status("q1", "a1", "s1", "active", Value::Null))
        .await;
    let v = p.recv().await;
    assert_eq!(v["seq"], 2);
    assert_eq!(v["data"]["away_count"], 0);
    let (_, body) = get(&app.http("/api/v1/quizzes/q2/students"), Some(API_KEY)).await;
    assert_eq!(body, r#"{"quiz_id":"q2","students":[]}"#);
}

#[actix_rt::test]
async fn the_snapshot_lists_every_attempt_with_its_seq() {
    let app = spawn_app().await;
    let (mut watcher, _) = app.watching("q1").await;
    let mut a1 = app.student("q1", "a1", "s1").await;
    a1.send(status("q1", "a1", "s1", "away", json!(1))).await;
    a1.recv().await;
    let a2 = app.student("q1", "a2", "s2").await;
    a2.close().await;
    app.student("q2", "b1", "s3").await;
    // Wait for a2's offline report, then ask again for the snapshot.
    loop {
        let v = watcher.recv_type("student_status").await;
        if v["data"]["quiz_attempt_id"] == "a2" && v["data"]["connected"] == false {
            break;
        }
    }
    watcher
        .send(json!({"type": "subscribe", "quiz_id": "q1"}))
        .await;
    let snapshot = watcher.recv_type("snapshot").await;
    let students = snapshot["students"].as_array().unwrap();
    assert_eq!(students.len(), 2, "{snapshot}");
    let a1s = &students[0];
    assert_eq!(a1s["quiz_attempt_id"], "a1");
    assert_eq!(a1s["user_status"], "away");
    assert_eq!(a1s["away_count"], 1);
    assert_eq!(a1s["connected"], true);
    assert_eq!(a1s["seq"], 2);
    let a2s = &students[1];
    assert_eq!(a2s["user_status"], "offline");
    assert_eq!(a2s["reason"], "disconnected");
    assert_eq!(a2s["seq"], 2);
}

#[actix_rt::test]
async fn proctors_may_only_watch_and_message_their_quizzes() {
    let app = spawn_app().await;
    let mut p = app.proctor(&["q1"]).await;
    p.send(json!({"type": "subscribe", "quiz_id": "q2", "id": 1}))
        .await;
    let err = p.recv().await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_i64()),
        (Some("forbidden"), Some(1))
    );
    app.student("q2", "b1", "s9").await;
    p.send(
        json!({"type": "message_to_student", "quiz_id": "q2", "quiz_attempt_id": "b1",
        "kind": "chat", "text": "hi", "id": 2}),
    )
    .await;
    assert_eq!(p.recv().await["code"], "forbidden");
    // A proctor may not act as a student, nor a student as a proctor.
    p.send(status("q1", "a1", "s1", "active", json!(3))).await;
    assert_eq!(p.recv().await["code"], "forbidden");
    let mut s = app.student("q1", "a1", "s1").await;
    s.send(json!({"type": "subscribe", "quiz_id": "q1", "id": 4}))
        .await;
    assert_eq!(s.recv().await["code"], "forbidden");
}

#[actix_rt::test]
async fn unsubscribe_stops_the_updates() {
    let app = spawn_app().await;
    let (mut p, _) = app.watching("q1").await;
    p.send(json!({"type": "unsubscribe", "quiz_id": "q1", "id": "u"}))
        .await;
    assert_eq!(p.recv().await, json!({"type": "ack", "id": "u"}));
    let mut s = app.student("q1", "a1", "s1").await;
    s.send(status("q1", "a1", "s1", "away", json!(1))).await;
    s.recv().await;
    p.send(json!({"type": "ping"})).await;
    assert_eq!(p.recv().await, json!({"type": "pong"}));
}

#[actix_rt::test]
async fn proctor_messages_reach_the_attempt_and_unknown_attempts_are_not_found() {
    let app = spawn_app().await;
    let (mut p, _) = app.watching("q1").await;
    let mut s = app.student("q1", "a1", "s1").await;
    connected(&mut p, "a1").await;
    let before = invigil::now_ms();
    p.send(
        json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "a1",
        "kind": "warning", "text": "Eyes on your own screen", "id": 7}),
    )
    .await;
    assert_eq!(p.recv().await, json!({"type": "ack", "id": 7}));
    let m = s.recv().await;
    assert_eq!(m["type"], "proctor_message");
    assert_eq!(m["kind"], "warning");
    assert_eq!(m["from"], "Ms Proctor");
    assert_eq!(m["text"], "Eyes on your own screen");
    assert!(m["ts"].as_u64().unwrap() >= before);

    p.send(
        json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "nobody",
        "kind": "chat", "text": "hello?", "id": 8}),
    )
    .await;
    let err = p.recv().await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_i64()),
        (Some("not_found"), Some(8))
    );

    // Once the student leaves, the attempt is connected nowhere.
    s.close().await;
    assert_eq!(p.recv().await["data"]["reason"], "disconnected");
    p.send(
        json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "a1",
        "kind": "chat", "text": "still there?", "id": 9}),
    )
    .await;
    assert_eq!(p.recv().await["code"], "not_found");
}

#[actix_rt::test]
async fn student_messages_reach_every_proctor_of_the_quiz() {
    let app = spawn_app().await;
    let (mut p1, _) = app.watching("q1").await;
    let (mut p2, _) = app.watching("q1").await;
    let mut s = app.student("q1", "a1", "s1").await;
    s.send(json!({"type": "message_to_proctor", "text": "my screen froze", "id": 1}))
        .await;
    assert_eq!(s.recv().await, json!({"type": "ack", "id": 1}));
    for p in [&mut p1, &mut p2] {
        let m = p.recv_type("student_message").await;
        assert_eq!(m["quiz_id"], "q1");
        assert_eq!(m["quiz_attempt_id"], "a1");
        assert_eq!(m["student_id"], "s1");
        assert_eq!(m["text"], "my screen froze");
        assert!(m["ts"].as_u64().is_some());
    }
}

#[actix_rt::test]
async fn a_newer_socket_replaces_the_older_one_and_seq_carries_on() {
    let app = spawn_app().await;
    let (mut p, _) = app.watching("q1").await;
    let mut old = app.student("q1", "a1", "s1").await;
    connected(&mut p, "a1").await;
    old.send(status("q1", "a1", "s1", "away", json!(1))).await;
    assert_eq!(p.recv().await["seq"], 2);

    let mut new = app.student("q1", "a1", "s1").await;
    let close = old.closed().await;
    assert_eq!(u16::from(close.code), 4009);
    // The takeover reads as connected, never as offline, and continues the attempt's seq
    // and away count.
    let v = connected(&mut p, "a1").await;
    assert_eq!(v["seq"], 3);
    assert_eq!(v["data"]["away_count"], 1);
    new.send(status("q1", "a1", "s1", "active", json!(2))).await;
    let v = p.recv().await;
    assert_eq!(v["seq"], 4, "{v}");
    assert_eq!(v["data"]["connected"], true);

    // A reconnect after a disconnect carries on too.
    new.close().await;
    assert_eq!(p.recv().await["seq"], 5);
    app.student("q1", "a1", "s1").await;
    let v = connected(&mut p, "a1").await;
    assert_eq!(v["seq"], 6);
    assert_eq!(v["data"]["user_status"], "active");
}
