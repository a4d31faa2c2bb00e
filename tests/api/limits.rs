//! Limits with clear answers: bad input, oversized frames, floods and slow consumers.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[actix_rt::test]
async fn invalid_messages_get_an_error_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let mut s = app.student("q1", "a1", "s1").await;
    for frame in [
        "{not json",
        "42",
        r#"{"type":"teleport","id":3}"#,
        r#"{"no_type":true}"#,
        r#"{"type":"message_to_master","id":4,"message":{"action":"lmsQuizMonitoringStudent","data":{"user_status":"sleeping"}}}"#,
    ] {
        s.send_text(frame).await;
        let err = s.recv().await;
        assert_eq!(err["type"], "error", "{frame}");
        assert_eq!(err["code"], "invalid_message", "{frame}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    s.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(s.recv().await["code"], "invalid_message");
    // Still open and served.
    s.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}));
}

#[actix_rt::test]
async fn repeated_invalid_messages_close_with_4008() {
    let app = spawn_app_with(|s| s.limits.max_strikes = 3).await;
    let mut s = app.proctor(&["q1"]).await;
    for _ in 0..4 {
        s.send_text("nonsense").await;
    }
    assert_eq!(u16::from(s.closed().await.code), 4008);
}

#[actix_rt::test]
async fn a_frame_over_the_limit_closes_with_1009_and_one_under_it_is_served() {
    let app = spawn_app().await;
    let mut s = app.student("q1", "a1", "s1").await;
    let mut big = status("q1", "a1", "s1", "active", json!(1));
    big["message"]["data"]["notes"] = Value::String("x".repeat(60 * 1024));
    s.send(big).await;
    assert_eq!(s.recv().await, json!({"type": "ack", "id": 1}));
    s.send_text(&"y".repeat(65 * 1024)).await;
    assert_eq!(u16::from(s.closed().await.code), 1009);
}

#[actix_rt::test]
async fn a_flood_is_rate_limited_then_closed_with_4008() {
    let app = spawn_app().await;
    let mut s = app.student("q1", "a1", "s1").await;
    for i in 0..40 {
        s.send(json!({"type": "ping", "id": i})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    let close = loop {
        match tokio::time::timeout(WAIT, s.ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(v["code"], "rate_limited");
                        assert!(v["id"].as_i64().is_some(), "the refused id is named");
                        limited += 1;
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => {}
            other => panic!("unexpected end: {other:?}"),
        }
    };
    // The burst of 20 is served (a token or two may refill while the flood arrives).
    assert!((20..=22).contains(&pongs), "pongs {pongs}");
    assert!(limited >= 10, "rate_limited errors {limited}");
    assert_eq!(close, 4008);
}

#[actix_rt::test]
async fn a_sustained_ten_per_second_is_never_limited() {
    let app = spawn_app().await;
    let mut s = app.student("q1", "a1", "s1").await;
    // 40 messages at 10/s after using up half the burst: all served.
    for i in 0..10 {
        s.send(json!({"type": "ping", "id": i})).await;
    }
    let start = Instant::now();
    for i in 0..30u64 {
        tokio::time::sleep_until((start + Duration::from_millis(100 * i)).into()).await;
        s.send(json!({"type": "ping", "id": 100 + i})).await;
    }
    for _ in 0..80 {
        let v = s.recv().await;
        assert_ne!(v["type"], "error", "{v}");
    }
}

#[actix_rt::test]
async fn a_slow_proctor_is_closed_without_slowing_the_others() {
    a_slow_proctor_is_closed(|s| s.limits.outbox_frames = 64).await;
}

#[actix_rt::test]
async fn a_slow_proctor_is_closed_past_its_outbox_bytes() {
    // Frames are many to spare (4,096); the bytes (64 chat lines of 4 KB) are the bound.
    a_slow_proctor_is_closed(|s| s.limits.outbox_bytes = 64 * 4096).await;
}

/// A proctor that stops reading while a student floods the quiz with chat lines is closed
/// with 1013 by the outbox limit that `tweak` sets; a proctor that reads gets every line.
async fn a_slow_proctor_is_closed(tweak: impl FnOnce(&mut invigil::config::Settings)) {
    let app = spawn_app_with(|s| {
        s.limits.messages_per_second = 1e6;
        s.limits.message_burst = 1e6;
        tweak(s);
    })
    .await;
    let (mut slow, _) = app.watching("q1").await;
    // The reading proctor runs on a thread of its own, so it reads while the flood is sent.
    const N: usize = 3000;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let fast_app = app.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (mut fast, _) = fast_app.watching("q1").await;
            ready_tx.send(()).unwrap();
            let mut got = 0;
            while got < N {
                if fast
                    .recv_text()
                    .await
                    .contains(r#""type":"student_message""#)
                {
                    got += 1;
                }
            }
            done_tx.send(got).unwrap();
        })
    });
    // Awaited, not blocked on: the server runs on this thread.
    tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("the reading proctor subscribed in time")
        .unwrap();
    let mut student = app.student("q1", "a1", "s1").await;
    let text = "z".repeat(4000);
    for _ in 0..N {
        student
            .send(json!({"type": "message_to_proctor", "text": text}))
            .await;
    }
    let got = tokio::time::timeout(WAIT, done_rx)
        .await
        .expect("the reader finished");
    assert_eq!(got.unwrap(), N, "the reading proctor got every message");
    let (_, metrics) = get(&app.http("/metrics"), None).await;
    assert!(
        metrics.contains("invigil_closes_total{code=\"1013\"} 1"),
        "{metrics}"
    );
    // The slow socket ends: with 1013 if the close frame got through its backlog in time.
    loop {
        match tokio::time::timeout(WAIT, slow.ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1013);
                break;
            }
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        }
    }
}

