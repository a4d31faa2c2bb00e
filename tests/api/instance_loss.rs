//! An instance killed (kill -9) in the middle of an exam under traffic: its students are
//! reported lost, reconnect to the other instances and are active again, and the records of
//! the exam keep every event, including those the dead instance had not yet written.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    rc::Rc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    helpers::*,
    records::{create_database, Proxy},
};

/// How often each student sends a status.
const EVERY: Duration = Duration::from_millis(50);

/// The bound PROTOCOL.md's readers rely on: a dead instance's students are reported offline
/// within 15 s (here with the liveness settings shortened, so the test is short).
const LOST_WITHIN: Duration = Duration::from_secs(15);

/// What one simulated exam page did: the question numbers it sent and those acknowledged.
#[derive(Default)]
struct Sent {
    sent: Vec<u64>,
    acked: Vec<u64>,
}

/// The status a page sends with question `n`: away on odd numbers, so the records also log
/// away and back.
fn status_n(attempt: &str, sub: &str, n: u64) -> String {
    let user_status = if n % 2 == 1 { "away" } else { "active" };
    json!({"type": "message_to_master", "id": n, "message": {
    "action": "lmsQuizMonitoringStudent", "data": {
        "quiz_id": "q1", "quiz_attempt_id": attempt, "student_id": sub,
        "user_status": user_status, "question_number_current": n, "question_total": 1000
    }}})
    .to_string()
}

/// Open a student socket to `host`, its `welcome` read; `None` if refused or dropped.
async fn open(host: &str, attempt: &str, sub: &str) -> Option<Client> {
    let url = format!("ws://{host}/ws?token={}", student_token("q1", attempt, sub));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let mut c = Client { ws };
    match next_json(&mut c).await? {
        v if v["type"] == "welcome" => Some(c),
        _ => None,
    }
}

/// The next text frame, or `None` once the socket is gone (or silent past the wait).
async fn next_json(c: &mut Client) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, c.ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// Send status `n` and wait for its ack; false if the socket died first.
async fn send_acked(c: &mut Client, attempt: &str, sub: &str, n: u64) -> bool {
    if c.ws
        .send(Message::text(status_n(attempt, sub, n)))
        .await
        .is_err()
    {
        return false;
    }
    while let Some(v) = next_json(c).await {
        if v["type"] == "ack" && v["id"] == n {
            return true;
        }
    }
    false
}

/// An exam page: sends a status every [`EVERY`] until `stop`, and on a dropped socket
/// reconnects to `fallback`, at once, or (if `wait_for_loss`) only once the proctor has seen
/// the attempt reported lost, as a page whose retries back off would.
#[allow(clippy::too_many_arguments)]
async fn exam_page(
    home: String,
    fallback: String,
    attempt: String,
    sub: String,
    wait_for_loss: bool,
    lost: Rc<RefCell<HashSet<String>>>,
    stop: Rc<RefCell<bool>>,
    log: Rc<RefCell<Sent>>,
) {
    let mut host = home;
    let mut n = 0;
    'page: while !*stop.borrow() {
        let Some(mut c) = open(&host, &attempt, &sub).await else {
            tokio::time::sleep(EVERY).await;
            continue;
        };
        while !*stop.borrow() {
            n += 1;
            log.borrow_mut().sent.push(n);
            if !send_acked(&mut c, &attempt, &sub, n).await {
                // The instance is gone: find another.
                while wait_for_loss && !lost.borrow().contains(&attempt) && !*stop.borrow() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                host = fallback.clone();
                continue 'page;
            }
            log.borrow_mut().acked.push(n);
            tokio::time::sleep(EVERY).await;
        }
        c.close().await;
    }
}

