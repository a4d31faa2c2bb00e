//! Several instances in one process over the in-process bridge: the bridge seam at work.

use serde_json::json;

use crate::helpers::*;

#[actix_rt::test]
async fn instances_route_statuses_and_messages_to_each_other() {
    let (apps, _hub) = spawn_cluster(2).await;
    let (a, b) = (&apps[0], &apps[1]);
    let (mut proctor_on_b, _) = b.watching("q1").await;
    let mut student_on_a = a.student("q1", "a1", "s1").await;
    let v = proctor_on_b.recv().await;
    assert_eq!(v["data"]["connected"], true);
    student_on_a
        .send(status("q1", "a1", "s1", "away", json!(1)))
        .await;
    assert_eq!(student_on_a.recv().await, json!({"type": "ack", "id": 1}));
    let v = proctor_on_b.recv().await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["away_count"].as_u64()),
        (Some(2), Some(1))
    );

    proctor_on_b
        .send(
            json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "a1",
            "kind": "chat", "text": "all good?", "id": 2}),
        )
        .await;
    assert_eq!(proctor_on_b.recv().await, json!({"type": "ack", "id": 2}));
    assert_eq!(student_on_a.recv().await["text"], "all good?");

    student_on_a
        .send(json!({"type": "message_to_proctor", "text": "yes"}))
        .await;
    assert_eq!(proctor_on_b.recv().await["text"], "yes");

    // A snapshot taken on either instance holds the attempt.
    let (_, snap) = a.watching("q1").await;
    assert_eq!(snap["students"][0]["seq"], 2);

    // The student moves to b: a's socket is replaced, seq carries on, nothing reads offline.
    let mut student_on_b = b.student("q1", "a1", "s1").await;
    assert_eq!(u16::from(student_on_a.closed().await.code), 4009);
    let v = proctor_on_b.recv().await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["connected"].as_bool()),
        (Some(3), Some(true))
    );
    student_on_b
        .send(status("q1", "a1", "s1", "active", json!(3)))
        .await;
    assert_eq!(proctor_on_b.recv().await["seq"], 4);
}

#[actix_rt::test]
async fn a_lost_instance_has_its_students_reported_offline_once() {
    let (apps, hub) = spawn_cluster(3).await;
    let (mut proctor, _) = apps[0].watching("q1").await;
    let _doomed_student = apps[2].student("q1", "a1", "s1").await;
    assert_eq!(proctor.recv().await["data"]["connected"], true);
    hub.lose(&apps[2].instance);
    let v = proctor.recv().await;
    assert_eq!(v["data"]["user_status"], "offline");
    assert_eq!(v["data"]["reason"], "instance_lost");
    assert_eq!(v["seq"], 2);
    // Exactly once: the next frame is the answer to a ping, not a second report.
    proctor.send(json!({"type": "ping"})).await;
    assert_eq!(proctor.recv().await, json!({"type": "pong"}));
}
