//! Several `invigil serve --redis` processes sharing one real Redis behave as one server.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::helpers::*;

const REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix of its own, so tests share the Redis without seeing each other.
fn prefix() -> String {
    format!("invigil-test-{:08x}", rand::random::<u32>())
}

/// Start `n` instances on `redis` under `prefix`, each ready (its bridge up).
async fn cluster(n: usize, redis: &str, prefix: &str, fast_liveness: bool) -> Vec<Server> {
    let mut servers = Vec::new();
    for i in 0..n {
        let id = format!("node-{}", (b'a' + i as u8) as char);
        let mut env = vec![
            ("INVIGIL_JWT_SECRET", SECRET.to_string()),
            ("INVIGIL_API_KEY", API_KEY.to_string()),
            ("INVIGIL_REDIS__URL", redis.to_string()),
            ("INVIGIL_REDIS__KEY_PREFIX", prefix.to_string()),
            ("INVIGIL_SERVER__INSTANCE_ID", id),
            ("INVIGIL_SERVER__WORKERS", "1".to_string()),
        ];
        if fast_liveness {
            env.push(("INVIGIL_REDIS__LIVENESS_INTERVAL_MS", "100".to_string()));
            env.push(("INVIGIL_REDIS__LIVENESS_TTL_MS", "1000".to_string()));
            env.push(("INVIGIL_SERVER__DRAIN_HANDOVER_MS", "1500".to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start(&env);
        server.wait_ready(200, WAIT).await;
        servers.push(server);
    }
    servers
}

/// The next `student_status` of `attempt`, skipping everything else.
async fn status_of(p: &mut Client, attempt: &str) -> Value {
    loop {
        let v = p.recv_type("student_status").await;
        if v["data"]["quiz_attempt_id"] == attempt {
            return v;
        }
    }
}

#[actix_rt::test]
async fn two_instances_behave_as_one_server() {
    let prefix = prefix();
    let nodes = cluster(2, REDIS, &prefix, false).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut proctor_b, _) = b.watching("q1").await;
    let mut student_a = a.student("q1", "a1", "s1").await;
    let v = status_of(&mut proctor_b, "a1").await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["connected"].as_bool()),
        (Some(1), Some(true))
    );

    // A student on A reaches the proctor on B, fields and timestamp_sent untouched.
    student_a
        .send_text(r#"{"type":"message_to_master","id":1,"message":{"action":"lmsQuizMonitoringStudent","data":{"quiz_id":"q1","quiz_attempt_id":"a1","student_id":"s1","user_status":"away","timestamp_sent":1733300000123.50}}}"#)
        .await;
    assert_eq!(student_a.recv().await, json!({"type": "ack", "id": 1}));
    let raw = proctor_b.recv_text().await;
    assert!(
        raw.contains(r#""timestamp_sent":1733300000123.50"#),
        "{raw}"
    );
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["away_count"].as_u64()),
        (Some(2), Some(1))
    );

    // A proctor on B messages the student on A; the student answers.
    proctor_b
        .send(
            json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "a1",
            "kind": "warning", "text": "eyes front", "id": 2}),
        )
        .await;
    assert_eq!(proctor_b.recv().await, json!({"type": "ack", "id": 2}));
    let m = student_a.recv().await;
    assert_eq!(
        (m["kind"].as_str(), m["text"].as_str()),
        (Some("warning"), Some("eyes front"))
    );
    student_a
        .send(json!({"type": "message_to_proctor", "text": "sorry"}))
        .await;
    assert_eq!(
        proctor_b.recv_type("student_message").await["text"],
        "sorry"
    );
    proctor_b
        .send(
            json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "ghost",
            "kind": "chat", "text": "?", "id": 3}),
        )
        .await;
    assert_eq!(proctor_b.recv().await["code"], "not_found");

    // A snapshot on A holds the attempt, as one on B does.
    let (_, snap) = a.watching("q1").await;
    assert_eq!(snap["students"][0]["seq"], 2, "{snap}");

    // The student reconnects to B: A's socket is replaced, seq carries on, never offline.
    let mut student_b = b.student("q1", "a1", "s1").await;
    assert_eq!(u16::from(student_a.closed().await.code), 4009);
    let v = status_of(&mut proctor_b, "a1").await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["connected"].as_bool()),
        (Some(3), Some(true))
    );
    student_b.send(json!({"type": "ping", "id": 4})).await;
    assert_eq!(student_b.recv().await, json!({"type": "pong"}));

    // The LMS asks A for the quiz and messages the quiz through A: B's student gets it.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = get(&a.http("/api/v1/quizzes/q1/students"), Some(API_KEY)).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["students"][0]["seq"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's listing reaches seq 3: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = post(
        &a.http("/api/v1/quizzes/q1/messages"),
        Some(API_KEY),
        r#"{"kind":"chat","text":"5 minutes left"}"#,
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(
        student_b.recv_type("proctor_message").await["text"],
        "5 minutes left"
    );
}

