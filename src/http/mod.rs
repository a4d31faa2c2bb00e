//! The HTTP surface: the WebSocket upgrade, the operations endpoints, the LMS API and the
//! embedded web assets. Errors are one type, [`ApiError`], mapped to answers in one place.

mod api;
mod assets;
pub mod client_ip;
mod ops;
mod records;
mod ws;

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

use actix::Addr;
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use crate::{
    auth::{ApiKey, AuthError, Verifier},
    bridge::Bridge,
    metrics::Metrics,
    records::db::DbReader,
    registry::SessionRegistry,
    session::SessionContext,
    store::StatusStore,
};

/// What every handler shares.
pub struct AppState {
    pub verifier: Verifier,
    pub api_key: ApiKey,
    /// `/metrics` asks for this when set.
    pub metrics_token: Option<ApiKey>,
    pub registry: Addr<SessionRegistry>,
    pub store: Arc<dyn StatusStore>,
    pub bridge: Arc<dyn Bridge>,
    pub sessions: Arc<SessionContext>,
    pub metrics: Arc<Metrics>,
    /// Set when the drain starts; never cleared.
    pub draining: Arc<AtomicBool>,
    /// Upgraded connections whose transport is still open (see `ws::TransportGuard`).
    pub transports: Arc<AtomicUsize>,
    /// The record database's reader, when records are kept.
    pub records: Option<Addr<DbReader>>,
    /// Who may connect, how many, how fast.
    pub gate: Gate,
}

/// The limits checked before an upgrade, and the browser origins allowed.
pub struct Gate {
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<client_ip::Cidr>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Handshakes per second, when limited.
    pub handshakes: Option<std::sync::Mutex<crate::session::RateLimiter>>,
    pub per_ip: Arc<client_ip::IpCounts>,
}

impl Gate {
    pub fn new(
        server: &crate::config::ServerSettings,
        limits: &crate::config::LimitSettings,
    ) -> Self {
        Gate {
            allowed_origins: server.allowed_origins.clone(),
            trusted_proxies: server
                .trusted_proxies
                .iter()
                .filter_map(|c| client_ip::Cidr::parse(c))
                .collect(),
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            handshakes: (limits.handshakes_per_second > 0.0).then(|| {
                std::sync::Mutex::new(crate::session::RateLimiter::new(
                    limits.handshakes_per_second,
                    limits.handshakes_per_second.max(1.0),
                ))
            }),
            per_ip: Arc::default(),
        }
    }

    /// A browser request from an origin not on the list is refused.
    pub fn check_origin(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if self.allowed_origins.is_empty() {
            return Ok(());
        }
        match req.headers().get(actix_web::http::header::ORIGIN) {
            None => Ok(()),
            Some(origin) => {
                let origin = origin.to_str().unwrap_or("");
                if self.allowed_origins.iter().any(|o| o == origin) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(format!(
                        "origin {origin:?} is not allowed (server.allowed_origins)"
                    )))
                }
            }
        }
    }

    /// One more handshake within the rate.
    pub fn admit_handshake(&self) -> bool {
        match &self.handshakes {
            // A poisoned lock (a panic elsewhere) admits rather than refuse everyone.
            Some(bucket) => bucket.lock().map(|mut b| b.allow()).unwrap_or(true),
            None => true,
        }
    }
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Every route of the server.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws::upgrade))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route(
            "/api/v1/quizzes/{quiz_id}/students",
            web::get().to(api::students),
        )
        .route(
            "/api/v1/quizzes/{quiz_id}/messages",
            web::post().to(api::messages),
        )
        .route(
            "/api/v1/quizzes/{quiz_id}/events",
            web::get().to(records::events),
        )
        .route(
            "/api/v1/quizzes/{quiz_id}/report",
            web::get().to(records::report),
        )
        .route("/", web::get().to(assets::dashboard))
        .route("/demo", web::get().to(assets::demo))
        .route("/static/{name}", web::get().to(assets::file))
        .default_service(web::to(not_found));
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// An HTTP answer other than success, with a JSON body `{"error":{"code","message"}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooMany(String),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Invalid(_) => "invalid_message",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooMany(_) => "rate_limited",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            answer.insert_header(("WWW-Authenticate", "Bearer"));
        }
        answer.json(serde_json::json!({
            "error": {"code": self.code(), "message": self.to_string()}
        }))
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The credential of `Authorization: Bearer X`, if the request has one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The credential of a request: `Authorization: Bearer X`, else `?token=X`.
pub fn credential(req: &HttpRequest) -> Option<String> {
    bearer(req).map(str::to_string).or_else(|| {
        web::Query::<TokenQuery>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().token)
    })
}
