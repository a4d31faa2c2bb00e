//! The latest statuses in DynamoDB (a DynamoDB-compatible endpoint on 127.0.0.1:5005 that
//! the test script starts): coalesced writes, and snapshots after a whole-cluster restart.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{helpers::*, records::Proxy};

const ENDPOINT: &str = "http://127.0.0.1:5005";

fn env(table: &str, prefix: &str, id: &str) -> Vec<(String, String)> {
    [
        ("INVIGIL_JWT_SECRET", SECRET),
        ("INVIGIL_API_KEY", API_KEY),
        ("INVIGIL_REDIS__URL", "redis://127.0.0.1:6379"),
        ("INVIGIL_REDIS__KEY_PREFIX", prefix),
        ("INVIGIL_SERVER__INSTANCE_ID", id),
        ("INVIGIL_DYNAMODB__TABLE", table),
        ("INVIGIL_DYNAMODB__ENDPOINT", ENDPOINT),
        ("INVIGIL_DYNAMODB__WRITE_INTERVAL_MS", "1000"),
        ("INVIGIL_SERVER__DRAIN_HANDOVER_MS", "300"),
        ("INVIGIL_LIMITS__MESSAGES_PER_SECOND", "100"),
        // The local endpoint takes any credentials; the server reads them from the standard
        // AWS chain, here the environment.
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The operator's command creates the table.
fn create_table(table: &str, prefix: &str) {
    succeed(
        Command::new(BIN)
            .args(["dynamodb", "create-table"])
            .envs(env(table, prefix, "cli"))
            .current_dir(fresh_dir("cli")),
    );
}

fn start(env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&env)
}

#[actix_rt::test]
async fn statuses_are_coalesced_into_dynamodb_and_survive_a_cluster_restart() {
    let table = format!("invigil-test-{:08x}", rand::random::<u32>());
    let first_prefix = format!("invigil-test-{:08x}", rand::random::<u32>());
    create_table(&table, &first_prefix);

    let (mut a, mut b) = (
        start(&env(&table, &first_prefix, "node-a")),
        start(&env(&table, &first_prefix, "node-b")),
    );
    a.wait_ready(200, WAIT).await;
    b.wait_ready(200, WAIT).await;
    let (mut proctor, _) = a.watching("q1").await;
    let mut student = b.student("q1", "a1", "s1").await;
    // 3 s of one progress-only update every 100 ms, then one change that matters.
    report_progress(&mut student, 30).await;
    student
        .send(status("q1", "a1", "s1", "away", json!("last")))
        .await;
    student.recv().await;
    loop {
        let v = proctor.recv_type("student_status").await;
        if v["data"]["user_status"] == "away" {
            break;
        }
    }
    // 32 statuses (a connect, 30 progress, one away); about one write per second of
    // progress plus one per change.
    let writes = b.metric("invigil_dynamodb_items_written_total").await;
    assert!(
        (3.0..=8.0).contains(&writes),
        "DynamoDB writes {writes} for 32 statuses"
    );

    // The whole cluster stops (drained: the last statuses are written before exit) ...
    for server in [&mut a, &mut b] {
        server.sigterm();
        assert_eq!(server.child.wait().unwrap().code(), Some(0));
    }
    // ... and comes back on a Redis that lost the statuses: the snapshot comes from DynamoDB.
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{first_prefix}:status:q1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let c = start(&env(&table, &first_prefix, "node-c"));
    c.wait_ready(200, WAIT).await;
    let (mut proctor, snapshot) = c.watching("q1").await;
    let a1 = &snapshot["students"][0];
    assert_eq!(a1["quiz_attempt_id"], "a1", "{snapshot}");
    assert_eq!(a1["away_count"], 1);
    assert_eq!(a1["question_answered"], 3);
    // The drained instances left the attempt to the cluster; the new instance, finding them
    // gone, reports it offline once (if not already in the snapshot), from DynamoDB's copy.
    let offline = if a1["user_status"] == "offline" {
        a1.clone()
    } else {
        proctor.recv_type("student_status").await["data"].clone()
    };
    assert_eq!(offline["user_status"], "offline", "{offline}");
    assert_eq!(offline["reason"], "instance_lost");
    assert_eq!(offline["away_count"], 1);
    assert_eq!(offline["question_answered"], 3);
}

#[actix_rt::test]
async fn a_dynamodb_outage_under_traffic_loses_no_latest_status() {
    let table = format!("invigil-test-{:08x}", rand::random::<u32>());
    let prefix = format!("invigil-test-{:08x}", rand::random::<u32>());
    create_table(&table, &prefix);
    // The instance reaches DynamoDB through a proxy the test cuts.
    let proxy = Proxy::start(5005);
    let mut through_proxy = env(&table, &prefix, "node-a");
    for (k, v) in through_proxy.iter_mut() {
        match k.as_str() {
            "INVIGIL_DYNAMODB__ENDPOINT" => *v = format!("http://127.0.0.1:{}", proxy.port),
            "INVIGIL_DYNAMODB__WRITE_INTERVAL_MS" => *v = "200".into(),
            _ => {}
        }
    }
    through_proxy.push(("INVIGIL_SERVER__DRAIN_TIMEOUT_MS".into(), "20000".into()));
    let mut a = start(&through_proxy);
    a.wait_ready(200, WAIT).await;
    let (mut proctor, _) = a.watching("q1").await;
    let n = 5 * chaos_scale();
    let mut students = Vec::new();
    for i in 0..n {
        students.push(a.student("q1", &format!("a{i}"), &format!("s{i}")).await);
    }

    // DynamoDB goes away for the outage (INVIGIL_CHAOS_OUTAGE_SECS; in the test suite, as
    // long as ten rounds take); every student keeps reporting, and the proctor sees it all.
    proxy.set(false);
    let outage = chaos_outage();
    let cut = Instant::now();
    let mut rounds = 0u64;
    while rounds < 10 || cut.elapsed() < outage {
        rounds += 1;
        let user_status = if rounds % 2 == 1 { "away" } else { "active" };
        for (i, s) in students.iter_mut().enumerate() {
            let mut m = status(
                "q1",
                &format!("a{i}"),
                &format!("s{i}"),
                user_status,
                json!(rounds),
            );
            m["message"]["data"]["question_number_current"] = json!(rounds);
            s.send(m).await;
            assert_eq!(s.recv().await["type"], "ack");
        }
        // Routing is unaffected: the proctor gets every student's status of this round (seq 1
        // was the connect).
        let mut reached = std::collections::HashSet::new();
        while reached.len() < n {
            let v = proctor.recv_type("student_status").await;
            if v["seq"] == 1 + rounds {
                reached.insert(v["data"]["quiz_attempt_id"].as_str().unwrap().to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_seq = 1 + rounds;
    let deadline = Instant::now() + WAIT;
    while a.metric("invigil_dynamodb_write_failures_total").await == 0.0 {
        assert!(Instant::now() < deadline, "the writer notices the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // DynamoDB comes back; the instance drains, writing what waited, and exits.
    proxy.set(true);
    a.sigterm();
    assert_eq!(a.child.wait().unwrap().code(), Some(0));

    // A new instance, on a Redis prefix of its own (nothing there), reads the quiz from
    // DynamoDB: every attempt at its last status.
    let fresh = format!("invigil-test-{:08x}", rand::random::<u32>());
    let b = start(&env(&table, &fresh, "node-b"));
    b.wait_ready(200, WAIT).await;
    let (_, snapshot) = b.watching("q1").await;
    let listed = snapshot["students"].as_array().unwrap();
    assert_eq!(listed.len(), n, "{snapshot}");
    for s in listed {
        assert!(s["seq"].as_u64().unwrap() >= last_seq, "{s}");
        assert_eq!(s["question_number_current"], rounds, "{s}");
    }
}