#[actix_rt::test]
async fn only_instances_holding_a_proctor_of_the_quiz_receive_its_traffic() {
    let prefix = prefix();
    let nodes = cluster(3, REDIS, &prefix, false).await;
    let (mut proctor_a, _) = nodes[0].watching("q1").await;
    let mut students = Vec::new();
    for (i, node) in nodes[1..].iter().enumerate() {
        students.push(node.student("q1", &format!("a{i}"), &format!("s{i}")).await);
    }
    const UPDATES: usize = 5;
    for round in 0..UPDATES {
        for (i, s) in students.iter_mut().enumerate() {
            let st = if round % 2 == 0 { "away" } else { "active" };
            s.send(status(
                "q1",
                &format!("a{i}"),
                &format!("s{i}"),
                st,
                json!(round),
            ))
            .await;
            s.recv().await;
        }
    }
    // The last status of each student reached the proctor on A (earlier ones may have been
    // replaced by it while waiting for the socket: the slow-consumer policy).
    let expected = students.len() * (UPDATES + 1);
    let mut last_seq = std::collections::HashMap::new();
    while last_seq
        .values()
        .filter(|s| **s == (UPDATES + 1) as u64)
        .count()
        < students.len()
    {
        let v = proctor_a.recv_type("student_status").await;
        let attempt = v["data"]["quiz_attempt_id"].as_str().unwrap().to_string();
        last_seq.insert(attempt, v["seq"].as_u64().unwrap());
    }
    // A received every one of those statuses from Redis; B and C, holding no proctor of q1,
    // received none.
    let quiz_traffic = "invigil_bridge_received_total{kind=\"quiz\"}";
    assert_eq!(nodes[0].metric(quiz_traffic).await, expected as f64);
    assert_eq!(nodes[1].metric(quiz_traffic).await, 0.0);
    assert_eq!(nodes[2].metric(quiz_traffic).await, 0.0);
}

#[actix_rt::test]
async fn a_killed_instance_has_its_students_reported_lost_once_within_15_seconds() {
    let prefix = prefix();
    // Default liveness settings: the bound holds as deployed.
    let mut nodes = cluster(3, REDIS, &prefix, false).await;
    let (mut proctor, _) = nodes[0].watching("q1").await;
    let _lost = nodes[2].student("q1", "lost", "s1").await;
    let _moving = nodes[2].student("q1", "moving", "s2").await;
    status_of(&mut proctor, "lost").await;
    status_of(&mut proctor, "moving").await;
    nodes[2].kill9();
    let killed = Instant::now();
    // One student reconnects to B at once: it must not be reported offline.
    let _moved = nodes[1].student("q1", "moving", "s2").await;
    let v = status_of(&mut proctor, "moving").await;
    assert_eq!(
        (v["seq"].as_u64(), v["data"]["connected"].as_bool()),
        (Some(2), Some(true))
    );
    let deadline = killed + Duration::from_secs(15);
    let v = loop {
        let text = proctor
            .recv_text_within(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("the loss is reported within 15 s");
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] != "student_status" {
            continue;
        }
        assert_ne!(
            v["data"]["quiz_attempt_id"], "moving",
            "a moved student is not lost: {v}"
        );
        break v;
    };
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(v["data"]["quiz_attempt_id"], "lost");
    assert_eq!(v["data"]["user_status"], "offline");
    assert_eq!(v["data"]["reason"], "instance_lost");
    assert_eq!(v["seq"], 2);
    // Exactly once: two more liveness rounds pass, and the next frame answers a ping.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proctor.send(json!({"type": "ping"})).await;
    assert_eq!(proctor.recv().await, json!({"type": "pong"}));
}

/// A Redis server of the test's own, on a port of its own, so restarting it disturbs no one.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[actix_rt::test]
async fn a_redis_restart_pauses_cross_instance_traffic_and_it_resumes_within_5_seconds() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = OwnRedis::start(port);
    let nodes = cluster(2, &redis.url(), &prefix(), true).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut proctor_a, _) = a.watching("q1").await;
    let mut remote = b.student("q1", "remote", "s1").await;
    status_of(&mut proctor_a, "remote").await;

    redis.kill();
    a.wait_ready(503, WAIT).await;
    b.wait_ready(503, WAIT).await;
    assert_eq!(a.metric("invigil_bridge_up").await, 0.0);
    // Routing between local sockets goes on.
    let mut local = a.student("q1", "local", "s2").await;
    status_of(&mut proctor_a, "local").await;
    local
        .send(status("q1", "local", "s2", "away", json!(1)))
        .await;
    assert_eq!(
        status_of(&mut proctor_a, "local").await["data"]["user_status"],
        "away"
    );

    let mut redis = OwnRedis::start(port);
    let back = Instant::now();
    a.wait_ready(200, Duration::from_secs(5)).await;
    b.wait_ready(200, Duration::from_secs(5)).await;
    // Cross-instance delivery resumes: keep sending until one arrives, within 5 s.
    let mut round = 0;
    loop {
        round += 1;
        remote
            .send(status("q1", "remote", "s1", "away", json!(round)))
            .await;
        remote.recv().await;
        let next = tokio::time::timeout(
            Duration::from_millis(200),
            status_of(&mut proctor_a, "remote"),
        );
        if next.await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "delivery resumed within 5 s"
        );
    }
    // The directory was restored: a message from A finds the student on B.
    proctor_a
        .send(
            json!({"type": "message_to_student", "quiz_id": "q1", "quiz_attempt_id": "remote",
            "kind": "chat", "text": "back?", "id": 9}),
        )
        .await;
    loop {
        let v = proctor_a.recv().await;
        if v["type"] == "ack" {
            assert_eq!(v["id"], 9);
            break;
        }
        assert_ne!(v["type"], "error", "{v}");
    }
    assert_eq!(remote.recv_type("proctor_message").await["text"], "back?");
    assert!(a.metric("invigil_bridge_restores_total").await >= 2.0);
    redis.kill();
}

