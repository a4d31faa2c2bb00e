//! The command line: `invigil serve` runs the server, `invigil token` prints a signed token.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    auth::{self, Claims, Role},
    config::{self, Secret, Settings},
    now_ms,
    protocol::ids::{AttemptId, QuizId},
    records::db::{Db, DbUrl},
    startup::{Application, Backends},
};

#[derive(Parser, Debug)]
#[command(
    name = "invigil",
    version,
    about = "Real-time proctoring server for online exams"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print a signed token (for trying the server out and for scripts).
    Token(TokenArgs),
    /// Apply the record database's migrations (serve also does at start-up).
    Migrate(MigrateArgs),
    /// Manage the DynamoDB status table.
    #[command(subcommand)]
    Dynamodb(DynamoCommand),
    /// Run a server with simulated students taking an exam, and print the dashboard URL.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many simulated students.
    #[arg(long, default_value_t = 30)]
    pub students: usize,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
}

#[derive(Subcommand, Debug)]
pub enum DynamoCommand {
    /// Create the table of dynamodb.table (on-demand capacity) and wait until it is active.
    CreateTable(MigrateArgs),
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Config file (environment variables win).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config file (default: ./config.toml if present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, such as 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Redis URL for cross-instance routing (several instances as one server).
    #[arg(long)]
    pub redis: Option<String>,
    /// Name of this instance in logs, metrics and `welcome` (default: generated).
    #[arg(long)]
    pub instance_id: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Student,
    Proctor,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Config file holding auth.jwt_secret (INVIGIL_JWT_SECRET wins).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// User id (the student_id of a student).
    #[arg(long)]
    pub sub: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Student: the quiz of the attempt.
    #[arg(long)]
    pub quiz: Option<String>,
    /// Student: the attempt.
    #[arg(long)]
    pub attempt: Option<String>,
    /// Proctor: the quizzes it may watch, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub quizzes: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 4 * 3600)]
    pub ttl_secs: u64,
}

/// Settings from the config file and the process environment, with the log filter applied.
fn settings(file: Option<&PathBuf>) -> anyhow::Result<Settings> {
    Settings::load(file.map(|p| p.as_path()), &config::process_environment())
        .context("loading settings")
}

/// Start logging at the configured level (`RUST_LOG` wins when set).
pub fn init_logging(settings: &Settings) {
    let env = env_logger::Env::default().default_filter_or(settings.log.level.clone());
    // A second init (tests) keeps the first logger.
    let _ = env_logger::Builder::from_env(env).try_init();
}

/// Run the command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Token(args) => {
            let settings = settings(args.config.as_ref())?;
            println!("{}", sign(&settings.auth.jwt_secret, &args)?);
            Ok(())
        }
        Command::Demo(args) => demo(args).await,
        Command::Dynamodb(DynamoCommand::CreateTable(args)) => {
            let settings = settings(args.config.as_ref())?;
            let table = &settings.dynamodb.table;
            if table.is_empty() {
                bail!("dynamodb.table is empty: set it in config.toml or INVIGIL_DYNAMODB__TABLE");
            }
            let client = crate::store::dynamodb::client(&settings.dynamodb).await;
            crate::store::dynamodb::create_table(&client, table).await?;
            println!("table {table} is active");
            Ok(())
        }
        Command::Migrate(args) => {
            let settings = settings(args.config.as_ref())?;
            if settings.records.url.is_empty() {
                bail!("records.url is empty: there is no record database to migrate");
            }
            let url = DbUrl::parse(settings.records.url.expose())?;
            let applied = Db::connect(&url)?.migrate()?;
            if applied.is_empty() {
                println!("the record database is up to date");
            }
            for name in applied {
                println!("applied {name}");
            }
            Ok(())
        }
    }
}

