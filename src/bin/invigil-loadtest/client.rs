//! The simulated clients: a WebSocket opened from a chosen loopback address, a student that
//! reports its status on a schedule and times its acks, and a proctor that watches one quiz
//! and times every status it is handed.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::{watch, Semaphore},
    time::sleep_until,
};
use tokio_tungstenite::{
    client_async_with_config,
    tungstenite::{self, protocol::WebSocketConfig, Message},
    WebSocketStream,
};

use super::{
    plan::{ProctorPlan, StudentPlan, Target},
    report::Recorder,
};

pub type Ws = WebSocketStream<TcpStream>;

/// How long a closing client waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long a proctor waits for the snapshot of its quiz.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// What the run tells every client.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Connect, then wait.
    Connect,
    /// Students send statuses in `[start, end)`.
    Send { start: Instant, end: Instant },
    /// Close the socket and stop.
    Stop,
}

/// What every client of a shard shares.
pub struct Shared {
    pub recorder: Recorder,
    pub targets: Vec<Target>,
    /// Between two statuses of one student; `None` for idle sockets.
    pub interval: Option<Duration>,
    /// Share of statuses that report `away`.
    pub away_ratio: f64,
    /// Statuses a student sends on one question before the next (at least 1).
    pub statuses_per_question: u64,
    /// Statuses carry an `id` and wait for their `ack`.
    pub acks: bool,
    /// Bounds the handshakes in flight.
    pub connect_gate: Semaphore,
    pub connect_timeout: Duration,
    /// Tries after a 429 or 503 before a client gives up.
    pub connect_retries: u32,
}

/// Milliseconds since the epoch with fractions, as `timestamp_sent` counts them.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Small buffers: most sockets of a run are idle most of the time, and tens of thousands of
/// them share one process. A status frame is well under 1 KiB.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
}

/// A short name for why a connection failed, to count failures by kind.
fn io_failure(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => "too many open files (EMFILE)".into(),
        Some(98) => "address in use (EADDRINUSE)".into(),
        Some(99) => "no free local port (EADDRNOTAVAIL)".into(),
        Some(104) => "connection reset".into(),
        Some(111) => "connection refused".into(),
        _ => format!("io: {:?}", e.kind()),
    }
}

fn ws_failure(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(response) => format!("http {}", response.status().as_u16()),
        tungstenite::Error::Io(io) => io_failure(io),
        other => format!("ws: {other}"),
    }
}

/// Open a WebSocket to `target` from `source`, presenting `token`.
pub async fn open(
    target: &Target,
    source: IpAddr,
    token: &str,
    timeout: Duration,
) -> Result<Ws, String> {
    let connect = async {
        let socket = TcpSocket::new_v4().map_err(|e| io_failure(&e))?;
        // Ports of an earlier run from this address may still be in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(|e| io_failure(&e))?;
        // Binding picks the source address: each 127.0.0.x has its own ~28,000 ephemeral
        // ports towards one server port.
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {}", io_failure(&e)))?;
        let stream = socket
            .connect(target.addr)
            .await
            .map_err(|e| io_failure(&e))?;
        stream.set_nodelay(true).map_err(|e| io_failure(&e))?;
        let url = format!("{}?token={token}", target.endpoint);
        let (ws, _) = client_async_with_config(url, stream, Some(ws_config()))
            .await
            .map_err(|e| ws_failure(&e))?;
        Ok(ws)
    };
    tokio::time::timeout(timeout, connect)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

/// Whether a refused handshake is worth another try: the server asked the client to back
/// off (429: too many handshakes at once) or to go elsewhere (503: full or draining).
fn retryable(why: &str) -> bool {
    why == "http 429" || why == "http 503"
}

/// Open a socket as a real client does: one handshake at a time per gate permit, and after a
/// 429 or 503 a random back-off (growing with each try) before the next try. Answers the
/// socket and how long its successful handshake took.
async fn open_with_retries(
    shared: &Shared,
    target: usize,
    source: IpAddr,
    token: &str,
) -> Result<(Ws, f64), String> {
    let mut tries = 0;
    loop {
        let attempt = {
            let _permit = shared
                .connect_gate
                .acquire()
                .await
                .map_err(|_| "the run is over".to_string())?;
            let started = Instant::now();
            open(
                &shared.targets[target],
                source,
                token,
                shared.connect_timeout,
            )
            .await
            .map(|ws| (ws, ms(started.elapsed())))
        };
        match attempt {
            Err(why) if retryable(&why) && tries < shared.connect_retries => {
                tries += 1;
                shared.recorder.connect_retry(&why);
                let backoff = 250.0 * tries as f64 * (0.5 + rand::random::<f64>());
                tokio::time::sleep(Duration::from_secs_f64(backoff / 1000.0)).await;
            }
            other => return other,
        }
    }
}

async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(None)).await;
}

