//! The built binary as an operator runs it: `token`, `serve`, SIGTERM.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::helpers::*;

fn token(args: &[&str]) -> String {
    let out = succeed(
        Command::new(BIN)
            .arg("token")
            .args(args)
            .env("INVIGIL_JWT_SECRET", SECRET)
            .current_dir(std::env::temp_dir()),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[actix_rt::test]
async fn sigterm_closes_sockets_with_1012_and_exits_zero() {
    let mut server = Server::start(&[("INVIGIL_JWT_SECRET", SECRET)]);
    let ws = format!("ws://{}/ws?token=", server.addr);
    let student = token(&[
        "--role",
        "student",
        "--sub",
        "s1",
        "--quiz",
        "q1",
        "--attempt",
        "a1",
    ]);
    let (c, _) = tokio_tungstenite::connect_async(format!("{ws}{student}"))
        .await
        .expect("a token from `invigil token` is accepted");
    let mut c = Client { ws: c };
    assert_eq!(c.recv().await["type"], "welcome");
    server.sigterm();
    assert_eq!(u16::from(c.closed().await.code), 1012);
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the server exits after the drain"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
}

#[actix_rt::test]
async fn with_no_secret_serve_prints_a_proctor_token_that_works() {
    let server = Server::start(&[]);
    let deadline = Instant::now() + WAIT;
    let url = loop {
        let line = server
            .stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a dashboard URL is printed");
        if line.trim_start().starts_with("http://") && line.contains("/?token=") {
            break line.trim().to_string();
        }
    };
    let token = url.split("token=").nth(1).unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token={token}", server.addr))
            .await
            .expect("the printed token is accepted");
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"role\":\"proctor\""));
}

#[test]
fn bad_config_is_refused_with_a_clear_error() {
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("INVIGIL_HEARTBEAT__INTERVAL_MS", "often")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interval_ms"), "{err}");
    let out = Command::new(BIN)
        .args([
            "token",
            "--role",
            "proctor",
            "--sub",
            "p",
            "--quizzes",
            "q1",
        ])
        .env_remove("INVIGIL_JWT_SECRET")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret configured"));
}

#[actix_rt::test]
async fn a_standalone_server_speaks_tls() {
    let dir = fresh_dir("tls");
    make_certificate(&dir);
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let server = Server::start_in(
        &dir,
        &[
            ("INVIGIL_JWT_SECRET", SECRET),
            ("INVIGIL_SERVER__TLS_CERT_FILE", cert.to_str().unwrap()),
            ("INVIGIL_SERVER__TLS_KEY_FILE", key.to_str().unwrap()),
        ],
    );
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "5", "--cacert"])
            .arg(dir.join("ca.crt"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let health = curl(&["--http1.1", &format!("https://{}/healthz", server.addr)]);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The WebSocket upgrade over TLS (wss://) answers 101.
    let token = proctor_token(&["q1"]);
    let upgrade = curl(&[
        "--http1.1",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        &format!("https://{}/ws?token={token}", server.addr),
    ]);
    assert!(upgrade.starts_with("HTTP/1.1 101"), "{upgrade}");
    // Plain HTTP is not served on the TLS port.
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("http://{}/healthz", server.addr))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_rt::test]
async fn the_demo_fills_the_dashboard_with_simulated_students() {
    let mut child = Command::new(BIN)
        .args(["demo", "--students", "6", "--bind", "127.0.0.1:0"])
        .current_dir(fresh_dir("demo"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("the demo prints its dashboard URL");
        if line.trim_start().starts_with("http://") {
            break line.trim().to_string();
        }
    };
    let (addr, token) = url
        .trim_start_matches("http://")
        .split_once("/?token=")
        .unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .unwrap();
    let mut proctor = Client { ws };
    assert_eq!(proctor.recv().await["type"], "welcome");
    // Every simulated student shows up (they arrive over three seconds).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        proctor
            .send(serde_json::json!({"type": "subscribe", "quiz_id": "demo"}))
            .await;
        let snapshot = proctor.recv_type("snapshot").await;
        let students = snapshot["students"].as_array().unwrap();
        if students.len() == 6 {
            assert!(students
                .iter()
                .all(|s| s["student_name"].as_str().is_some()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "6 students within 15 s: {snapshot}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_port_in_use_is_a_clear_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--bind", &addr])
        .env("INVIGIL_JWT_SECRET", SECRET)
        .current_dir(fresh_dir("taken"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
