//! What a run measured: the [`Recorder`] the clients write into while they run, the
//! [`Report`] it becomes (JSON, mergeable across the shards of one run), and the table a
//! person reads.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use serde::{Deserialize, Serialize};

use super::{
    client::now_ms,
    histogram::Histogram,
    plan::Placement,
    procfs::{MachineUsage, Usage},
};

/// Counts kept per quiz, so that shards can be merged exactly: a status sent in one shard may
/// be delivered to a proctor of another.
#[derive(Default)]
struct QuizCounters {
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    seq_gaps: AtomicU64,
    proctors: AtomicU64,
}

/// Where the clients of a running shard record what they see. Everything is shared and
/// updated as it happens, so a run cut short by its deadline still reports.
pub struct Recorder {
    quizzes: Vec<QuizCounters>,
    connect_latency: Mutex<Histogram>,
    ack_rtt: Mutex<Histogram>,
    delivery: Mutex<Histogram>,
    connect_failures: Mutex<BTreeMap<String, u64>>,
    connect_retries: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    students_connected: AtomicU64,
    students_failed: AtomicU64,
    students_dropped: AtomicU64,
    proctors_connected: AtomicU64,
    proctors_failed: AtomicU64,
    proctors_dropped: AtomicU64,
    /// Deliveries that were not a new status (an older `timestamp_sent` again: the connect
    /// and offline statuses carry the last status's fields).
    repeats: AtomicU64,
    acks_missing: AtomicU64,
    /// Proctors subscribed or given up.
    proctors_ready: AtomicU64,
    /// When the last student connected or gave up, µs since the epoch.
    last_settled_us: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A client task that panicked mid-update leaves counts that are still counts.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut map = lock(map);
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

impl Recorder {
    pub fn new(quizzes: usize) -> Self {
        Recorder {
            quizzes: (0..quizzes).map(|_| QuizCounters::default()).collect(),
            connect_latency: Mutex::default(),
            ack_rtt: Mutex::default(),
            delivery: Mutex::default(),
            connect_failures: Mutex::default(),
            connect_retries: Mutex::default(),
            errors: Mutex::default(),
            closes: Mutex::default(),
            students_connected: AtomicU64::new(0),
            students_failed: AtomicU64::new(0),
            students_dropped: AtomicU64::new(0),
            proctors_connected: AtomicU64::new(0),
            proctors_failed: AtomicU64::new(0),
            proctors_dropped: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            acks_missing: AtomicU64::new(0),
            proctors_ready: AtomicU64::new(0),
            last_settled_us: AtomicU64::new(0),
        }
    }

    fn quiz(&self, quiz: usize) -> &QuizCounters {
        // Quiz indexes come from the plan, which sized this vector.
        &self.quizzes[quiz]
    }

    fn settled_now(&self) {
        let us = (now_ms() * 1000.0) as u64;
        self.last_settled_us.fetch_max(us, Ordering::Relaxed);
    }

    /// When the last student connected or gave up, ms since the epoch.
    pub fn last_settled_ms(&self) -> Option<f64> {
        let us = self.last_settled_us.load(Ordering::Relaxed);
        (us > 0).then(|| us as f64 / 1000.0)
    }

    pub fn student_connected(&self, handshake_ms: f64) {
        self.settled_now();
        self.students_connected.fetch_add(1, Ordering::Relaxed);
        lock(&self.connect_latency).record_ms(handshake_ms);
    }

    /// A handshake refused with a 429 or 503, to be tried again.
    pub fn connect_retry(&self, why: &str) {
        bump(&self.connect_retries, why);
    }

    pub fn student_failed(&self, why: &str) {
        self.settled_now();
        self.students_failed.fetch_add(1, Ordering::Relaxed);
        bump(&self.connect_failures, why);
    }