/// What a student reads of a server frame.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// Our ids are numbers; anything else is not an answer to us.
    id: Option<u64>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

/// Questions of the simulated quiz.
const QUESTIONS: u64 = 40;

/// The status a student sends, in the contract's shape with every field the original system
/// sent, so frames have their real size. `question` is the current question (1-based).
fn status_frame(p: &StudentPlan, question: u64, id: Option<u64>, away: bool, ts: f64) -> String {
    let id = id.map_or(String::new(), |id| format!(r#""id":{id},"#));
    let status = if away { "away" } else { "active" };
    let current = question.clamp(1, QUESTIONS);
    let answered = current - 1;
    format!(
        concat!(
            r#"{{"type":"message_to_master","clientConnectionSocketId":"{attempt}",{id}"#,
            r#""message":{{"action":"lmsQuizMonitoringStudent","data":{{"#,
            r#""quiz_id":"{quiz}","quiz_attempt_id":"{attempt}","student_id":"{student}","#,
            r#""user_status":"{status}","question_answered":{answered},"question_total":{total},"#,
            r#""question_number_current":{current},"quiz_participant_id":"{attempt}-participant","#,
            r#""quiz_result_id":"{attempt}-result","score":null,"student_name":"{name}","#,
            r#""time_start":"2025-01-06T09:00:00Z","time_end":"2025-01-06T11:00:00Z","#,
            r#""topic_uuid":"{quiz}-topic","timestamp_sent":{ts:.3}}}}}}}"#
        ),
        attempt = p.attempt_id,
        id = id,
        quiz = p.quiz_id,
        student = p.student_id,
        status = status,
        answered = answered,
        total = QUESTIONS,
        current = current,
        name = p.name,
        ts = ts,
    )
}

/// One student: connect, then report every interval of the send window, counting acks and
/// errors, until told to stop.
pub async fn student(shared: Arc<Shared>, plan: StudentPlan, mut phase: watch::Receiver<Phase>) {
    let rec = &shared.recorder;
    let mut ws = match open_with_retries(&shared, plan.target, plan.source, &plan.token).await {
        Ok((ws, handshake_ms)) => {
            rec.student_connected(handshake_ms);
            ws
        }
        Err(why) => return rec.student_failed(&why),
    };
    // Random phase: students of a real exam do not report in step.
    let offset = shared.interval.map(|t| t.mul_f64(rand::random::<f64>()));
    // (next send, end of the window)
    let mut schedule: Option<(Instant, Instant)> = None;
    let mut sent: u64 = 0;
    // Statuses waiting for their ack, in the order sent (acks come back in that order).
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        let next = schedule.map(|(at, _)| at);
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Connect => {}
                    Phase::Send { start, end } => {
                        schedule = offset.map(|off| (start + off, end));
                    }
                    Phase::Stop => {
                        close(ws).await;
                        rec.acks_missing(pending.len() as u64);
                        return;
                    }
                }
            }
            _ = sleep_until(next.unwrap_or_else(Instant::now).into()), if next.is_some() => {
                let (Some((at, end)), Some(interval)) = (schedule, shared.interval) else {
                    continue;
                };
                if at >= end {
                    schedule = None;
                    continue;
                }
                sent += 1;
                let away = rand::random::<f64>() < shared.away_ratio;
                let id = shared.acks.then_some(sent);
                // A student moves on a question every so many statuses (a minute at the
                // default 12 x 5 s): each move is an event the server records.
                let question = 1 + (sent - 1) / shared.statuses_per_question;
                let frame = status_frame(&plan, question, id, away, now_ms());
                if shared.acks {
                    pending.push_back((sent, Instant::now()));
                }
                rec.sent(plan.quiz);
                if ws.send(Message::text(frame)).await.is_err() {
                    rec.dropped(false);
                    break;
                }
                // The next status one interval on; after a stall of the load generator,
                // skip rather than burst (a burst would trip the server's rate limit).
                let now = Instant::now();
                let mut next_at = at + interval;
                if next_at + interval < now {
                    next_at = now;
                }
                schedule = Some((next_at, end));
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let Ok(reply) = serde_json::from_str::<Reply>(text.as_str()) else {
                        rec.error("unreadable frame");
                        continue;
                    };
                    match &*reply.kind {
                        "ack" => {
                            let Some(id) = reply.id else { continue };
                            while let Some(&(n, at)) = pending.front() {
                                if n > id {
                                    break;
                                }
                                pending.pop_front();
                                if n == id {
                                    rec.acked(plan.quiz, ms(at.elapsed()));
                                } else {
                                    rec.acks_missing(1);
                                }
                            }
                        }
                        "error" => {
                            rec.error(reply.code.as_deref().unwrap_or("no code"));
                            if let Some(id) = reply.id {
                                pending.retain(|&(n, _)| n != id);
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Ping(_))) => {
                    // The pong is queued by the read; send it now.
                    let _ = ws.flush().await;
                }
                Some(Ok(Message::Close(frame))) => {
                    rec.close("student", frame.map_or(1005, |f| u16::from(f.code)));
                    rec.dropped(false);
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    rec.dropped(false);
                    break;
                }
            },
        }
    }
    rec.acks_missing(pending.len() as u64);
}

