//! Endpoints for load balancers and monitoring: `/healthz`, `/readyz`, `/metrics`.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

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

/// The Prometheus text exposition; with `auth.metrics_token` set, for its bearer only.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(token) = &state.metrics_token {
        if !super::bearer(&req).is_some_and(|p| token.matches(p)) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\""))
                .content_type("text/plain")
                .body("/metrics needs auth.metrics_token as Authorization: Bearer\n");
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