    pub fn proctor_connected(&self) {
        self.proctors_connected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn proctor_failed(&self, why: &str) {
        self.proctors_failed.fetch_add(1, Ordering::Relaxed);
        bump(&self.connect_failures, &format!("proctor: {why}"));
    }

    pub fn proctor_subscribed(&self, quiz: usize) {
        self.quiz(quiz).proctors.fetch_add(1, Ordering::Relaxed);
    }

    /// A socket closed before the run ended it.
    pub fn dropped(&self, proctor: bool) {
        let n = if proctor {
            &self.proctors_dropped
        } else {
            &self.students_dropped
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self, quiz: usize) {
        self.quiz(quiz).sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn acked(&self, quiz: usize, rtt_ms: f64) {
        self.quiz(quiz).acked.fetch_add(1, Ordering::Relaxed);
        lock(&self.ack_rtt).record_ms(rtt_ms);
    }

    /// Statuses still waiting for their ack when the socket closed.
    pub fn acks_missing(&self, n: u64) {
        self.acks_missing.fetch_add(n, Ordering::Relaxed);
    }

    pub fn error(&self, code: &str) {
        bump(&self.errors, code);
    }

    pub fn close(&self, role: &str, code: u16) {
        bump(&self.closes, &format!("{role} {code}"));
    }

    pub fn delivered(&self, quiz: usize, latency_ms: f64) {
        self.quiz(quiz).received.fetch_add(1, Ordering::Relaxed);
        lock(&self.delivery).record_ms(latency_ms);
    }

    pub fn seq_gap(&self, quiz: usize, skipped: u64) {
        self.quiz(quiz)
            .seq_gaps
            .fetch_add(skipped, Ordering::Relaxed);
    }

    pub fn repeat(&self) {
        self.repeats.fetch_add(1, Ordering::Relaxed);
    }

    pub fn students_settled(&self) -> u64 {
        self.students_connected.load(Ordering::Relaxed)
            + self.students_failed.load(Ordering::Relaxed)
    }

    /// A proctor subscribed, or gave up (connect or subscribe failed).
    pub fn proctor_ready(&self) {
        self.proctors_ready.fetch_add(1, Ordering::Relaxed);
    }

    pub fn proctors_ready(&self) -> u64 {
        self.proctors_ready.load(Ordering::Relaxed)
    }

    /// Everything so far, as a report of this shard.
    pub fn report(&self, head: Head, timing: Timing, usage: Readings) -> Report {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let per_quiz = PerQuiz {
            sent: self.quizzes.iter().map(|q| load(&q.sent)).collect(),
            acked: self.quizzes.iter().map(|q| load(&q.acked)).collect(),
            received: self.quizzes.iter().map(|q| load(&q.received)).collect(),
            seq_gaps: self.quizzes.iter().map(|q| load(&q.seq_gaps)).collect(),
            proctors: self.quizzes.iter().map(|q| load(&q.proctors)).collect(),
        };
        let mut report = Report {
            head,
            timing,
            students: Population {
                planned: 0,
                connected: load(&self.students_connected),
                failed: load(&self.students_failed),
                dropped: load(&self.students_dropped),
            },
            proctors: Population {
                planned: 0,
                connected: load(&self.proctors_connected),
                failed: load(&self.proctors_failed),
                dropped: load(&self.proctors_dropped),
            },
            connect_failures: lock(&self.connect_failures).clone(),
            connect_retries: lock(&self.connect_retries).clone(),
            connect_latency: lock(&self.connect_latency).clone(),
            ack_rtt: lock(&self.ack_rtt).clone(),
            delivery: lock(&self.delivery).clone(),
            errors: lock(&self.errors).clone(),
            closes: lock(&self.closes).clone(),
            repeats: load(&self.repeats),
            acks_missing: load(&self.acks_missing),
            per_quiz,
            servers: usage.servers,
            redis: usage.redis,
            loadgen: usage.loadgen,
            machine: usage.machine,
            totals: Totals::default(),
        };
        report.students.planned = report.head.students_here;
        report.proctors.planned = report.head.proctors_here;
        report.totals = Totals::of(&report);
        report
    }
}

/// The run's configuration, as this shard ran it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Head {
    pub run_id: String,
    /// The shards merged into this report (`i/n`).
    pub shards: Vec<String>,
    pub targets: Vec<String>,
    pub source_ips: Vec<String>,
    pub students: usize,
    pub students_per_quiz: usize,
    pub proctors_per_quiz: usize,
    pub quizzes: usize,
    pub interval_ms: u64,
    pub duration_s: f64,
    pub placement: String,
    pub acks: bool,
    /// Clients of this report's shards.
    pub students_here: u64,
    pub proctors_here: u64,
    /// The hard deadline cut the run short: figures are partial.
    pub deadline_hit: bool,
}

impl Head {
    pub fn placement_name(p: Placement) -> String {
        match p {
            Placement::Cross => "cross".into(),
            Placement::Spread => "spread".into(),
        }
    }
}

/// When the phases happened, ms since the epoch (comparable across shards on one machine).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Timing {
    /// The first student began to connect.
    pub connect_start_ms: f64,
    /// The last student connected or gave up.
    pub connect_end_ms: f64,
    /// The status window: sends happen in `[window_start_ms, window_end_ms)`.
    pub window_start_ms: f64,
    pub window_end_ms: f64,
}

/// Readings of the servers', Redis's and the load generator's processes, and of the machine.
#[derive(Clone, Debug, Default)]
pub struct Readings {
    pub servers: Vec<Usage>,
    pub redis: Vec<Usage>,
    pub loadgen: Vec<Usage>,
    pub machine: MachineUsage,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Population {
    pub planned: u64,
    pub connected: u64,
    pub failed: u64,
    /// Closed before the run ended it (by the server, or the connection broke).
    pub dropped: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PerQuiz {
    pub sent: Vec<u64>,
    pub acked: Vec<u64>,
    pub received: Vec<u64>,
    pub seq_gaps: Vec<u64>,
    /// Proctors subscribed to the quiz (their snapshot arrived).
    pub proctors: Vec<u64>,
}

fn add_into(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Figures derived from the rest of the report.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    /// Every acked status times the subscribed proctors of its quiz.
    pub expected: u64,
    pub received: u64,
    /// Expected deliveries that never arrived: `expected - received` (never negative).
    pub missing: u64,
    /// Statuses a proctor never saw although a later one of the same attempt arrived (its
    /// `seq` jumped): coalesced by the server for a slow proctor, or dropped between
    /// instances. Part of `missing`.
    pub seq_gaps: u64,
    /// Refused statuses (`error` replies), of any code.
    pub refused: u64,
    /// Students connected per second of the connect phase.
    pub connect_rate: f64,
    pub window_s: f64,
    /// Statuses acked per second of the window.
    pub statuses_per_s: f64,
    /// Deliveries received per second of the window.
    pub deliveries_per_s: f64,
    /// CPU seconds of all servers during the window.
    pub servers_cpu_s: Option<f64>,
    /// Of those, per 1,000 deliveries received, in CPU milliseconds.
    pub servers_cpu_ms_per_1000: Option<f64>,
    pub loadgen_cpu_s: Option<f64>,
    /// CPU seconds of Redis during the window.
    pub redis_cpu_s: Option<f64>,
    /// CPU seconds the whole machine spent in the window, and what of it was neither the
    /// servers, Redis nor the load generator (another user's compiler, say).
    pub machine_busy_s: Option<f64>,
    pub others_cpu_s: Option<f64>,
    /// Growth of the servers' RSS while the clients connected, per connection, KiB.
    pub servers_rss_kib_per_connection: Option<f64>,
}

impl Totals {
    fn of(r: &Report) -> Totals {
        let q = &r.per_quiz;
        let sum = |v: &[u64]| v.iter().sum::<u64>();
        let expected: u64 = q
            .acked
            .iter()
            .zip(q.proctors.iter().chain(std::iter::repeat(&0)))
            .map(|(a, p)| a * p)
            .sum();
        let received = sum(&q.received);
        let connect_s = (r.timing.connect_end_ms - r.timing.connect_start_ms) / 1000.0;
        let window_s = (r.timing.window_end_ms - r.timing.window_start_ms) / 1000.0;
        let per_s = |n: u64| {
            if window_s > 0.0 {
                n as f64 / window_s
            } else {
                0.0
            }
        };
        let servers_cpu_s = window_cpu_s(&r.servers);
        let loadgen_cpu_s = window_cpu_s(&r.loadgen);
        let redis_cpu_s = window_cpu_s(&r.redis);
        let machine_busy_s = r.machine.window_busy_s();
        // The processes and the machine are read a few microseconds apart, and /proc counts
        // in 10 ms ticks: a small negative rest is noise, shown as 0.
        let others_cpu_s = machine_busy_s.map(|busy| {
            (busy
                - servers_cpu_s.unwrap_or(0.0)
                - redis_cpu_s.unwrap_or(0.0)
                - loadgen_cpu_s.unwrap_or(0.0))
            .max(0.0)
        });
        let connections = r.students.connected + r.proctors.connected;
        let rss_growth = r
            .servers
            .iter()
            .map(Usage::connected_rss_growth_kib)
            .sum::<Option<i64>>()
            .filter(|_| !r.servers.is_empty() && connections > 0);
        Totals {
            servers_rss_kib_per_connection: rss_growth.map(|g| g as f64 / connections as f64),
            sent: sum(&q.sent),
            acked: sum(&q.acked),
            expected,
            received,
            missing: expected.saturating_sub(received),
            seq_gaps: sum(&q.seq_gaps),
            refused: r.errors.values().sum(),
            connect_rate: if connect_s > 0.0 {
                r.students.connected as f64 / connect_s
            } else {
                0.0
            },
            window_s,
            statuses_per_s: per_s(sum(&q.acked)),
            deliveries_per_s: per_s(received),
            servers_cpu_s,
            servers_cpu_ms_per_1000: servers_cpu_s
                .filter(|_| received > 0)
                .map(|cpu| cpu * 1000.0 / (received as f64 / 1000.0)),
            loadgen_cpu_s,
            redis_cpu_s,
            machine_busy_s,
            others_cpu_s,
        }
    }
}

/// Everything one run (or one shard of it) measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub head: Head,
    pub totals: Totals,
    pub timing: Timing,
    pub students: Population,
    pub proctors: Population,
    pub connect_failures: BTreeMap<String, u64>,
    /// Handshakes refused with 429 or 503 and tried again, by answer.
    #[serde(default)]
    pub connect_retries: BTreeMap<String, u64>,
    /// TCP connect plus WebSocket upgrade, per student.
    pub connect_latency: Histogram,
    /// From sending a status with an `id` to its `ack`.
    pub ack_rtt: Histogram,
    /// From `timestamp_sent` to the proctor reading the `student_status`.
    pub delivery: Histogram,
    /// `error` replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Close frames received, by role and code.
    pub closes: BTreeMap<String, u64>,
    pub repeats: u64,
    pub acks_missing: u64,
    pub per_quiz: PerQuiz,
    pub servers: Vec<Usage>,
    #[serde(default)]
    pub redis: Vec<Usage>,
    pub loadgen: Vec<Usage>,
    #[serde(default)]
    pub machine: MachineUsage,
}

/// CPU seconds a group of processes spent in the status window; `None` for no processes or if
/// one was not sampled at both edges.
fn window_cpu_s(group: &[Usage]) -> Option<f64> {
    group
        .iter()
        .map(Usage::window_cpu_s)
        .sum::<Option<f64>>()
        .filter(|_| !group.is_empty())
}

fn merge_maps(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}

fn pop_add(a: &mut Population, b: &Population) {
    a.planned += b.planned;
    a.connected += b.connected;
    a.failed += b.failed;
    a.dropped += b.dropped;
}

impl Report {
    /// The reports of the shards of one run, as one.
    pub fn merge(mut reports: Vec<Report>) -> anyhow::Result<Report> {
        if reports.is_empty() {
            anyhow::bail!("nothing to merge");
        }
        // Every shard reads the same servers; keep the readings of the shard that finished
        // connecting last, which saw every connection of the run open.
        let last = reports
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.servers.is_empty())
            .max_by(|(_, a), (_, b)| a.timing.connect_end_ms.total_cmp(&b.timing.connect_end_ms))
            .map(|(_, r)| (r.servers.clone(), r.redis.clone(), r.machine));
        let mut all = reports.remove(0);
        for r in reports {
            if r.head.run_id != all.head.run_id {
                anyhow::bail!(
                    "reports of different runs: {} and {}",
                    all.head.run_id,
                    r.head.run_id
                );
            }
            all.head.shards.extend(r.head.shards);
            all.head.students_here += r.head.students_here;
            all.head.proctors_here += r.head.proctors_here;
            all.head.deadline_hit |= r.head.deadline_hit;
            let (a, b) = (&mut all.timing, &r.timing);
            a.connect_start_ms = a.connect_start_ms.min(b.connect_start_ms);
            a.connect_end_ms = a.connect_end_ms.max(b.connect_end_ms);
            a.window_start_ms = a.window_start_ms.min(b.window_start_ms);
            a.window_end_ms = a.window_end_ms.max(b.window_end_ms);
            pop_add(&mut all.students, &r.students);
            pop_add(&mut all.proctors, &r.proctors);
            merge_maps(&mut all.connect_failures, &r.connect_failures);
            merge_maps(&mut all.connect_retries, &r.connect_retries);
            merge_maps(&mut all.errors, &r.errors);
            merge_maps(&mut all.closes, &r.closes);
            all.connect_latency.merge(&r.connect_latency);
            all.ack_rtt.merge(&r.ack_rtt);
            all.delivery.merge(&r.delivery);
            all.repeats += r.repeats;
            all.acks_missing += r.acks_missing;
            let (a, b) = (&mut all.per_quiz, &r.per_quiz);
            add_into(&mut a.sent, &b.sent);
            add_into(&mut a.acked, &b.acked);
            add_into(&mut a.received, &b.received);
            add_into(&mut a.seq_gaps, &b.seq_gaps);
            add_into(&mut a.proctors, &b.proctors);
            all.loadgen.extend(r.loadgen);
        }
        if let Some((servers, redis, machine)) = last {
            all.servers = servers;
            all.redis = redis;
            all.machine = machine;
        }
        all.totals = Totals::of(&all);
        Ok(all)
    }

