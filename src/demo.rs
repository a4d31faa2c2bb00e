//! `invigil demo`: a server with simulated students taking an exam, so a newcomer sees a live
//! room within a minute. Each student is a real WebSocket client of the server, speaking the
//! contract like an exam page: it changes questions, goes away and comes back, drops its
//! connection and reconnects, and submits at the end.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    auth::{self, Claims, Role},
    config::Secret,
    now_ms,
    protocol::ids::{AttemptId, QuizId},
};

/// The quiz the demo's students take.
pub const QUIZ: &str = "demo";

const NAMES: [&str; 24] = [
    "Ann Lee",
    "Ben Ortiz",
    "Chen Wei",
    "Dara Singh",
    "Eve Kim",
    "Farid Haddad",
    "Grace Liu",
    "Hiro Tanaka",
    "Ines Costa",
    "Jonas Berg",
    "Kemi Adeyemi",
    "Liam Walsh",
    "Maya Cohen",
    "Nico Rossi",
    "Olga Petrova",
    "Priya Nair",
    "Quinn Baker",
    "Rosa Diaz",
    "Sami Aziz",
    "Tomas Novak",
    "Uma Rao",
    "Viktor Horvat",
    "Wen Zhou",
    "Yara Haddad",
];

const QUESTIONS: u32 = 20;

/// A student token of the demo quiz.
fn token(secret: &Secret, i: usize, name: &str) -> anyhow::Result<String> {
    Ok(auth::mint(
        secret,
        &Claims {
            sub: format!("student-{i}"),
            role: Role::Student,
            exp: now_ms() / 1000 + 12 * 3600,
            quiz_id: Some(QuizId::new(QUIZ)),
            attempt_id: Some(AttemptId::new(format!("attempt-{i}"))),
            name: Some(name.to_string()),
            quizzes: Vec::new(),
        },
    )?)
}

/// Start `n` simulated students against the server at `addr`; they run until the process
/// stops.
pub fn start_students(addr: std::net::SocketAddr, secret: &Secret, n: usize) -> anyhow::Result<()> {
    let time_end = now_ms() + 45 * 60 * 1000;
    for i in 0..n {
        let name = if i < NAMES.len() {
            NAMES[i].to_string()
        } else {
            format!("{} {}", NAMES[i % NAMES.len()], i / NAMES.len() + 1)
        };
        let url = format!("ws://{addr}/ws?token={}", token(secret, i, &name)?);
        actix_rt::spawn(student(url, i, name, time_end));
    }
    Ok(())
}

/// What one simulated student has done so far.
struct Progress {
    question: u32,
    answered: u32,
    away: bool,
    score: Option<f64>,
}

/// One simulated student: connects, reports, wanders off, drops, reconnects.
async fn student(url: String, i: usize, name: String, time_end: u64) {
    let mut p = Progress {
        question: 1,
        answered: 0,
        away: false,
        score: None,
    };
    // Students arrive over the first few seconds, not all at once.
    actix_rt::time::sleep(Duration::from_millis(rand::rng().random_range(0..3000))).await;
    loop {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            actix_rt::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        let mut id = 0u64;
        loop {
            let (drop_now, pause) = {
                let mut rng = rand::rng();
                step(&mut p, &mut rng);
                (rng.random_bool(0.01), rng.random_range(2000..4000))
            };
            id += 1;
            let status = json!({
                "type": "message_to_master", "id": id,
                "message": {"action": "lmsQuizMonitoringStudent", "data": {
                    "quiz_id": QUIZ, "quiz_attempt_id": format!("attempt-{i}"),
                    "student_id": format!("student-{i}"), "student_name": name,
                    "user_status": if p.away { "away" } else { "active" },
                    "question_number_current": p.question, "question_answered": p.answered,
                    "question_total": QUESTIONS, "score": p.score, "time_end": time_end,
                    "timestamp_sent": now_ms() as f64,
                }}
            });
            if ws.send(Message::text(status.to_string())).await.is_err() || drop_now {
                break;
            }
            // Read what the server sent meanwhile (acks, proctor messages), then wait.
            let wait = actix_rt::time::sleep(Duration::from_millis(pause));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    frame = ws.next() => match frame {
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        }
        let _ = ws.close(None).await;
        // Off the network for a moment, as a flaky connection would be.
        let offline = rand::rng().random_range(2000..6000);
        actix_rt::time::sleep(Duration::from_millis(offline)).await;
    }
}

/// One step of an exam: answer, move on, wander off or come back, submit at the end.
fn step(p: &mut Progress, rng: &mut impl Rng) {
    if p.score.is_some() {
        p.away = false;
        return;
    }
    if p.away {
        p.away = !rng.random_bool(0.3);
        return;
    }
    if rng.random_bool(0.06) {
        p.away = true;
        return;
    }
    if rng.random_bool(0.4) {
        p.answered = (p.answered + 1).min(QUESTIONS);
        p.question = (p.question + 1).min(QUESTIONS);
    }
    if p.answered == QUESTIONS && rng.random_bool(0.2) {
        p.score = Some(f64::from(rng.random_range(55..100u32)));
    }
}
