//! The HTTP API for the LMS backend (API key) and proctors (their JWT):
//! `GET /api/v1/quizzes/{quiz_id}/students` and `POST /api/v1/quizzes/{quiz_id}/messages`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{credential, ApiError, AppState};
use crate::{
    auth::{AuthError, Identity},
    now_ms,
    protocol::{ids::QuizId, inbound::MAX_TEXT_BYTES, outbound, MessageKind},
    registry::{BroadcastToQuiz, MessageRecord},
};

/// Who is calling, once allowed for the quiz.
pub(super) enum Caller {
    Lms,
    Proctor { name: String },
}

/// The API key, or a proctor token that lists `quiz`.
pub(super) fn authorize(
    req: &HttpRequest,
    state: &AppState,
    quiz: &QuizId,
) -> Result<Caller, ApiError> {
    state.gate.check_origin(req)?;
    let presented = credential(req).ok_or(AuthError::Missing)?;
    if state.api_key.matches(&presented) {
        return Ok(Caller::Lms);
    }
    match state.verifier.verify(&presented)? {
        Identity::Proctor(p) if p.quizzes.contains(quiz) => Ok(Caller::Proctor {
            name: p.display_name().to_string(),
        }),
        Identity::Proctor(_) => Err(ApiError::Forbidden(format!(
            "quiz {quiz} is not in this token's quizzes"
        ))),
        Identity::Student(_) => Err(ApiError::Forbidden(
            "students may not use this endpoint".into(),
        )),
    }
}

/// The latest status of every attempt of the quiz, as in a snapshot.
pub async fn students(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quiz = QuizId::new(path.into_inner());
    authorize(&req, &state, &quiz)?;
    let students = state
        .store
        .quiz(&quiz)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(outbound::Students::listing(
        &quiz,
        students.iter().map(|s| &**s),
    )))
}

#[derive(Deserialize)]
struct Broadcast {
    kind: String,
    text: String,
}

/// A chat line or warning to every student of the quiz, on every instance.
pub async fn messages(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quiz = QuizId::new(path.into_inner());
    let caller = authorize(&req, &state, &quiz)?;
    let msg: Broadcast = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("body must be {{\"kind\",\"text\"}} JSON: {e}")))?;
    let kind = MessageKind::parse(&msg.kind)
        .ok_or_else(|| ApiError::Invalid("kind must be chat or warning".into()))?;
    if msg.text.trim().is_empty() || msg.text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::Invalid(format!(
            "text must be non-empty and at most {MAX_TEXT_BYTES} bytes"
        )));
    }
    let from = match &caller {
        Caller::Lms => "LMS",
        Caller::Proctor { name } => name,
    };
    let at = now_ms();
    let frame = outbound::proctor_message(kind, from, &msg.text, at);
    let record = MessageRecord {
        kind,
        author: from.to_string(),
        text: msg.text,
        at,
    };
    let delivered_here = state
        .registry
        .send(BroadcastToQuiz {
            quiz: quiz.clone(),
            frame,
            record,
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("routing unavailable: {e}")))?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "quiz_id": quiz,
        "delivered_here": delivered_here,
    })))
}