/// What a proctor reads of a server frame.
#[derive(Deserialize)]
struct ToProctor<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    #[serde(borrow)]
    data: Option<StatusData<'a>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StatusData<'a> {
    #[serde(borrow)]
    quiz_attempt_id: Option<Cow<'a, str>>,
    timestamp_sent: Option<f64>,
    connected: Option<bool>,
}

/// The last status a proctor saw of one attempt.
#[derive(Default)]
struct Seen {
    seq: u64,
    timestamp_sent: f64,
}

/// One proctor: connect, subscribe to its quiz, then time every status until told to stop.
pub async fn proctor(shared: Arc<Shared>, plan: ProctorPlan, mut phase: watch::Receiver<Phase>) {
    let rec = &shared.recorder;
    let ws = open_with_retries(&shared, plan.target, plan.source, &plan.token)
        .await
        .map(|(ws, _)| ws);
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(why) => {
            rec.proctor_failed(&why);
            rec.proctor_ready();
            return;
        }
    };
    rec.proctor_connected();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let subscribe = format!(
        r#"{{"type":"subscribe","quiz_id":"{}","id":1}}"#,
        plan.quiz_id
    );
    let subscribed = async {
        ws.send(Message::text(subscribe))
            .await
            .map_err(|e| ws_failure(&e))?;
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg.map_err(|e| ws_failure(&e))? else {
                continue;
            };
            let Ok(frame) = serde_json::from_str::<ToProctor>(text.as_str()) else {
                continue;
            };
            match &*frame.kind {
                "snapshot" => return Ok(()),
                "error" => {
                    return Err(format!(
                        "subscribe refused: {}",
                        frame.code.as_deref().unwrap_or("?")
                    ))
                }
                _ => {}
            }
        }
        Err("closed before the snapshot".to_string())
    };
    match tokio::time::timeout(SNAPSHOT_WAIT, subscribed).await {
        Ok(Ok(())) => rec.proctor_subscribed(plan.quiz),
        Ok(Err(why)) => {
            rec.proctor_failed(&why);
            rec.proctor_ready();
            return;
        }
        Err(_) => {
            rec.proctor_failed("no snapshot in time");
            rec.proctor_ready();
            return;
        }
    }
    rec.proctor_ready();
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || matches!(*phase.borrow_and_update(), Phase::Stop) {
                    close(ws).await;
                    return;
                }
            }
            msg = ws.next() => {
                // Read the clock first: parsing is the load generator's time, not the server's.
                let received = now_ms();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        on_status(rec, plan.quiz, &mut seen, text.as_str(), received)
                    }
                    Some(Ok(Message::Ping(_))) => {
                        let _ = ws.flush().await;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        rec.close("proctor", frame.map_or(1005, |f| u16::from(f.code)));
                        rec.dropped(true);
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        rec.dropped(true);
                        return;
                    }
                }
            }
        }
    }
}