#[actix_rt::test]
async fn a_tls_redis_with_a_password_works() {
    let dir = std::env::temp_dir().join(format!("invigil-tls-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    // A private CA and a certificate for 127.0.0.1 signed by it.
    make_certificate(&dir);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args([
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server listens with TLS");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ca = dir.join("ca.crt").display().to_string();
    let start = |id: &str, password: &str| {
        Server::start(&[
            ("INVIGIL_JWT_SECRET", SECRET),
            (
                "INVIGIL_REDIS__URL",
                &format!("rediss://:{password}@127.0.0.1:{port}"),
            ),
            ("INVIGIL_REDIS__TLS_CA_FILE", &ca),
            ("INVIGIL_REDIS__KEY_PREFIX", "tls"),
            ("INVIGIL_SERVER__INSTANCE_ID", id),
        ])
    };
    let wrong = start("node-x", "wrong");
    let (a, b) = (start("node-a", "s3cret"), start("node-b", "s3cret"));
    a.wait_ready(200, WAIT).await;
    b.wait_ready(200, WAIT).await;
    let (mut proctor, _) = a.watching("q1").await;
    let _student = b.student("q1", "a1", "s1").await;
    assert_eq!(
        status_of(&mut proctor, "a1").await["data"]["connected"],
        true
    );
    // A wrong password leaves the instance up but not ready.
    assert_eq!(get(&wrong.http("/readyz"), None).await.0, 503);
    assert_eq!(get(&wrong.http("/healthz"), None).await.0, 200);
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_rolling_restart_shows_no_false_offline_and_loses_no_status() {
    let prefix = prefix();
    let mut nodes = cluster(3, REDIS, &prefix, true).await;
    let (mut proctor, _) = nodes[0].watching("q1").await;
    let moving = 4 * chaos_scale();
    let mut students = Vec::new();
    for i in 0..moving {
        students.push(
            nodes[1]
                .student("q1", &format!("a{i}"), &format!("s{i}"))
                .await,
        );
    }
    // One more student on B who will not come back.
    let mut leaver = nodes[1].student("q1", "gone", "s9").await;
    for _ in 0..=moving {
        proctor.recv_type("student_status").await;
    }

    // B drains: every socket gets 1012, and the clients reconnect to C.
    nodes[1].sigterm();
    for (i, s) in students.iter_mut().enumerate() {
        assert_eq!(u16::from(s.closed().await.code), 1012);
        let mut again = nodes[2]
            .student("q1", &format!("a{i}"), &format!("s{i}"))
            .await;
        again
            .send(status(
                "q1",
                &format!("a{i}"),
                &format!("s{i}"),
                "away",
                json!(i),
            ))
            .await;
        assert_eq!(again.recv().await["type"], "ack");
        *s = again;
    }
    assert_eq!(u16::from(leaver.closed().await.code), 1012);
    assert_eq!(nodes[1].child.wait().unwrap().code(), Some(0));
    let exited = Instant::now();

    // Every moving student ends away on C with its seq carried on (connect 1, reconnect 2,
    // away 3), none ever shown offline; the one who left is reported offline, once, soon
    // after B is gone.
    let mut latest = std::collections::HashMap::new();
    let mut gone_reported = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while latest.values().filter(|seq| **seq == 3).count() < moving || gone_reported.is_none() {
        let text = proctor
            .recv_text_within(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("the moves and the loss are reported");
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] != "student_status" {
            continue;
        }
        let attempt = v["data"]["quiz_attempt_id"].as_str().unwrap().to_string();
        if attempt == "gone" {
            assert!(gone_reported.is_none(), "reported once: {v}");
            assert_eq!(v["data"]["reason"], "instance_lost");
            gone_reported = Some(exited.elapsed());
            continue;
        }
        assert_ne!(v["data"]["user_status"], "offline", "no false offline: {v}");
        latest.insert(attempt, v["seq"].as_u64().unwrap());
    }
    let after = gone_reported.unwrap_or_default();
    assert!(
        after < Duration::from_secs(3),
        "the leaver is reported {after:?} after B exits"
    );
}