#[actix_rt::test]
async fn an_instance_refuses_sockets_past_its_capacity_with_503() {
    let app = spawn_app_with(|s| s.limits.max_connections = 2).await;
    let _a = app.student("q1", "a1", "s1").await;
    let _b = app.student("q1", "a2", "s2").await;
    let token = format!("?token={}", student_token("q1", "a3", "s3"));
    assert_eq!(app.try_connect(&token, None).await.err(), Some(503));
    let (_, metrics) = get(&app.http("/metrics"), None).await;
    assert!(
        metrics.contains("invigil_handshakes_refused_total{reason=\"capacity\"} 1"),
        "{metrics}"
    );
}

#[actix_rt::test]
async fn one_address_may_hold_only_so_many_sockets() {
    let app = spawn_app_with(|s| s.limits.max_connections_per_ip = 2).await;
    let a = app.student("q1", "a1", "s1").await;
    let _b = app.student("q1", "a2", "s2").await;
    let token = format!("?token={}", student_token("q1", "a3", "s3"));
    assert_eq!(app.try_connect(&token, None).await.err(), Some(429));
    // A socket that closes gives its place back.
    a.close().await;
    let deadline = Instant::now() + WAIT;
    while app.try_connect(&token, None).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the closed socket's place is given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let app = spawn_app_with(|s| {
        s.limits.max_connections_per_ip = 1;
        s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let token = |a: &str| format!("?token={}", student_token("q1", a, "s1"));
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    let _one = app
        .try_connect_with(&token("a1"), &from("203.0.113.7"))
        .await
        .unwrap();
    let _two = app
        .try_connect_with(&token("a2"), &from("198.51.100.9"))
        .await
        .unwrap();
    assert_eq!(
        app.try_connect_with(&token("a3"), &from("203.0.113.7"))
            .await
            .err(),
        Some(429)
    );
}

#[actix_rt::test]
async fn a_storm_of_handshakes_is_refused_with_429() {
    let app = spawn_app_with(|s| s.limits.handshakes_per_second = 3.0).await;
    let mut refused = 0;
    let mut open = Vec::new();
    for i in 0..6 {
        match app
            .try_connect(
                &format!("?token={}", student_token("q1", &format!("a{i}"), "s")),
                None,
            )
            .await
        {
            Ok(c) => open.push(c),
            Err(code) => {
                assert_eq!(code, 429);
                refused += 1;
            }
        }
    }
    assert!(
        (2..=3).contains(&refused),
        "refused {refused} of 6 at 3 per second"
    );
    let (_, metrics) = get(&app.http("/metrics"), None).await;
    assert!(metrics.contains(&format!(
        "invigil_handshakes_refused_total{{reason=\"rate\"}} {refused}"
    )));
}

#[actix_rt::test]
async fn only_allowed_browser_origins_may_connect_or_call_the_api() {
    let app =
        spawn_app_with(|s| s.server.allowed_origins = vec!["https://lms.example.edu".into()]).await;
    let token = format!("?token={}", proctor_token(&["q1"]));
    assert_eq!(
        app.try_connect_with(&token, &[("Origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert!(app
        .try_connect_with(&token, &[("Origin", "https://lms.example.edu")])
        .await
        .is_ok());
    // Not a browser: no Origin header.
    assert!(app.try_connect(&token, None).await.is_ok());
    let resp = awc::Client::default()
        .get(app.http("/api/v1/quizzes/q1/students"))
        .insert_header(("Authorization", format!("Bearer {API_KEY}")))
        .insert_header(("Origin", "https://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}
