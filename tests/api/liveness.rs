//! Heartbeats and disconnection: pings, the silence timeout, and the moment a socket drops.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[actix_rt::test]
async fn the_server_sends_ping_frames() {
    let app = spawn_app_with(|s| {
        s.heartbeat.interval_ms = 50;
        s.heartbeat.timeout_ms = 5000;
    })
    .await;
    let mut s = app.student("q1", "a1", "s1").await;
    loop {
        let msg = tokio::time::timeout(WAIT, s.ws.next()).await.unwrap();
        if let Some(Ok(Message::Ping(_))) = msg {
            break;
        }
    }
}

#[actix_rt::test]
async fn a_silent_student_is_closed_and_reported_offline_with_reason_timeout() {
    let app = spawn_app_with(|s| {
        s.heartbeat.interval_ms = 100;
        s.heartbeat.timeout_ms = 400;
    })
    .await;
    let (mut p, _) = app.watching("q1").await;
    // The student reads its welcome and then neither reads nor writes: it answers no ping.
    let _silent = app.student("q1", "a1", "s1").await;
    assert_eq!(p.recv().await["data"]["connected"], true);
    let started = Instant::now();
    let v = p.recv().await;
    assert_eq!(v["data"]["user_status"], "offline", "{v}");
    assert_eq!(v["data"]["connected"], false);
    assert_eq!(v["data"]["reason"], "timeout");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The proctor, which answers pings, stayed connected all along.
    p.send(serde_json::json!({"type": "ping"})).await;
    assert_eq!(p.recv().await["type"], "pong");
}

#[actix_rt::test]
async fn a_closed_student_socket_is_reported_offline_within_a_second() {
    let app = spawn_app().await;
    let (mut p, _) = app.watching("q1").await;
    for (attempt, polite) in [("a1", true), ("a2", false)] {
        let s = app.student("q1", attempt, "s1").await;
        assert_eq!(p.recv().await["data"]["connected"], true);
        let started = Instant::now();
        if polite {
            s.close().await; // a close frame
        } else {
            drop(s); // the TCP connection just ends
        }
        let v = p.recv().await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(v["data"]["quiz_attempt_id"], attempt);
        assert_eq!(v["data"]["user_status"], "offline");
        assert_eq!(v["data"]["connected"], false);
        assert_eq!(v["data"]["reason"], "disconnected");
    }
}
