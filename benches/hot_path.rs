//! Micro-benchmarks of the hot path of one student status, through the library's public
//! functions: parse the frame, check its ids against the token, build the next status record,
//! serialize the `student_status` frame every proctor shares, and route it: the `Router` a
//! student socket calls, with the single-node store and bridge, handing the frame to one
//! proctor socket's mailbox. `invigil-loadtest` measures routing across instances end to end,
//! and the server's `invigil_routing_latency_seconds` histogram measures it in place.
//!
//! Run: `cargo bench --bench hot_path` (`scripts/bench.sh` runs it and records the figures).

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use invigil::{
    bridge::MemoryBridge,
    metrics::Metrics,
    protocol::{
        ids::{AttemptId, AttemptKey, ConnectionId, InstanceId, QuizId, UserId},
        inbound::{self, Inbound},
        outbound,
        status::{StatusChange, StatusFields, StatusRecord},
    },
    registry::Router,
    session::ProctorCommand,
    store::MemoryStore,
};

/// A status as the load generator sends it: the contract's fields at their real size.
const STATUS: &str = concat!(
    r#"{"type":"message_to_master","clientConnectionSocketId":"run-a17","id":17,"#,
    r#""message":{"action":"lmsQuizMonitoringStudent","data":{"#,
    r#""quiz_id":"run-q0","quiz_attempt_id":"run-a17","student_id":"run-s17","#,
    r#""user_status":"active","question_answered":3,"question_total":40,"#,
    r#""question_number_current":4,"quiz_participant_id":"run-a17-participant","#,
    r#""quiz_result_id":"run-a17-result","score":null,"student_name":"Student 17","#,
    r#""time_start":"2025-01-06T09:00:00Z","time_end":"2025-01-06T11:00:00Z","#,
    r#""topic_uuid":"run-q0-topic","timestamp_sent":1733300000123.500}}}"#
);

fn key() -> AttemptKey {
    AttemptKey {
        quiz: QuizId::new("run-q0"),
        attempt: AttemptId::new("run-a17"),
    }
}

fn status_fields() -> StatusFields {
    match inbound::parse(STATUS) {
        Ok(Inbound::Status { data, .. }) => data,
        _ => panic!("the benchmark's status does not parse"),
    }
}

/// What the student session checks: the ids a status names are the token's.
fn owns(data: &StatusFields, key: &AttemptKey, student: &str) -> bool {
    data.text("quiz_id").as_deref() == Some(key.quiz.as_str())
        && data.text("quiz_attempt_id").as_deref() == Some(key.attempt.as_str())
        && data.text("student_id").as_deref() == Some(student)
}

fn hot_path(c: &mut Criterion) {
    let key = key();
    let data = status_fields();
    let previous = StatusRecord::next(&key, None, StatusChange::Reported(data.clone()), 1);
    let record = StatusRecord::next(
        &key,
        Some(&previous),
        StatusChange::Reported(data.clone()),
        2,
    );

    c.bench_function("parse a student status", |b| {
        b.iter(|| inbound::parse(black_box(STATUS)))
    });
    c.bench_function("check its ids against the token", |b| {
        b.iter(|| owns(black_box(&data), &key, "run-s17"))
    });
    c.bench_function("read one field as text (StatusFields::text)", |b| {
        b.iter(|| black_box(&data).text("quiz_id"))
    });
    c.bench_function("build the next status record", |b| {
        b.iter_batched(
            || StatusChange::Reported(data.clone()),
            |change| StatusRecord::next(&key, Some(black_box(&previous)), change, 3),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("serialize the student_status frame", |b| {
        b.iter(|| outbound::student_status(black_box(&record)))
    });
    c.bench_function(
        "one status end to end (parse, check, record, serialize)",
        |b| {
            b.iter(|| {
                let Ok(Inbound::Status { data, .. }) = inbound::parse(black_box(STATUS)) else {
                    unreachable!("the status parses (checked above)")
                };
                assert!(owns(&data, &key, "run-s17"));
                let next =
                    StatusRecord::next(&key, Some(&previous), StatusChange::Reported(data), 3);
                outbound::student_status(&next)
            })
        },
    );
}

/// A proctor socket that takes its frames and drops them.
struct Proctor;

impl Actor for Proctor {
    type Context = Context<Self>;
}

impl Handler<ProctorCommand> for Proctor {
    type Result = ();

    fn handle(&mut self, cmd: ProctorCommand, _: &mut Self::Context) {
        black_box(cmd);
    }
}

fn route(c: &mut Criterion) {
    let system = System::new();
    let key = key();
    let data = status_fields();
    let socket = ConnectionId::generate();
    let router = system.block_on(async {
        let router = Router::new(
            &InstanceId::new("bench"),
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryBridge::single()),
            Arc::new(Metrics::default()),
            None,
        );
        router.watch(
            &key.quiz,
            &ConnectionId::generate(),
            Proctor.start().recipient(),
        );
        router
    });
    let line = router.connect(&key, &socket, UserId::new("run-s17"), None, None);
    c.bench_function(
        "route a status (next record, store, serialize, one proctor mailbox)",
        |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let mut spent = Duration::ZERO;
                    for done in 0..iters {
                        let change = data.clone();
                        let start = Instant::now();
                        router.report(&line, &socket, change, start);
                        spent += start.elapsed();
                        // Let the proctor empty its mailbox now and then, as a live one would.
                        if done % 256 == 255 {
                            actix_rt::task::yield_now().await;
                        }
                    }
                    spent
                })
            })
        },
    );
}

criterion_group!(benches, hot_path, route);
criterion_main!(benches);
