//! The HTTP endpoints: operations, the LMS API, errors.

use serde_json::{json, Value};

use invigil::config::Secret;

use crate::helpers::*;

#[actix_rt::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(get(&app.http("/healthz"), None).await.0, 200);
    assert_eq!(get(&app.http("/readyz"), None).await.0, 200);
    let (_, mut p) = (0, app.proctor(&["q1"]).await);
    let mut s = app.student("q1", "a1", "s1").await;
    s.send(status("q1", "a1", "s1", "active", json!(1))).await;
    s.recv().await;
    s.send(json!({"type": "nope"})).await;
    s.recv().await;
    p.send(json!({"type": "ping"})).await;
    p.recv().await;
    let (code, text) = get(&app.http("/metrics"), None).await;
    assert_eq!(code, 200);
    for line in [
        "invigil_connections{role=\"student\"} 1",
        "invigil_connections{role=\"proctor\"} 1",
        "invigil_messages_in_total{type=\"message_to_master\"} 1",
        "invigil_messages_in_total{type=\"ping\"} 1",
        "invigil_messages_in_total{type=\"invalid\"} 1",
        "invigil_messages_out_total{type=\"welcome\"} 2",
        "invigil_messages_out_total{type=\"ack\"} 1",
        "invigil_errors_total{code=\"invalid_message\"} 1",
        "invigil_routing_latency_seconds_count 1",
        "# TYPE invigil_routing_latency_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[actix_rt::test]
async fn metrics_ask_for_their_token_when_one_is_set() {
    let app = spawn_app_with(|s| s.auth.metrics_token = Secret::new("scrape-me")).await;
    let url = app.http("/metrics");
    assert_eq!(get(&url, None).await.0, 401);
    assert_eq!(get(&url, Some("wrong")).await.0, 401);
    assert_eq!(
        get(&url, Some(API_KEY)).await.0,
        401,
        "the API key is not the token"
    );
    let (code, text) = get(&url, Some("scrape-me")).await;
    assert_eq!(code, 200);
    assert!(text.contains("# TYPE invigil_connections gauge"), "{text}");
    // Health checks stay open for load balancers.
    assert_eq!(get(&app.http("/readyz"), None).await.0, 200);
}

#[actix_rt::test]
async fn the_students_listing_takes_the_api_key_or_a_proctor_token_of_the_quiz() {
    let app = spawn_app().await;
    let mut s = app.student("q1", "a1", "s1").await;
    s.send(status("q1", "a1", "s1", "away", json!(1))).await;
    s.recv().await;
    let url = app.http("/api/v1/quizzes/q1/students");
    for credential in [API_KEY.to_string(), proctor_token(&["q1", "q9"])] {
        let (code, body) = get(&url, Some(&credential)).await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["quiz_id"], "q1");
        assert_eq!(v["students"][0]["quiz_attempt_id"], "a1");
        assert_eq!(v["students"][0]["user_status"], "away");
        assert_eq!(v["students"][0]["seq"], 2);
    }
    let (code, body) = get(&format!("{url}?token={}", proctor_token(&["q1"])), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&url, None).await.0, 401);
    assert_eq!(get(&url, Some("wrong-key")).await.0, 401);
    let (code, body) = get(&url, Some(&proctor_token(&["q2"]))).await;
    assert_eq!(code, 403);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    assert_eq!(
        get(&url, Some(&student_token("q1", "a1", "s1"))).await.0,
        403
    );
}

#[actix_rt::test]
async fn a_message_to_the_quiz_reaches_every_student_of_it() {
    let app = spawn_app().await;
    let mut a1 = app.student("q1", "a1", "s1").await;
    let mut a2 = app.student("q1", "a2", "s2").await;
    let mut other = app.student("q2", "b1", "s3").await;
    let url = app.http("/api/v1/quizzes/q1/messages");
    let (code, body) = post(
        &url,
        Some(API_KEY),
        r#"{"kind":"chat","text":"10 minutes left"}"#,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["delivered_here"], 2);
    for s in [&mut a1, &mut a2] {
        let m = s.recv().await;
        assert_eq!(m["type"], "proctor_message");
        assert_eq!(m["kind"], "chat");
        assert_eq!(m["text"], "10 minutes left");
        assert_eq!(m["from"], "LMS");
    }
    other.send(json!({"type": "ping"})).await;
    assert_eq!(other.recv().await, json!({"type": "pong"}));

    for bad in [
        r#"{"kind":"shout","text":"x"}"#,
        r#"{"kind":"chat","text":""}"#,
        "not json",
    ] {
        let (code, body) = post(&url, Some(API_KEY), bad).await;
        assert_eq!(code, 400, "{bad}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_message");
    }
    assert_eq!(
        post(&url, None, r#"{"kind":"chat","text":"x"}"#).await.0,
        401
    );
}

#[actix_rt::test]
async fn unknown_paths_answer_404_in_json() {
    let app = spawn_app().await;
    let (code, body) = get(&app.http("/nope"), None).await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
}
