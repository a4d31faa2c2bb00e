//! Graceful drain: readyz 503, new sockets refused, open ones closed with 1012, then stop.

use crate::helpers::*;

#[actix_rt::test]
async fn a_drain_refuses_new_sockets_and_closes_the_open_ones_with_1012() {
    init_logs();
    let app = spawn_app_with(|s| s.server.drain_delay_ms = 400).await;
    let mut student = app.student("q1", "a1", "s1").await;
    let mut proctor = app.proctor(&["q1"]).await;
    let drainer = app.drainer.clone();
    let drained = actix_rt::spawn(async move { drainer.drain().await });
    // During the drain delay: not ready, and no new sockets.
    let (code, body) = get(&app.http("/readyz"), None).await;
    assert_eq!((code, body.trim()), (503, "draining"));
    assert_eq!(
        app.try_connect(&format!("?token={}", proctor_token(&["q1"])), None)
            .await
            .err(),
        Some(503)
    );
    assert_eq!(get(&app.http("/healthz"), None).await.0, 200);
    assert_eq!(u16::from(student.closed().await.code), 1012);
    assert_eq!(u16::from(proctor.closed().await.code), 1012);
    tokio::time::timeout(WAIT, drained)
        .await
        .expect("the drain finishes")
        .unwrap();
}
