//! Endpoints for load balancers and monitoring: `/healthz`, `/readyz`, `/metrics`.

use actix_web::{web, HttpResponse};

use super::AppState;

/// 200 while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// 200 while the server takes connections; 503 while it drains or is cut off from the cluster.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let not_ready = if state.is_draining() {
        Some("draining\n")
    } else if !state.bridge.is_healthy() {
        Some("cut off from the cluster bridge\n")
    } else {
        None
    };
    match not_ready {
        Some(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(why),
        None => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
    }
}

/// The Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
