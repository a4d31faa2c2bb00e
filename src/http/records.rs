//! Incident review over HTTP, for the LMS backend (API key) and a quiz's proctors (JWT):
//! `GET /api/v1/quizzes/{quiz_id}/events` and `GET /api/v1/quizzes/{quiz_id}/report`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{api::authorize, ApiError, AppState};
use crate::{
    protocol::ids::QuizId,
    records::{
        db::{AttemptRow, EventQuery, Read},
        RecordEvent,
    },
};

/// Most events one request returns.
const MAX_EVENTS: i64 = 10_000;

#[derive(Deserialize)]
pub struct EventsQuery {
    attempt_id: Option<String>,
    /// ms since epoch, inclusive.
    since: Option<i64>,
    /// ms since epoch, exclusive.
    until: Option<i64>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    limit: Option<i64>,
}

fn reader(state: &AppState) -> Result<&actix::Addr<crate::records::db::DbReader>, ApiError> {
    state.records.as_ref().ok_or_else(|| {
        ApiError::NotFound("this server keeps no records (records.url is empty)".into())
    })
}

async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl Fn(&mut crate::records::db::Db) -> Result<T, crate::records::db::DbError> + Send + 'static,
) -> Result<T, ApiError> {
    reader(state)?
        .send(Read(Box::new(f)))
        .await
        .map_err(|e| ApiError::Unavailable(format!("record reader unavailable: {e}")))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// The event log of a quiz, oldest first.
pub async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quiz = QuizId::new(path.into_inner());
    authorize(&req, &state, &quiz)?;
    let q = query.into_inner();
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "format must be json or csv, not {other}"
            )))
        }
    };
    let filter = EventQuery {
        quiz: quiz.to_string(),
        attempt: q.attempt_id,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS),
    };
    let events = read(&state, move |db| db.events(&filter)).await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(events_csv(&events)));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "quiz_id": quiz, "events": events })))
}

/// Per attempt: away count, time away, disconnects, score.
pub async fn report(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quiz = QuizId::new(path.into_inner());
    authorize(&req, &state, &quiz)?;
    let owned = quiz.to_string();
    let rows = read(&state, move |db| db.attempts(&owned)).await?;
    #[derive(Serialize)]
    struct Report<'a> {
        quiz_id: &'a QuizId,
        attempts: Vec<ReportRow<'a>>,
    }
    #[derive(Serialize)]
    struct ReportRow<'a> {
        #[serde(flatten)]
        row: &'a AttemptRow,
        /// Time away including an away interval still open now.
        time_away_ms: i64,
        score: serde_json::Value,
    }
    let now = crate::now_ms() as i64;
    let attempts = rows
        .iter()
        .map(|row| ReportRow {
            row,
            time_away_ms: row.total_away_ms + row.away_since.map_or(0, |s| (now - s).max(0)),
            score: row
                .final_score
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Report {
        quiz_id: &quiz,
        attempts,
    }))
}

/// RFC 4180 CSV: a header, then one line per event; `detail` stays JSON.
fn events_csv(events: &[RecordEvent]) -> String {
    fn field(out: &mut String, value: &str) {
        if value.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&value.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(value);
        }
    }
    let mut out = String::from(
        "event_id,server_time,quiz_id,attempt_id,student_id,kind,detail,instance_id\r\n",
    );
    for e in events {
        let time = e.server_time.to_string();
        let detail = e.detail.to_string();
        let fields = [
            e.event_id.as_str(),
            &time,
            &e.quiz_id,
            &e.attempt_id,
            e.student_id.as_deref().unwrap_or(""),
            e.kind.as_str(),
            &detail,
            &e.instance_id,
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, f);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::EventKind;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let e = RecordEvent {
            event_id: "e1".into(),
            quiz_id: "q1".into(),
            attempt_id: "a1".into(),
            student_id: None,
            kind: EventKind::StudentMessage,
            detail: serde_json::json!({"text": "hi, \"you\""}),
            server_time: 5,
            instance_id: "i".into(),
        };
        let csv = events_csv(&[e]);
        let line = csv.lines().nth(1).unwrap();
        assert_eq!(
            line,
            r#"e1,5,q1,a1,,student_message,"{""text"":""hi, \""you\"""",""}",i"#
                .replace(r#",""}""#, r#"}""#)
        );
    }
}