fn sign(secret: &Secret, args: &TokenArgs) -> anyhow::Result<String> {
    if secret.is_empty() {
        bail!("no secret configured: set auth.jwt_secret in config.toml or INVIGIL_JWT_SECRET");
    }
    let role = match args.role {
        RoleArg::Student => Role::Student,
        RoleArg::Proctor => Role::Proctor,
    };
    if role == Role::Student && (args.quiz.is_none() || args.attempt.is_none()) {
        bail!("a student token needs --quiz and --attempt");
    }
    if role == Role::Proctor && args.quizzes.is_empty() {
        bail!("a proctor token needs --quizzes q1,q2,...");
    }
    let claims = Claims {
        sub: args.sub.clone(),
        role,
        exp: now_ms() / 1000 + args.ttl_secs,
        quiz_id: args.quiz.as_ref().map(QuizId::new),
        attempt_id: args.attempt.as_ref().map(AttemptId::new),
        name: args.name.clone(),
        quizzes: args.quizzes.iter().map(QuizId::new).collect(),
    };
    Ok(auth::mint(secret, &claims)?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = settings(args.config.as_ref())?;
    if let Some(bind) = args.bind {
        settings.server.bind = bind;
    }
    if let Some(id) = args.instance_id {
        settings.server.instance_id = id;
    }
    if let Some(url) = args.redis {
        settings.redis.url = Secret::new(url);
    }
    init_logging(&settings);
    let generated = settings.auth.jwt_secret.is_empty();
    if generated && !settings.redis.url.is_empty() {
        bail!(
            "instances of a cluster must share the LMS's secret: set auth.jwt_secret or \
             INVIGIL_JWT_SECRET"
        );
    }
    let secret = if generated {
        auth::random_secret()
    } else {
        settings.auth.jwt_secret.clone()
    };
    let backends = Backends::from_settings(&settings).await?;
    if settings.redis.url.is_empty() {
        log::info!("single node: no Redis configured, state kept in memory");
    } else {
        log::info!(
            "clustered through Redis (key prefix {})",
            settings.redis.key_prefix
        );
    }
    let app = Application::build(&settings, &secret, backends)
        .await
        .with_context(|| format!("binding {}", settings.server.bind))?;
    let scheme = if settings.server.tls_cert_file.is_empty() {
        "http"
    } else {
        "https"
    };
    log::info!(
        "invigil {} listening on {scheme}://{} as instance {}",
        env!("CARGO_PKG_VERSION"),
        app.addr(),
        app.instance()
    );
    if generated {
        welcome_newcomer(&secret, &app)?;
    }
    serve_until_signal(app).await
}

/// A single node with its own secret, in-memory state and simulated students.
async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut settings = Settings::defaults();
    settings.server.bind = args.bind;
    // The demo keeps nothing: no records to write.
    settings.records.url = Secret::new("");
    init_logging(&settings);
    let secret = auth::random_secret();
    let app = Application::build(&settings, &secret, Backends::single_node())
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    crate::demo::start_students(app.addr(), &secret, args.students)?;
    let proctor = first_look(&secret, RoleArg::Proctor, "Demo Proctor", None)?;
    log::info!("invigil demo listening on http://{}", app.addr());
    println!(
        "{} simulated students are taking quiz \"{}\". Open the dashboard:\n  http://{}/?token={proctor}",
        args.students,
        crate::demo::QUIZ,
        app.addr()
    );
    serve_until_signal(app).await
}

/// A 12-hour token of quiz `demo`, for a first look: a proctor's, or a student's of
/// `attempt`.
fn first_look(
    secret: &Secret,
    role: RoleArg,
    name: &str,
    attempt: Option<&str>,
) -> anyhow::Result<String> {
    let quiz = crate::demo::QUIZ.to_string();
    let student = matches!(role, RoleArg::Student);
    sign(
        secret,
        &TokenArgs {
            config: None,
            role,
            sub: if student { "student-1" } else { "proctor" }.into(),
            name: Some(name.into()),
            quiz: student.then(|| quiz.clone()),
            attempt: attempt.map(str::to_string),
            quizzes: if student { Vec::new() } else { vec![quiz] },
            ttl_secs: 12 * 3600,
        },
    )
}

/// With no secret configured, print tokens for a first look.
fn welcome_newcomer(secret: &Secret, app: &Application) -> anyhow::Result<()> {
    let proctor = first_look(secret, RoleArg::Proctor, "Proctor", None)?;
    let student = first_look(secret, RoleArg::Student, "Demo Student", Some("attempt-1"))?;
    log::warn!("no auth.jwt_secret configured: using a random secret for this run only");
    let base = format!("http://{}", app.addr());
    println!("No JWT secret configured: this run signs with a random one.");
    println!("Proctor dashboard (quiz \"demo\"):\n  {base}/?token={proctor}");
    println!("Demo exam page (a student of quiz \"demo\"):\n  {base}/demo?token={student}");
    Ok(())
}

/// Serve until SIGTERM or SIGINT, then drain and return.
async fn serve_until_signal(app: Application) -> anyhow::Result<()> {
    let drainer = app.drainer();
    actix_rt::spawn(async move {
        wait_for_signal().await;
        drainer.drain().await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => log::info!("SIGTERM: draining"),
                    _ = int.recv() => log::info!("SIGINT: draining"),
                }
            }
            _ => {
                log::error!("cannot listen for signals; the server will not drain on SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_rt::signal::ctrl_c().await;
    }
}