/// Count one frame a proctor received at `received` (ms since the epoch).
fn on_status(
    rec: &Recorder,
    quiz: usize,
    seen: &mut HashMap<String, Seen>,
    text: &str,
    received: f64,
) {
    let Ok(frame) = serde_json::from_str::<ToProctor>(text) else {
        return rec.error("unreadable frame");
    };
    match &*frame.kind {
        "student_status" => {}
        "error" => return rec.error(frame.code.as_deref().unwrap_or("no code")),
        _ => return,
    }
    let Some(data) = frame.data else { return };
    let Some(attempt) = data.quiz_attempt_id else {
        return;
    };
    let last = match seen.get_mut(&*attempt) {
        Some(last) => last,
        None => seen.entry(attempt.into_owned()).or_default(),
    };
    if let Some(seq) = frame.seq {
        if seq <= last.seq {
            return; // stale: the dashboard would drop it too
        }
        if last.seq > 0 && seq > last.seq + 1 {
            rec.seq_gap(quiz, seq - last.seq - 1);
        }
        last.seq = seq;
    }
    // A status the student sent has a newer `timestamp_sent`; the server's own connect and
    // offline statuses carry the last one again.
    match (data.timestamp_sent, data.connected) {
        (Some(ts), Some(true)) if ts > last.timestamp_sent => {
            last.timestamp_sent = ts;
            rec.delivered(quiz, received - ts);
        }
        (Some(_), _) => rec.repeat(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> StudentPlan {
        StudentPlan {
            quiz: 0,
            quiz_id: "r-q0".into(),
            attempt_id: "r-a3".into(),
            student_id: "r-s3".into(),
            name: "Student 3".into(),
            token: String::new(),
            target: 0,
            source: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn the_status_frame_is_what_the_server_accepts() {
        let frame = status_frame(&plan(), 2, Some(2), false, 1733300000123.5);
        let parsed = invigil::protocol::inbound::parse(&frame).expect("a valid status");
        let invigil::protocol::inbound::Inbound::Status { id, data } = parsed else {
            panic!("not a status: {frame}");
        };
        assert_eq!(id.unwrap().raw().get(), "2");
        assert_eq!(data.text("quiz_attempt_id").unwrap(), "r-a3");
        assert_eq!(
            data.raw("timestamp_sent").unwrap().get(),
            "1733300000123.500"
        );
        let no_id = status_frame(&plan(), 1, None, true, 1.0);
        assert!(!no_id.contains(r#""id""#));
        assert!(no_id.contains(r#""user_status":"away""#));
    }

    #[test]
    fn proctors_count_new_statuses_gaps_and_repeats() {
        let rec = Recorder::new(1);
        let mut seen = HashMap::new();
        let status = |seq: u64, ts: f64, connected: bool| {
            format!(
                r#"{{"type":"student_status","quiz_id":"q","seq":{seq},"data":{{"quiz_attempt_id":"a","timestamp_sent":{ts},"connected":{connected},"x":[1]}}}}"#
            )
        };
        on_status(&rec, 0, &mut seen, &status(2, 10.0, true), 15.0);
        on_status(&rec, 0, &mut seen, &status(5, 20.0, true), 25.0); // seq 3 and 4 skipped
        on_status(&rec, 0, &mut seen, &status(4, 19.0, true), 25.0); // stale
        on_status(&rec, 0, &mut seen, &status(6, 20.0, false), 25.0); // offline repeat
        let head = crate::report::Head {
            run_id: "r".into(),
            shards: vec![],
            targets: vec![],
            source_ips: vec![],
            students: 1,
            students_per_quiz: 1,
            proctors_per_quiz: 1,
            quizzes: 1,
            interval_ms: 1,
            duration_s: 1.0,
            placement: "cross".into(),
            acks: true,
            students_here: 1,
            proctors_here: 1,
            deadline_hit: false,
        };
        let r = rec.report(head, Default::default(), Default::default());
        assert_eq!(r.per_quiz.received, vec![2]);
        assert_eq!(r.per_quiz.seq_gaps, vec![2]);
        assert_eq!(r.repeats, 1);
        assert_eq!(r.delivery.summary().max_ms, 5.0);
    }
}
