//! `spawn_app()` and a WebSocket test client: the public surface, on port 0.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use invigil::{
    auth::{mint, Claims, Role},
    bridge::{Bridge, MemoryHub},
    config::{Secret, Settings},
    protocol::ids::{AttemptId, InstanceId, QuizId},
    startup::{Application, Backends, Drainer},
    store::{MemoryStore, StatusStore},
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{self, client::IntoClientRequest, protocol::CloseFrame, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long a test waits for any one event before failing.
pub const WAIT: Duration = Duration::from_secs(5);

pub const SECRET: &str = "test-secret-of-the-lms";
pub const API_KEY: &str = "test-api-key-of-the-lms";

#[derive(Clone)]
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub instance: InstanceId,
    pub drainer: Drainer,
}

/// Settings for tests: the defaults with a known API key and any changes of `tweak`.
pub fn settings(tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::defaults();
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.server.workers = 1;
    s.server.drain_timeout_ms = 2000;
    s.auth.api_key = Secret::new(API_KEY);
    tweak(&mut s);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on(settings(tweak), Backends::single_node()).await
}

/// Several instances in one process, sharing a hub and a store as a cluster shares Redis.
pub async fn spawn_cluster(n: usize) -> (Vec<TestApp>, Arc<MemoryHub>) {
    let hub = MemoryHub::new();
    let store: Arc<dyn StatusStore> = Arc::new(MemoryStore::new());
    let mut apps = Vec::new();
    for i in 0..n {
        let bridge: Arc<dyn Bridge> = Arc::new(hub.bridge());
        let backends = Backends {
            store: store.clone(),
            bridge,
            metrics: Default::default(),
            records: None,
        };
        let s = settings(|s| s.server.instance_id = format!("node-{i}"));
        apps.push(spawn_on(s, backends).await);
    }
    (apps, hub)
}

async fn spawn_on(settings: Settings, backends: Backends) -> TestApp {
    let app = Application::build(&settings, &Secret::new(SECRET), backends)
        .await
        .expect("the test server binds");
    let test = TestApp {
        addr: app.addr(),
        instance: app.instance().clone(),
        drainer: app.drainer(),
    };
    actix_rt::spawn(app.run_until_stopped());
    test
}

fn far_exp() -> u64 {
    invigil::now_ms() / 1000 + 3600
}

pub fn student_token(quiz: &str, attempt: &str, sub: &str) -> String {
    mint(
        &Secret::new(SECRET),
        &Claims {
            sub: sub.into(),
            role: Role::Student,
            exp: far_exp(),
            quiz_id: Some(QuizId::new(quiz)),
            attempt_id: Some(AttemptId::new(attempt)),
            name: Some(format!("Student {sub}")),
            quizzes: vec![],
        },
    )
    .unwrap()
}

pub fn proctor_token(quizzes: &[&str]) -> String {
    mint(
        &Secret::new(SECRET),
        &Claims {
            sub: "p1".into(),
            role: Role::Proctor,
            exp: far_exp(),
            quiz_id: None,
            attempt_id: None,
            name: Some("Ms Proctor".into()),
            quizzes: quizzes.iter().map(QuizId::new).collect(),
        },
    )
    .unwrap()
}

/// A student status as an exam page sends it.
pub fn status(quiz: &str, attempt: &str, sub: &str, user_status: &str, id: Value) -> Value {
    json!({
        "type": "message_to_master",
        "id": id,
        "message": {"action": "lmsQuizMonitoringStudent", "data": {
            "quiz_id": quiz, "quiz_attempt_id": attempt, "student_id": sub,
            "user_status": user_status, "question_answered": 3, "question_total": 40,
            "question_number_current": 4, "score": null, "student_name": "Ann"
        }}
    })
}

/// A server the tests talk to: one in this process ([`TestApp`]) or a process ([`Server`]).
#[allow(async_fn_in_trait)]
pub trait Endpoint {
    /// `host:port` of the server.
    fn host(&self) -> String;

    fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.host(), path)
    }

    /// Open a socket with `token` in the query; panics if the upgrade is refused.
    async fn connect(&self, token: &str) -> Client {
        let url = format!("ws://{}/ws?token={token}", self.host());
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade accepted");
        Client { ws }
    }

    /// A connected student, its `welcome` read.
    async fn student(&self, quiz: &str, attempt: &str, sub: &str) -> Client {
        let mut c = self.connect(&student_token(quiz, attempt, sub)).await;
        assert_eq!(c.recv().await["type"], "welcome");
        c
    }

    /// A connected proctor of `quizzes`, its `welcome` read.
    async fn proctor(&self, quizzes: &[&str]) -> Client {
        let mut c = self.connect(&proctor_token(quizzes)).await;
        assert_eq!(c.recv().await["type"], "welcome");
        c
    }

    /// A proctor subscribed to `quiz`, its ack and snapshot read; returns the snapshot.
    async fn watching(&self, quiz: &str) -> (Client, Value) {
        let mut p = self.proctor(&[quiz]).await;
        p.send(json!({"type": "subscribe", "quiz_id": quiz, "id": "sub"}))
            .await;
        assert_eq!(p.recv().await, json!({"type": "ack", "id": "sub"}));
        let snapshot = p.recv().await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        (p, snapshot)
    }
}

