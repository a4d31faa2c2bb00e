//! Durable records: what the school reads after the exam, across restarts and outages.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

const SERVER_ENV: [(&str, &str); 2] =
    [("INVIGIL_JWT_SECRET", SECRET), ("INVIGIL_API_KEY", API_KEY)];

async fn events(server: &Server, query: &str) -> Vec<Value> {
    let (code, body) = get(
        &server.http(&format!("/api/v1/quizzes/q1/events{query}")),
        Some(API_KEY),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["events"].as_array().unwrap().clone()
}

/// Wait until `check` holds for the events of q1.
async fn wait_events(
    server: &Server,
    check: impl Fn(&[Value]) -> bool,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let list = events(server, "").await;
        if check(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "events never matched: {list:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kinds(list: &[Value], attempt: &str) -> Vec<String> {
    list.iter()
        .filter(|e| e["attempt_id"] == attempt)
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[actix_rt::test]
async fn the_embedded_default_keeps_records_and_snapshots_across_a_restart() {
    let dir = fresh_dir("records");
    let first = Server::start_in(&dir, &SERVER_ENV);
    let mut student = first.student("q1", "a1", "s1").await;
    for (st, q) in [("active", 3), ("away", 4), ("active", 4)] {
        let mut m = status("q1", "a1", "s1", st, json!(q));
        m["message"]["data"]["question_number_current"] = json!(q);
        student.send(m).await;
        student.recv().await;
    }
    student
        .send(json!({"type": "message_to_proctor", "text": "is the clock right?", "id": 1}))
        .await;
    student.recv().await;
    // A drain closes the socket and flushes the records before the process exits.
    let mut first = first;
    first.sigterm();
    assert_eq!(u16::from(student.closed().await.code), 1012);
    assert_eq!(first.child.wait().unwrap().code(), Some(0));

    let second = Server::start_in(&dir, &SERVER_ENV);
    let (_, snapshot) = second.watching("q1").await;
    let a1 = &snapshot["students"][0];
    assert_eq!(a1["quiz_attempt_id"], "a1", "{snapshot}");
    assert_eq!(a1["user_status"], "offline");
    assert_eq!(a1["reason"], "disconnected");
    assert_eq!(a1["question_number_current"], 4);
    assert_eq!(a1["away_count"], 1);
    assert_eq!(a1["seq"], 5);
    // Reconnecting after the restart carries on from there.
    let _back = second.student("q1", "a1", "s1").await;
    let (_, snapshot) = second.watching("q1").await;
    assert_eq!(snapshot["students"][0]["seq"], 6);

    let list = events(&second, "?attempt_id=a1").await;
    assert_eq!(
        kinds(&list, "a1")[..8],
        [
            "connected",
            "status_change",
            "question_change",
            "away",
            "question_change",
            "back",
            "student_message",
            "disconnected"
        ]
    );
    assert!(list
        .iter()
        .all(|e| e["instance_id"].as_str().is_some() && e["server_time"].as_u64().is_some()));
    let (code, csv) = get(
        &second.http("/api/v1/quizzes/q1/events?format=csv&attempt_id=a1"),
        Some(&proctor_token(&["q1"])),
    )
    .await;
    assert_eq!(code, 200);
    assert!(csv.starts_with(
        "event_id,server_time,quiz_id,attempt_id,student_id,kind,detail,instance_id\r\n"
    ));
    assert!(csv.contains(",away,"), "{csv}");
    let (code, body) = get(&second.http("/api/v1/quizzes/q1/report"), Some(API_KEY)).await;
    assert_eq!(code, 200);
    let report: Value = serde_json::from_str(&body).unwrap();
    let row = &report["attempts"][0];
    assert_eq!(
        (row["attempt_id"].as_str(), row["student_id"].as_str()),
        (Some("a1"), Some("s1"))
    );
    assert_eq!(row["away_count"], 1);
    assert_eq!(row["disconnect_count"], 1);
    assert!(row["time_away_ms"].as_i64().is_some());
    assert_eq!(
        get(
            &second.http("/api/v1/quizzes/q1/report"),
            Some(&proctor_token(&["q2"]))
        )
        .await
        .0,
        403
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A TCP proxy to PostgreSQL that a test can cut and restore, as a network outage would.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
}

impl Proxy {
    /// The proxy runs on a thread of its own, so it serves while the test thread blocks.
    pub fn start(target: u16) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let gate = up.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                while let Ok((mut client, _)) = listener.accept().await {
                    if !gate.load(Ordering::SeqCst) {
                        continue; // refused: dropped at once
                    }
                    let gate = gate.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                            return;
                        };
                        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                        tokio::pin!(copy);
                        // Cut the connection when the gate closes.
                        loop {
                            tokio::select! {
                                _ = &mut copy => return,
                                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                                    if !gate.load(Ordering::SeqCst) {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            });
        });
        Proxy { port, up }
    }

    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// A new empty PostgreSQL database of the test's own.
pub fn create_database() -> String {
    let name = format!("invigil_test_{:08x}", rand::random::<u32>());
    succeed(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        &format!("CREATE DATABASE {name}"),
    ]));
    name
}

#[actix_rt::test]
async fn postgres_going_away_under_traffic_loses_no_event_and_duplicates_none() {
    let db = create_database();
    let proxy = Proxy::start(5432);
    let url = format!("postgres://postgres@127.0.0.1:{}/{db}", proxy.port);
    let mut env = SERVER_ENV.to_vec();
    env.push(("INVIGIL_RECORDS__URL", &url));
    env.push(("INVIGIL_RECORDS__QUEUE_SIZE", "10"));
    env.push(("INVIGIL_RECORDS__BATCH_SIZE", "4"));
    env.push(("INVIGIL_LIMITS__MESSAGES_PER_SECOND", "1000"));
    env.push(("INVIGIL_LIMITS__MESSAGE_BURST", "1000"));
    let server = Server::start(&env);
    let (mut proctor, _) = server.watching("q1").await;
    let mut student = server.student("q1", "a1", "s1").await;
    wait_events(
        &server,
        |l| kinds(l, "a1").contains(&"connected".to_string()),
        WAIT,
    )
    .await;

    // The database goes away; the exam goes on: 40 away/back transitions, 40 events.
    // The outage lasts as long as the chaos script asks (INVIGIL_CHAOS_OUTAGE_SECS; in the
    // test suite, as long as the burst takes), with a transition every 50 ms throughout.
    proxy.set(false);
    let outage = chaos_outage();
    let cut = Instant::now();
    let mut toggles = 0;
    while toggles < 40 * chaos_scale() || cut.elapsed() < outage {
        let st = if toggles % 2 == 0 { "away" } else { "active" };
        student
            .send(status("q1", "a1", "s1", st, json!(toggles)))
            .await;
        assert_eq!(student.recv().await["type"], "ack");
        toggles += 1;
        if !outage.is_zero() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if toggles % 2 == 1 {
        // End on "active", as the checks below expect.
        student
            .send(status("q1", "a1", "s1", "active", json!(toggles)))
            .await;
        assert_eq!(student.recv().await["type"], "ack");
        toggles += 1;
    }
    // Routing is unaffected: the proctor gets to the last status (seq 1 was the connect).
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the proctor gets the last status"
        );
        let v = proctor.recv_type("student_status").await;
        if v["seq"] == 1 + toggles as u64 {
            assert_eq!(v["data"]["user_status"], "active");
            break;
        }
    }
    assert!(
        server.metric("invigil_records_spooled_total").await > 0.0,
        "past the queue's bound, events spool"
    );
    let deadline = Instant::now() + WAIT;
    while server.metric("invigil_record_write_failures_total").await == 0.0 {
        assert!(Instant::now() < deadline, "the writer notices the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // It comes back: every event arrives, exactly once, in order.
    proxy.set(true);
    let list = wait_events(
        &server,
        |l| {
            kinds(l, "a1")
                .iter()
                .filter(|k| *k == "away" || *k == "back")
                .count()
                >= toggles
        },
        Duration::from_secs(20),
    )
    .await;
    let transitions: Vec<String> = kinds(&list, "a1")
        .into_iter()
        .filter(|k| k == "away" || k == "back")
        .collect();
    assert_eq!(transitions.len(), toggles, "each once");
    assert!(
        transitions
            .iter()
            .enumerate()
            .all(|(i, k)| k == if i % 2 == 0 { "away" } else { "back" }),
        "in order: {transitions:?}"
    );
    let mut ids: Vec<&str> = list
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), list.len(), "no duplicate ids");
    let (_, body) = get(&server.http("/api/v1/quizzes/q1/report"), Some(API_KEY)).await;
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["attempts"][0]["away_count"], (toggles / 2) as u64);
    assert_eq!(server.metric("invigil_records_spool").await, 0.0);
}

#[actix_rt::test]
async fn progress_only_statuses_are_coalesced_per_interval() {
    let mut env = SERVER_ENV.to_vec();
    env.push(("INVIGIL_RECORDS__STATUS_INTERVAL_MS", "1000"));
    env.push(("INVIGIL_LIMITS__MESSAGES_PER_SECOND", "100"));
    let server = Server::start(&env);
    let mut student = server.student("q1", "a1", "s1").await;
    // 3 s of one progress-only update every 100 ms: 30 statuses, one attempt.
    report_progress(&mut student, 30).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let writes = server.metric("invigil_record_statuses_written_total").await;
    // The connect and the first report change user_status (written at once); then at most one
    // write per second of progress: about 5 in all, against 31 statuses.
    assert!((3.0..=7.0).contains(&writes), "status writes {writes}");
}
