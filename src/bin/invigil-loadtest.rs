//! `invigil-loadtest`: simulated students and proctors against one or more invigil instances,
//! measuring what the product promises: connect rate, ack round-trip, delivery latency from
//! `timestamp_sent` to the proctor, loss, errors, and the servers' CPU and memory.
//!
//! The method is the original system's evaluation: N students spread over the instances,
//! each sending the PROTOCOL.md status every T ms with a random phase, and proctors subscribed
//! to every quiz on another instance than their students, so statuses cross instances.
//!
//! One process holds at most ~19,000 sockets (the open-file limit); a larger run is split
//! with `--shard i/n` over several processes started with the same `--run-id` and
//! `--start-at-ms`, and `invigil-loadtest merge` adds up their `--json` reports. More than
//! ~28,000 sockets towards one server port need several source addresses
//! (`--source-ips 127.0.0.1,127.0.0.2`): each has its own ephemeral ports.
//!
//! Every run stops by itself: after `--duration`, a drain of `--drain-ms`, and in any case at
//! the hard deadline (`--deadline`), when it reports what it has.

// The binary's modules live in `src/bin/invigil-loadtest/`; the paths say so because a
// binary's root would otherwise look for them beside it, where Cargo would take each for a
// binary of its own.
#[path = "invigil-loadtest/client.rs"]
mod client;
#[path = "invigil-loadtest/histogram.rs"]
mod histogram;
#[path = "invigil-loadtest/plan.rs"]
mod plan;
#[path = "invigil-loadtest/procfs.rs"]
mod procfs;
#[path = "invigil-loadtest/report.rs"]
mod report;