impl Endpoint for TestApp {
    fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Endpoint for Server {
    fn host(&self) -> String {
        self.addr.clone()
    }
}

impl TestApp {
    /// Try to open a socket; the HTTP status of a refused upgrade.
    pub async fn try_connect(&self, url_tail: &str, bearer: Option<&str>) -> Result<Client, u16> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.try_connect_with(url_tail, &headers).await
    }

    /// Try to open a socket with extra request headers.
    pub async fn try_connect_with(
        &self,
        url_tail: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let mut req = format!("ws://{}/ws{url_tail}", self.addr)
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            let name: tungstenite::http::HeaderName = name.parse().unwrap();
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("socket open for sending");
    }

    /// The next text frame as it arrived (pings and pongs are skipped).
    pub async fn recv_text(&mut self) -> String {
        self.recv_text_within(WAIT)
            .await
            .expect("a message within the wait")
    }

    /// The next text frame if one comes within `wait`.
    pub async fn recv_text_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?
                .expect("socket still open")
                .expect("no socket error");
            match msg {
                Message::Text(t) => return Some(t.to_string()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, parsed.
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).expect("server frames are JSON")
    }

    /// The next message of `kind`, skipping others (for tests that only care about one kind).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Read until the server closes; the close frame.
    pub async fn closed(&mut self) -> CloseFrame {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the server closes within the wait");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => return frame,
                Some(Ok(Message::Close(None))) => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before the close frame: {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `count` progress-only statuses of q1/a1 (student s1), one every 100 ms, each acknowledged.
pub async fn report_progress(student: &mut Client, count: u64) {
    let started = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((started + Duration::from_millis(100 * i)).into()).await;
        let mut m = status("q1", "a1", "s1", "active", json!(i));
        m["message"]["data"]["question_answered"] = json!(i);
        student.send(m).await;
        student.recv().await;
    }
}

/// Run a command to its end; its output, or a panic with its stderr if it failed.
pub fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A GET with an optional bearer credential.
pub async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = awc::Client::default().get(url);
    if let Some(b) = bearer {
        req = req.insert_header(("Authorization", format!("Bearer {b}")));
    }
    let mut resp = req.send().await.expect("HTTP request");
    let body = resp.body().await.expect("HTTP body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A POST of a JSON body with an optional bearer credential.
pub async fn post(url: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    let mut req = awc::Client::default()
        .post(url)
        .insert_header(("Content-Type", "application/json"));
    if let Some(b) = bearer {
        req = req.insert_header(("Authorization", format!("Bearer {b}")));
    }
    let mut resp = req.send_body(body.to_string()).await.expect("HTTP request");
    let body = resp.body().await.expect("HTTP body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Logs of the server under test, when RUST_LOG asks for them.
pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A new empty directory under the system's temporary directory.
pub fn fresh_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("invigil-{what}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_invigil");

/// A server process of the built binary, killed when dropped.
pub struct Server {
    pub child: Child,
    /// The server's log lines, printed if the test fails.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    pub addr: String,
    pub stdout: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(lines) = self.log.lock() {
                eprintln!("--- log of the server at {} ---", self.addr);
                for line in lines.iter() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Server {
    /// `invigil serve --bind 127.0.0.1:0` with `env`; waits for its address in the log.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Self::start_in(&fresh_dir("server"), env)
    }

    /// The same, with `dir` as the working directory (where the default records live).
    pub fn start_in(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env_remove("INVIGIL_JWT_SECRET")
            .env("RUST_LOG", "info,invigil=debug")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the binary starts");
        let (tx, rx) = mpsc::channel();
        let (log_tx, log_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line.clone());
                }
                let _ = log_tx.send(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let line = log_rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server logs its address");
            if let Some(rest) = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1))
            {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        Server {
            child,
            log,
            addr,
            stdout: rx,
        }
    }

    /// The value of one metric line (`name{labels}`), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = get(&self.http("/metrics"), None).await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Wait until `/readyz` answers `code`.
    pub async fn wait_ready(&self, code: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if get(&self.http("/readyz"), None).await.0 == code {
                return;
            }
            assert!(Instant::now() < deadline, "readyz never answered {code}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM: the server drains (1012 to every socket) and exits.
    pub fn sigterm(&self) {
        succeed(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
    }

    /// SIGKILL: the process dies without a word.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA (`ca.crt`) and a certificate for 127.0.0.1 signed by it (`server.crt`,
/// `server.key`), made with openssl in `dir`.
pub fn make_certificate(dir: &std::path::Path) {
    let script = r#"openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj "/CN=invigil test CA" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
        printf "subjectAltName=IP:127.0.0.1\n" > san.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile san.ext 2>/dev/null"#;
    succeed(Command::new("bash").args(["-ec", script]).current_dir(dir));
}

/// How long an outage of a fault scenario lasts at least: 0 in the test suite (as long as its
/// traffic takes), longer from `scripts/chaos.sh` (`INVIGIL_CHAOS_OUTAGE_SECS`).
pub fn chaos_outage() -> Duration {
    Duration::from_secs(
        std::env::var("INVIGIL_CHAOS_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    )
}

/// How much bigger the fault scenarios run: 1 in the test suite, more from
/// `scripts/chaos.sh` (`INVIGIL_CHAOS_SCALE`).
pub fn chaos_scale() -> usize {
    std::env::var("INVIGIL_CHAOS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .clamp(1, 100)
}