    /// The table a person reads.
    pub fn table(&self) -> String {
        let h = &self.head;
        let t = &self.totals;
        let mut out = String::new();
        let lat = |name: &str, hist: &Histogram| {
            let s = hist.summary();
            format!(
                "{name:<12} n={:<9} p50 {:>8.3}  p90 {:>8.3}  p95 {:>8.3}  p99 {:>8.3}  max {:>9.3}  mean {:>8.3}  (ms)\n",
                s.count, s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.max_ms, s.mean_ms
            )
        };
        let map = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(
            out,
            "run {}  shards {}  {} students ({} quizzes x {}), {} proctor(s) per quiz, placement {}",
            h.run_id,
            h.shards.join(","),
            h.students,
            h.quizzes,
            h.students_per_quiz,
            h.proctors_per_quiz,
            h.placement
        );
        let _ = writeln!(
            out,
            "targets {}  from {}",
            h.targets.join(","),
            h.source_ips.join(",")
        );
        if h.interval_ms > 0 {
            let _ = writeln!(
                out,
                "statuses every {} ms for {:.1} s{}",
                h.interval_ms,
                h.duration_s,
                if h.acks { ", each asking an ack" } else { "" }
            );
        } else {
            let _ = writeln!(out, "idle sockets held for {:.1} s", h.duration_s);
        }
        if h.deadline_hit {
            let _ = writeln!(out, "HARD DEADLINE HIT: the figures below are partial");
        }
        let _ = writeln!(
            out,
            "students     {}/{} connected, {} failed, {} dropped;  proctors {}/{} connected, {} subscribed, {} failed, {} dropped",
            self.students.connected,
            self.students.planned,
            self.students.failed,
            self.students.dropped,
            self.proctors.connected,
            self.proctors.planned,
            self.per_quiz.proctors.iter().sum::<u64>(),
            self.proctors.failed,
            self.proctors.dropped
        );
        let _ = writeln!(
            out,
            "connect      {:.0} students/s over {:.2} s;  failures: {};  retried: {}",
            t.connect_rate,
            (self.timing.connect_end_ms - self.timing.connect_start_ms) / 1000.0,
            map(&self.connect_failures),
            map(&self.connect_retries)
        );
        out.push_str(&lat("handshake", &self.connect_latency));
        if h.interval_ms > 0 {
            let _ = writeln!(
                out,
                "statuses     sent {}, acked {}, refused {}, acks missing {};  {:.0} acked/s over {:.1} s",
                t.sent, t.acked, t.refused, self.acks_missing, t.statuses_per_s, t.window_s
            );
            out.push_str(&lat("ack rtt", &self.ack_rtt));
            out.push_str(&lat("delivery", &self.delivery));
            let loss = if t.expected > 0 {
                100.0 * t.missing as f64 / t.expected as f64
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "deliveries   expected {}, received {}, missing {} ({loss:.3} %), of which seq gaps {};  {:.0}/s",
                t.expected, t.received, t.missing, t.seq_gaps, t.deliveries_per_s
            );
        }
        let _ = writeln!(out, "errors       {}", map(&self.errors));
        let _ = writeln!(out, "closes       {}", map(&self.closes));
        for s in &self.servers {
            let mib =
                |x: Option<u64>| x.map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
            let _ = writeln!(
                out,
                "server {:<6} rss MiB before {} connected {} end {};  cpu s connect {}  window {}",
                s.pid,
                mib(s.before.map(|x| x.rss_kib)),
                mib(s.connected.map(|x| x.rss_kib)),
                mib(s.window_end.map(|x| x.rss_kib)),
                s.connect_cpu_s().map_or("?".into(), |c| format!("{c:.2}")),
                s.window_cpu_s().map_or("?".into(), |c| format!("{c:.2}")),
            );
        }
        if let Some(kib) = t.servers_rss_kib_per_connection {
            let _ = writeln!(
                out,
                "servers      RSS grew {kib:.2} KiB per connection while the clients connected"
            );
        }
        if let Some(cpu) = t.servers_cpu_s {
            let _ = write!(
                out,
                "servers      {:.2} CPU s in the window = {:.3} cores",
                cpu,
                if t.window_s > 0.0 {
                    cpu / t.window_s
                } else {
                    0.0
                },
            );
            if let Some(per) = t.servers_cpu_ms_per_1000 {
                let _ = write!(out, ";  {per:.1} CPU ms per 1,000 deliveries");
            }
            out.push('\n');
        }
        let cores = |cpu: f64| {
            if t.window_s > 0.0 {
                cpu / t.window_s
            } else {
                0.0
            }
        };
        if let Some(cpu) = t.redis_cpu_s {
            let _ = writeln!(
                out,
                "redis        {cpu:.2} CPU s in the window = {:.3} cores",
                cores(cpu)
            );
        }
        if let Some(cpu) = t.loadgen_cpu_s {
            let _ = writeln!(
                out,
                "loadgen      {cpu:.2} CPU s in the window = {:.3} cores",
                cores(cpu)
            );
        }
        if let (Some(busy), Some(others)) = (t.machine_busy_s, t.others_cpu_s) {
            let _ = writeln!(
                out,
                "machine      {:.3} cores busy in the window, of which {:.3} by other processes",
                cores(busy),
                cores(others)
            );
        }
        out
    }
}
