//! Authentication at the upgrade and the `welcome`, `ack`, `pong` every client gets.

use invigil::{
    auth::{mint, Claims, Role},
    config::Secret,
    protocol::ids::QuizId,
};
use serde_json::json;

use crate::helpers::*;

#[actix_rt::test]
async fn tokens_that_do_not_verify_get_401_before_the_upgrade() {
    let app = spawn_app().await;
    assert_eq!(app.try_connect("", None).await.err(), Some(401));
    assert_eq!(
        app.try_connect("?token=garbage", None).await.err(),
        Some(401)
    );
    let foreign = mint(
        &Secret::new("another-secret"),
        &Claims {
            sub: "p".into(),
            role: Role::Proctor,
            exp: invigil::now_ms() / 1000 + 60,
            quiz_id: None,
            attempt_id: None,
            name: None,
            quizzes: vec![QuizId::new("q1")],
        },
    )
    .unwrap();
    assert_eq!(
        app.try_connect(&format!("?token={foreign}"), None)
            .await
            .err(),
        Some(401)
    );
    let expired = mint(
        &Secret::new(SECRET),
        &Claims {
            sub: "p".into(),
            role: Role::Proctor,
            exp: 1_600_000_000,
            quiz_id: None,
            attempt_id: None,
            name: None,
            quizzes: vec![QuizId::new("q1")],
        },
    )
    .unwrap();
    assert_eq!(
        app.try_connect(&format!("?token={expired}"), None)
            .await
            .err(),
        Some(401)
    );
    let (_, metrics) = get(&app.http("/metrics"), None).await;
    assert!(
        metrics.contains("invigil_handshakes_refused_total{reason=\"auth\"} 4"),
        "{metrics}"
    );
}

#[actix_rt::test]
async fn a_bearer_header_works_like_the_query() {
    let app = spawn_app().await;
    let mut c = app
        .try_connect("", Some(&proctor_token(&["q1"])))
        .await
        .expect("upgrade with a header");
    assert_eq!(c.recv().await["type"], "welcome");
}

#[actix_rt::test]
async fn welcome_comes_first_with_the_connection_and_instance() {
    let app = spawn_app().await;
    for (token, role) in [
        (student_token("q1", "a1", "s1"), "student"),
        (proctor_token(&["q1"]), "proctor"),
    ] {
        let mut c = app.connect(&token).await;
        let welcome = c.recv().await;
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["role"], role);
        assert_eq!(welcome["instance_id"], app.instance.as_str());
        assert_eq!(welcome["heartbeat_ms"], 15000);
        assert!(welcome["connection_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }
}

#[actix_rt::test]
async fn ids_are_acked_verbatim_and_pings_get_pongs() {
    let app = spawn_app().await;
    let mut s = app.student("q1", "a1", "s1").await;
    s.send(status("q1", "a1", "s1", "active", json!(17))).await;
    assert_eq!(s.recv().await, json!({"type": "ack", "id": 17}));
    s.send(status("q1", "a1", "s1", "active", json!("x-1")))
        .await;
    assert_eq!(s.recv().await, json!({"type": "ack", "id": "x-1"}));
    s.send(json!({"type": "ping"})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}));
    // A message without an id gets no ack: the next frame is the pong of the next ping.
    s.send(status("q1", "a1", "s1", "away", serde_json::Value::Null))
        .await;
    s.send(json!({"type": "ping", "id": 5})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}));
    assert_eq!(s.recv().await, json!({"type": "ack", "id": 5}));
}