use std::{
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use invigil::config::Secret;
use tokio::{sync::watch, task::JoinSet};

use client::{Phase, Shared};
use plan::{Placement, Plan, Shape, Shard, Target};
use report::{Head, Readings, Report, Timing};

#[derive(Parser)]
#[command(
    name = "invigil-loadtest",
    version,
    about = "Load generator for invigil: simulated students and proctors, latency and loss"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulated students and proctors against the targets.
    // Boxed: the command line is parsed once, and the run's flags dwarf the merge's.
    Run(Box<RunArgs>),
    /// Merge the `--json` reports of the shards of one run into one report.
    Merge(MergeArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Instances to connect to, comma-separated (`ws://host:port`; the path defaults to /ws).
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// Students of the whole run (all shards together).
    #[arg(long, default_value_t = 1000)]
    students: usize,
    #[arg(long, default_value_t = 50)]
    students_per_quiz: usize,
    /// Proctors watching each quiz.
    #[arg(long, default_value_t = 1)]
    proctors_per_quiz: usize,
    /// Milliseconds between two statuses of one student; 0 holds idle sockets.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Seconds statuses are sent for (or idle sockets held).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Where students sit relative to their quiz's proctors.
    #[arg(long, value_enum, default_value_t = Placement::Cross)]
    placement: Placement,
    /// The JWT secret of the servers (HS256), to sign the clients' tokens.
    #[arg(long, env = "INVIGIL_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Loopback addresses to connect from, comma-separated, used in turn. Each address has
    /// ~28,000 ephemeral ports towards one server port. Use fresh ones for a run that follows
    /// another within a minute: connects that meet the last run's TIME_WAIT are slow.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    source_ips: Vec<IpAddr>,
    /// Run only the clients whose index is i modulo n.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Prefix of every id of the run; the same for all its shards. Default: random.
    #[arg(long)]
    run_id: Option<String>,
    /// When statuses start to flow (ms since the epoch), so the shards of a run send
    /// together. Default: as soon as every client of this shard has connected.
    #[arg(long)]
    start_at_ms: Option<u64>,
    /// Seconds between the last connect and the first status, when --start-at-ms is not
    /// given.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Tries after a handshake refused with 429 or 503 (with a growing random back-off).
    #[arg(long, default_value_t = 8)]
    connect_retries: u32,
    /// Seconds one connection may take.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Seconds the whole connect phase may take before the run goes on without the rest.
    #[arg(long, default_value_t = 120.0)]
    connect_budget: f64,
    /// Milliseconds to wait after the window for the last acks and deliveries.
    #[arg(long, default_value_t = 3000)]
    drain_ms: u64,
    /// Hard limit on the whole run, in seconds; default: the connect budget, the duration and
    /// the drain, plus 30 s.
    #[arg(long)]
    deadline: Option<f64>,
    /// Share of statuses reporting `away` rather than `active` (each away status between
    /// active ones is two events the server records: away, then back).
    #[arg(long, default_value_t = 0.05)]
    away_ratio: f64,
    /// Statuses a student sends on one question before moving to the next: 12 at one status
    /// every 5 s is a question a minute (a 40-question quiz in 40 minutes).
    #[arg(long, default_value_t = 12)]
    statuses_per_question: u64,
    /// Send statuses without an `id` (no acks, no ack round-trip).
    #[arg(long)]
    no_acks: bool,
    /// Server processes to read CPU time and RSS of (from /proc) at each phase.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Redis processes to read the same way (reported apart from the servers).
    #[arg(long, value_delimiter = ',')]
    redis_pids: Vec<u32>,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Runtime worker threads; default: one per core.
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct MergeArgs {
    /// JSON reports of `run --json`, one per shard.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the merged report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Merge(args) => merge(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("invigil-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        eprint!("{}", report.table());
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let reports = args
        .files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))
        })
        .collect::<anyhow::Result<Vec<Report>>>()?;
    let merged = Report::merge(reports)?;
    print(&merged, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build().context("starting the runtime")?;
    let hard = Duration::from_secs_f64(args.deadline.unwrap_or(
        args.connect_budget + args.warmup + args.duration + args.drain_ms as f64 / 1000.0 + 30.0,
    ));
    // The last resort: a run whose runtime is wedged still ends.
    std::thread::spawn(move || {
        std::thread::sleep(hard + Duration::from_secs(20));
        eprintln!("invigil-loadtest: still running 20 s past the hard deadline; exiting");
        std::process::exit(3);
    });
    let report = runtime.block_on(run_shard(args, hard))?;
    let code = if report.head.deadline_hit {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    // Client tasks still closing are not waited for: the report is out.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

/// Wait until `done()` or `by`; false if time ran out.
async fn settle(done: impl Fn() -> bool, by: Instant) -> bool {
    while !done() {
        if Instant::now() >= by {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn sample_all(readings: &mut Readings, at: fn(&mut procfs::Usage) -> &mut Option<procfs::Sample>) {
    let processes = readings.servers.iter_mut();
    for usage in processes
        .chain(&mut readings.redis)
        .chain(&mut readings.loadgen)
    {
        *at(usage) = procfs::sample(usage.pid);
    }
}

async fn run_shard(args: RunArgs, hard: Duration) -> anyhow::Result<Report> {
    let began = Instant::now();
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("lt{:08x}", rand::random::<u32>()));
    plan::check_run_id(&run_id)?;
    if args.duration <= 0.0 || !args.duration.is_finite() {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    let mut targets = Vec::new();
    for url in &args.targets {
        targets.push(Target::resolve(url).await?);
    }
    let shape = Shape {
        run_id: run_id.clone(),
        students: args.students,
        students_per_quiz: args.students_per_quiz,
        proctors_per_quiz: args.proctors_per_quiz,
        placement: args.placement,
        shard: args.shard,
        lifetime_secs: hard.as_secs() + 60,
    };
    let quizzes = shape.quizzes();
    let secret = Secret::new(args.secret.clone());
    let plan = Plan::build(&shape, targets.len(), &args.source_ips, &secret)?;
    let interval = (args.interval_ms > 0).then(|| Duration::from_millis(args.interval_ms));
    let head = Head {
        run_id,
        shards: vec![args.shard.to_string()],
        targets: args.targets.clone(),
        source_ips: args.source_ips.iter().map(IpAddr::to_string).collect(),
        students: args.students,
        students_per_quiz: args.students_per_quiz,
        proctors_per_quiz: args.proctors_per_quiz,
        quizzes,
        interval_ms: args.interval_ms,
        duration_s: args.duration,
        placement: Head::placement_name(args.placement),
        acks: !args.no_acks,
        students_here: plan.students.len() as u64,
        proctors_here: plan.proctors.len() as u64,
        deadline_hit: false,
    };
    let shared = Arc::new(Shared {
        recorder: report::Recorder::new(quizzes),
        targets,
        interval,
        away_ratio: args.away_ratio,
        statuses_per_question: args.statuses_per_question.max(1),
        acks: !args.no_acks,
        connect_gate: tokio::sync::Semaphore::new(args.connect_concurrency.max(1)),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        connect_retries: args.connect_retries,
    });
    let mut readings = Readings {
        servers: args
            .server_pids
            .iter()
            .map(|&p| procfs::Usage::new(p))
            .collect(),
        redis: args
            .redis_pids
            .iter()
            .map(|&p| procfs::Usage::new(p))
            .collect(),
        loadgen: vec![procfs::Usage::new(std::process::id())],
        machine: procfs::MachineUsage::default(),
    };
    let mut timing = Timing::default();
    let (phase, phases) = watch::channel(Phase::Connect);
    let mut clients = JoinSet::new();
    let deadline = began + hard;
    let run = phases_of_run(
        &args,
        plan,
        &shared,
        &phase,
        phases,
        &mut clients,
        &mut timing,
        &mut readings,
    );
    let deadline_hit = tokio::time::timeout_at(deadline.into(), run).await.is_err();
    if deadline_hit {
        log::warn!("hard deadline of {hard:?} reached: stopping and reporting what there is");
        let end = client::now_ms();
        if timing.connect_end_ms == 0.0 {
            timing.connect_end_ms = end;
        }
        if timing.window_start_ms > 0.0 && timing.window_end_ms == 0.0 {
            timing.window_end_ms = end;
        }
    }
    // Stop every client and give them a moment to close cleanly.
    let _ = phase.send(Phase::Stop);
    let closing = async { while clients.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        clients.abort_all();
    }
    let mut report = shared.recorder.report(head, timing, readings);
    report.head.deadline_hit = deadline_hit;
    print(&report, args.json)?;
    Ok(report)
}

/// Connect proctors, then students, then run the status window and the drain.
#[allow(clippy::too_many_arguments)]
async fn phases_of_run(
    args: &RunArgs,
    plan: Plan,
    shared: &Arc<Shared>,
    phase: &watch::Sender<Phase>,
    phases: watch::Receiver<Phase>,
    clients: &mut JoinSet<()>,
    timing: &mut Timing,
    readings: &mut Readings,
) {
    let rec = &shared.recorder;
    let budget = Instant::now() + Duration::from_secs_f64(args.connect_budget);
    sample_all(readings, |u| &mut u.before);
    // Proctors first: they watch their quiz before any status flows.
    let proctors = plan.proctors.len() as u64;
    for p in plan.proctors {
        clients.spawn(client::proctor(shared.clone(), p, phases.clone()));
    }
    if !settle(|| rec.proctors_ready() >= proctors, budget).await {
        log::warn!("not every proctor subscribed within the connect budget");
    }
    let students = plan.students.len() as u64;
    timing.connect_start_ms = client::now_ms();
    for s in plan.students {
        clients.spawn(client::student(shared.clone(), s, phases.clone()));
    }
    if !settle(|| rec.students_settled() >= students, budget).await {
        log::warn!("not every student connected within the connect budget");
    }
    timing.connect_end_ms = rec.last_settled_ms().unwrap_or_else(client::now_ms);
    sample_all(readings, |u| &mut u.connected);
    // The window opens at the agreed time (all shards together), or after the warm-up: the
    // servers finish what every connect set off (store and directory writes, records) first.
    let now_wall = client::now_ms();
    let wait_ms = args
        .start_at_ms
        .map_or(args.warmup * 1000.0, |at| at as f64 - now_wall)
        .max(0.0);
    if args.start_at_ms.is_some() && wait_ms == 0.0 {
        log::warn!("--start-at-ms had passed when this shard had connected: starting now");
    }
    let start = Instant::now() + Duration::from_secs_f64(wait_ms / 1000.0);
    let end = start + Duration::from_secs_f64(args.duration);
    let _ = phase.send(Phase::Send { start, end });
    tokio::time::sleep_until(start.into()).await;
    timing.window_start_ms = client::now_ms();
    sample_all(readings, |u| &mut u.window_start);
    readings.machine.window_start = procfs::machine();
    tokio::time::sleep_until(end.into()).await;
    timing.window_end_ms = client::now_ms();
    sample_all(readings, |u| &mut u.window_end);
    readings.machine.window_end = procfs::machine();
    // The last statuses of the window are still on their way.
    tokio::time::sleep(Duration::from_millis(args.drain_ms)).await;
}