/// Environment of instance `id` of the cluster.
fn node_env(id: &str, prefix: &str, records: &str) -> Vec<(String, String)> {
    [
        ("INVIGIL_JWT_SECRET", SECRET),
        ("INVIGIL_API_KEY", API_KEY),
        ("INVIGIL_REDIS__URL", "redis://127.0.0.1:6379"),
        ("INVIGIL_REDIS__KEY_PREFIX", prefix),
        ("INVIGIL_SERVER__INSTANCE_ID", id),
        ("INVIGIL_SERVER__WORKERS", "1"),
        ("INVIGIL_REDIS__LIVENESS_INTERVAL_MS", "100"),
        ("INVIGIL_REDIS__LIVENESS_TTL_MS", "1000"),
        ("INVIGIL_RECORDS__URL", records),
        ("INVIGIL_LIMITS__MESSAGES_PER_SECOND", "100"),
        ("INVIGIL_LIMITS__MESSAGE_BURST", "100"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn start_node(dir: &std::path::Path, env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_in(dir, &env)
}

fn question(v: &Value) -> u64 {
    v["data"]["question_number_current"].as_u64().unwrap_or(0)
}

#[actix_rt::test]
async fn a_killed_instance_under_traffic_loses_no_student_and_no_event() {
    let prefix = format!("invigil-test-{:08x}", rand::random::<u32>());
    let db = create_database();
    let direct = format!("postgres://postgres@127.0.0.1:5432/{db}");
    // C reaches the database through a proxy, so the test can hold C's events in its queue.
    let proxy = Proxy::start(5432);
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/{db}", proxy.port);
    let dirs: Vec<_> = (0..3).map(|_| fresh_dir("instance-loss")).collect();
    let envs = [
        node_env("node-a", &prefix, &direct),
        node_env("node-b", &prefix, &direct),
        node_env("node-c", &prefix, &through_proxy),
    ];
    let mut nodes = Vec::new();
    for (dir, env) in dirs.iter().zip(&envs) {
        let node = start_node(dir, env);
        node.wait_ready(200, WAIT).await;
        nodes.push(node);
    }
    let hosts: Vec<String> = nodes.iter().map(|n| n.host()).collect();
    let (mut proctor, _) = nodes[0].watching("q1").await;

    // Students on every instance; of C's, half come back at once, half only after the loss
    // is reported.
    let students = 6 * chaos_scale();
    let (lost, stop) = (
        Rc::new(RefCell::new(HashSet::new())),
        Rc::new(RefCell::new(false)),
    );
    let mut pages = Vec::new();
    let mut on_c = Vec::new();
    let mut waits_for_loss = HashSet::new();
    for i in 0..students {
        let (attempt, sub) = (format!("a{i}"), format!("s{i}"));
        let home = i % 3;
        let late = home == 2 && (i / 3) % 2 == 1;
        if home == 2 {
            on_c.push(attempt.clone());
        }
        if late {
            waits_for_loss.insert(attempt.clone());
        }
        let log = Rc::new(RefCell::new(Sent::default()));
        let page = actix_rt::spawn(exam_page(
            hosts[home].clone(),
            hosts[i % 2].clone(),
            attempt.clone(),
            sub,
            late,
            lost.clone(),
            stop.clone(),
            log.clone(),
        ));
        pages.push((attempt, log, page));
    }

    // Traffic flows: the proctor has seen every student past question 3.
    let mut latest: HashMap<String, Value> = HashMap::new();
    while latest.len() < students || latest.values().any(|v| question(v) < 3) {
        let v = proctor.recv_type("student_status").await;
        let attempt = v["data"]["quiz_attempt_id"].as_str().unwrap().to_string();
        latest.insert(attempt, v);
    }

    // C loses its database and queues its events; then it is killed with them in memory.
    proxy.set(false);
    let deadline = Instant::now() + WAIT;
    while nodes[2].metric("invigil_records_queued").await < 5.0 {
        assert!(
            Instant::now() < deadline,
            "C queues events while its database is away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_before_kill: HashMap<String, u64> = latest
        .iter()
        .map(|(a, v)| (a.clone(), question(v)))
        .collect();
    nodes[2].kill9();
    let killed = Instant::now();

    // Every student of C is active again, on A or B, past the questions shown before the
    // kill; the late ones after being reported lost, within the bound; the others never
    // shown offline, and no student of A or B either.
    let mut back = HashSet::new();
    let mut lost_after = HashMap::new();
    while back.len() < on_c.len() {
        let wait = (LOST_WITHIN + WAIT).saturating_sub(killed.elapsed());
        let text = proctor.recv_text_within(wait).await.unwrap_or_else(|| {
            panic!("C's students are back; back: {back:?}, lost: {lost_after:?}")
        });
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] != "student_status" {
            continue;
        }
        let attempt = v["data"]["quiz_attempt_id"].as_str().unwrap().to_string();
        if v["data"]["user_status"] == "offline" {
            assert!(waits_for_loss.contains(&attempt), "no false offline: {v}");
            assert_eq!(v["data"]["reason"], "instance_lost", "{v}");
            assert!(
                lost_after
                    .insert(attempt.clone(), killed.elapsed())
                    .is_none(),
                "reported lost once: {v}"
            );
            lost.borrow_mut().insert(attempt);
            continue;
        }
        assert_eq!(v["data"]["connected"], true, "{v}");
        let moved = question(&v) > seen_before_kill[&attempt];
        if on_c.contains(&attempt)
            && moved
            && (!waits_for_loss.contains(&attempt) || lost_after.contains_key(&attempt))
        {
            back.insert(attempt);
        }
    }
    assert_eq!(
        lost_after.len(),
        waits_for_loss.len(),
        "every late student was reported lost: {lost_after:?}"
    );
    for (attempt, after) in &lost_after {
        assert!(
            *after < LOST_WITHIN,
            "{attempt} reported lost {after:?} after the kill"
        );
    }

    // A little more traffic, then the pages stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    *stop.borrow_mut() = true;
    let mut sent = HashMap::new();
    for (attempt, log, page) in pages {
        page.await.expect("the page ends");
        let log = log.borrow();
        sent.insert(attempt, (log.sent.clone(), log.acked.clone()));
    }

    // C restarts where it ran: its journal hands the events it never wrote to the database.
    proxy.set(true);
    let c = start_node(&dirs[2], &envs[2]);
    c.wait_ready(200, WAIT).await;

    // The records hold, for every status any instance acknowledged, its question change,
    // exactly once, and nothing that was never sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (attempt, (sent, acked)) in &sent {
        assert!(acked.len() >= 5, "{attempt} kept sending: {acked:?}");
        loop {
            let (code, body) = get(
                &nodes[0].http(&format!("/api/v1/quizzes/q1/events?attempt_id={attempt}")),
                Some(API_KEY),
            )
            .await;
            assert_eq!(code, 200, "{body}");
            let list: Value = serde_json::from_str(&body).unwrap();
            let list = list["events"].as_array().unwrap();
            let questions: Vec<u64> = list
                .iter()
                .filter(|e| e["kind"] == "question_change")
                .map(|e| match &e["detail"]["to"] {
                    Value::String(s) => s.parse().unwrap(),
                    other => other.as_u64().unwrap(),
                })
                .collect();
            let recorded: HashSet<u64> = questions.iter().copied().collect();
            let missing: Vec<u64> = acked
                .iter()
                .filter(|n| !recorded.contains(n))
                .copied()
                .collect();
            if missing.is_empty() {
                assert_eq!(
                    recorded.len(),
                    questions.len(),
                    "{attempt}: each once: {questions:?}"
                );
                assert!(
                    questions.iter().all(|n| sent.contains(n)),
                    "{attempt}: only what was sent: {questions:?}"
                );
                if waits_for_loss.contains(attempt) {
                    assert!(
                        list.iter().any(|e| e["kind"] == "disconnected"
                            && e["detail"]["reason"] == "instance_lost"),
                        "{attempt}: the loss is in the records"
                    );
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{attempt}: acknowledged statuses missing from the records: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        c.metric("invigil_records_written_total").await >= 5.0,
        "the restarted C wrote what the killed one had queued"
    );
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}
