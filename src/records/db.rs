//! The record database: one connection to SQLite or PostgreSQL, with every read and write the
//! records need, as blocking calls for the persistence threads ([`DbWriter`], [`DbReader`]).

use std::{path::PathBuf, sync::Arc, time::Instant};

use actix::prelude::*;
use diesel::{
    connection::SimpleConnection, pg::PgConnection, prelude::*, sqlite::SqliteConnection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::Serialize;

use super::{schema::attempts, schema::events, EventKind, RecordEvent};
use crate::protocol::{
    ids::{AttemptId, AttemptKey, QuizId},
    status::StatusRecord,
};

/// The migrations of `migrations/`, built into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Why the record database did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("record database: {0}")]
pub struct DbError(pub String);

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        DbError(e.to_string())
    }
}

impl From<diesel::ConnectionError> for DbError {
    fn from(e: diesel::ConnectionError) -> Self {
        DbError(e.to_string())
    }
}

/// Where the records live, from `records.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DbUrl {
    /// `sqlite://PATH` (relative to the working directory, or absolute), or
    /// `postgres://...` / `postgresql://...`.
    pub fn parse(url: &str) -> Result<DbUrl, DbError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbError("sqlite:// needs a file path".into()));
            }
            Ok(DbUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // A database that does not answer must not hang start-up or the writer forever.
            let url = if url.contains("connect_timeout=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&connect_timeout=5")
            } else {
                format!("{url}?connect_timeout=5")
            };
            Ok(DbUrl::Postgres(url))
        } else {
            Err(DbError(
                "records.url must start with sqlite:// or postgres://".into(),
            ))
        }
    }
}

/// Rows one statement writes at most: 16 columns each stays under every backend's limit of
/// bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// An open connection.
pub enum Db {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Run the same diesel code on whichever backend the connection is.
macro_rules! on {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            Db::Postgres($c) => $body,
            Db::Sqlite($c) => $body,
        }
    };
}

/// A row of `attempts`.
#[derive(Debug, Clone, PartialEq, Queryable, Insertable, Serialize)]
#[diesel(table_name = attempts, treat_none_as_default_value = false)]
pub struct AttemptRow {
    pub quiz_id: String,
    pub attempt_id: String,
    pub student_id: String,
    pub student_name: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub last_status: String,
    pub connected: bool,
    pub away_count: i64,
    #[serde(skip)]
    pub away_since: Option<i64>,
    pub total_away_ms: i64,
    pub disconnect_count: i64,
    pub final_score: Option<String>,
    pub submitted_at: Option<i64>,
    #[serde(skip)]
    pub seq: i64,
    #[serde(skip)]
    pub status_json: Option<String>,
}

impl AttemptRow {
    fn new(quiz: &str, attempt: &str, student: Option<&str>, at: i64) -> Self {
        AttemptRow {
            quiz_id: quiz.to_string(),
            attempt_id: attempt.to_string(),
            student_id: student.unwrap_or_default().to_string(),
            student_name: None,
            first_seen: at,
            last_seen: at,
            last_status: "active".into(),
            connected: false,
            away_count: 0,
            away_since: None,
            total_away_ms: 0,
            disconnect_count: 0,
            final_score: None,
            submitted_at: None,
            seq: 0,
            status_json: None,
        }
    }

    /// Close an open away interval at `at`.
    fn end_away(&mut self, at: i64) {
        if let Some(since) = self.away_since.take() {
            self.total_away_ms += (at - since).max(0);
        }
    }

    /// Count one event into the row.
    fn apply(&mut self, e: &RecordEvent) {
        let at = e.server_time as i64;
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        if self.student_id.is_empty() {
            if let Some(s) = &e.student_id {
                self.student_id = s.clone();
            }
        }
        match e.kind {
            EventKind::Connected => self.connected = true,
            EventKind::Disconnected => {
                self.connected = false;
                self.disconnect_count += 1;
                self.end_away(at);
            }
            EventKind::Away => {
                self.away_count += 1;
                self.away_since.get_or_insert(at);
                self.last_status = "away".into();
            }
            EventKind::Back => {
                self.end_away(at);
                self.last_status = "active".into();
            }
            EventKind::StatusChange => {
                if let Some(to) = e.detail["to"].as_str() {
                    self.last_status = to.to_string();
                }
                self.end_away(at);
            }
            EventKind::Submitted => {
                self.final_score = Some(e.detail["score"].to_string());
                self.submitted_at = Some(at);
            }
            EventKind::QuestionChange | EventKind::ProctorMessage | EventKind::StudentMessage => {}
        }
    }
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
struct EventRow {
    event_id: String,
    quiz_id: String,
    attempt_id: String,
    student_id: Option<String>,
    kind: String,
    detail: String,
    server_time: i64,
    instance_id: String,
}

impl From<&RecordEvent> for EventRow {
    fn from(e: &RecordEvent) -> Self {
        EventRow {
            event_id: e.event_id.clone(),
            quiz_id: e.quiz_id.clone(),
            attempt_id: e.attempt_id.clone(),
            student_id: e.student_id.clone(),
            kind: e.kind.as_str().to_string(),
            detail: e.detail.to_string(),
            server_time: e.server_time as i64,
            instance_id: e.instance_id.clone(),
        }
    }
}

impl EventRow {
    fn into_event(self) -> RecordEvent {
        RecordEvent {
            kind: EventKind::parse(&self.kind).unwrap_or(EventKind::StatusChange),
            detail: serde_json::from_str(&self.detail).unwrap_or(serde_json::Value::Null),
            event_id: self.event_id,
            quiz_id: self.quiz_id,
            attempt_id: self.attempt_id,
            student_id: self.student_id,
            server_time: self.server_time.max(0) as u64,
            instance_id: self.instance_id,
        }
    }
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub quiz: String,
    pub attempt: Option<String>,
    /// Server time from (inclusive), ms.
    pub since: Option<i64>,
    /// Server time until (exclusive), ms.
    pub until: Option<i64>,
    pub limit: i64,
}

impl Db {
    /// Open the database (creating an SQLite file and its folder if needed).
    pub fn connect(url: &DbUrl) -> Result<Db, DbError> {
        match url {
            DbUrl::Postgres(url) => Ok(Db::Postgres(PgConnection::establish(url)?)),
            DbUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| DbError(format!("{}: {e}", dir.display())))?;
                }
                let path = path.to_string_lossy();
                let mut conn = SqliteConnection::establish(&path)?;
                // WAL lets the reader and the writer work at once; the timeout rides out the
                // moments one holds the lock.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                )?;
                Ok(Db::Sqlite(conn))
            }
        }
    }

    /// Apply the migrations not yet applied; the names of those applied now.
    pub fn migrate(&mut self) -> Result<Vec<String>, DbError> {
        let applied = on!(self, c => c
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbError(format!("migrations: {e}")))?
            .iter()
            .map(|v| v.to_string())
            .collect());
        Ok(applied)
    }

    /// Write events (those already present are skipped) and statuses (kept only if newer), in
    /// one transaction. Answers how many events were new.
    pub fn write(
        &mut self,
        batch: &[RecordEvent],
        statuses: &[Arc<StatusRecord>],
    ) -> Result<usize, DbError> {
        // A few statements per batch, whatever its size: the events in multi-row inserts that
        // name the ones actually added, one read of the attempts they touch, and one upsert of
        // each changed attempt row.
        let added = on!(self, c => c.transaction::<usize, diesel::result::Error, _>(|c| {
            let mut new_ids = std::collections::HashSet::new();
            for chunk in batch.chunks(ROWS_PER_STATEMENT) {
                let rows: Vec<EventRow> = chunk.iter().map(EventRow::from).collect();
                let ids: Vec<String> = diesel::insert_into(events::table)
                    .values(&rows)
                    .on_conflict_do_nothing()
                    .returning(events::event_id)
                    .get_results(c)?;
                new_ids.extend(ids);
            }
            let added: Vec<&RecordEvent> = batch
                .iter()
                // `remove`: an event twice in one batch (a replay) counts once.
                .filter(|e| new_ids.remove(&e.event_id) && e.attempt_id != "*")
                .collect();
            let touched = added
                .iter()
                .map(|e| (e.quiz_id.as_str(), e.attempt_id.as_str()))
                .chain(statuses.iter().map(|s| (s.key.quiz.as_str(), s.key.attempt.as_str())));
            let mut by_quiz: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
                Default::default();
            for (quiz, attempt) in touched {
                by_quiz.entry(quiz).or_default().insert(attempt);
            }
            let mut rows = std::collections::HashMap::new();
            for (quiz, of_quiz) in by_quiz {
                let of_quiz: Vec<&str> = of_quiz.into_iter().collect();
                for chunk in of_quiz.chunks(ROWS_PER_STATEMENT) {
                    let found: Vec<AttemptRow> = attempts::table
                        .filter(attempts::quiz_id.eq(quiz))
                        .filter(attempts::attempt_id.eq_any(chunk))
                        .load(c)?;
                    for row in found {
                        rows.insert((row.quiz_id.clone(), row.attempt_id.clone()), row);
                    }
                }
            }
            let mut changed = std::collections::BTreeSet::new();
            for e in &added {
                let key = (e.quiz_id.clone(), e.attempt_id.clone());
                rows.entry(key.clone())
                    .or_insert_with(|| {
                        AttemptRow::new(&e.quiz_id, &e.attempt_id, e.student_id.as_deref(), e.server_time as i64)
                    })
                    .apply(e);
                changed.insert(key);
            }
            for s in statuses {
                let key = (s.key.quiz.to_string(), s.key.attempt.to_string());
                let seq = s.seq as i64;
                if rows.get(&key).is_some_and(|kept| kept.seq >= seq) {
                    continue;
                }
                let at = s.last_seen as i64;
                let row = rows.entry(key.clone()).or_insert_with(|| {
                    let student = s.fields.text("student_id");
                    AttemptRow::new(&key.0, &key.1, student.as_deref(), at)
                });
                row.seq = seq;
                row.status_json = Some(s.to_stored_json());
                row.last_status = s.user_status.as_str().to_string();
                row.connected = s.connected;
                row.last_seen = row.last_seen.max(at);
                if let Some(name) = s.fields.text("student_name") {
                    row.student_name = Some(name);
                }
                changed.insert(key);
            }
            let changed: Vec<AttemptRow> = changed.iter().filter_map(|k| rows.remove(k)).collect();
            for chunk in changed.chunks(ROWS_PER_STATEMENT) {
                use diesel::upsert::excluded;
                use attempts::dsl as a;
                diesel::insert_into(attempts::table)
                    .values(chunk)
                    .on_conflict((a::quiz_id, a::attempt_id))
                    .do_update()
                    .set((
                        a::student_id.eq(excluded(a::student_id)),
                        a::student_name.eq(excluded(a::student_name)),
                        a::first_seen.eq(excluded(a::first_seen)),
                        a::last_seen.eq(excluded(a::last_seen)),
                        a::last_status.eq(excluded(a::last_status)),
                        a::connected.eq(excluded(a::connected)),
                        a::away_count.eq(excluded(a::away_count)),
                        a::away_since.eq(excluded(a::away_since)),
                        a::total_away_ms.eq(excluded(a::total_away_ms)),
                        a::disconnect_count.eq(excluded(a::disconnect_count)),
                        a::final_score.eq(excluded(a::final_score)),
                        a::submitted_at.eq(excluded(a::submitted_at)),
                        a::seq.eq(excluded(a::seq)),
                        a::status_json.eq(excluded(a::status_json)),
                    ))
                    .execute(c)?;
            }
            Ok(added.len())
        }))?;
        Ok(added)
    }

    /// Events of a quiz in server-time order, filtered.
    pub fn events(&mut self, q: &EventQuery) -> Result<Vec<RecordEvent>, DbError> {
        let rows: Vec<EventRow> = on!(self, c => {
            let mut query = events::table
                .filter(events::quiz_id.eq(&q.quiz))
                .order((events::server_time.asc(), events::event_id.asc()))
                .limit(q.limit)
                .into_boxed();
            if let Some(a) = &q.attempt {
                query = query.filter(events::attempt_id.eq(a));
            }
            if let Some(t) = q.since {
                query = query.filter(events::server_time.ge(t));
            }
            if let Some(t) = q.until {
                query = query.filter(events::server_time.lt(t));
            }
            query.load(c)?
        });
        Ok(rows.into_iter().map(EventRow::into_event).collect())
    }

    /// Every attempt of a quiz, in attempt order.
    pub fn attempts(&mut self, quiz: &str) -> Result<Vec<AttemptRow>, DbError> {
        Ok(on!(self, c => attempts::table
            .filter(attempts::quiz_id.eq(quiz))
            .order(attempts::attempt_id.asc())
            .load(c)?))
    }

    /// The latest status of one attempt.
    pub fn status(&mut self, key: &AttemptKey) -> Result<Option<StatusRecord>, DbError> {
        let json: Option<Option<String>> = on!(self, c => attempts::table
            .find((key.quiz.as_str(), key.attempt.as_str()))
            .select(attempts::status_json)
            .first(c)
            .optional()?);
        Ok(json
            .flatten()
            .and_then(|j| StatusRecord::from_stored_json(key.clone(), &j)))
    }

    /// The latest status of every attempt of a quiz.
    pub fn statuses(&mut self, quiz: &QuizId) -> Result<Vec<StatusRecord>, DbError> {
        let rows: Vec<(String, Option<String>)> = on!(self, c => attempts::table
            .filter(attempts::quiz_id.eq(quiz.as_str()))
            .order(attempts::attempt_id.asc())
            .select((attempts::attempt_id, attempts::status_json))
            .load(c)?);
        Ok(rows
            .into_iter()
            .filter_map(|(attempt, json)| {
                let key = AttemptKey {
                    quiz: quiz.clone(),
                    attempt: AttemptId::new(attempt),
                };
                StatusRecord::from_stored_json(key, &json?)
            })
            .collect())
    }
}

/// A connection opened when first needed and forgotten after an error, so a database that
/// comes back is used again.
struct LazyDb {
    url: DbUrl,
    db: Option<Db>,
}

impl LazyDb {
    fn new(url: DbUrl) -> Self {
        LazyDb { url, db: None }
    }

    fn get(&mut self) -> Result<&mut Db, DbError> {
        if self.db.is_none() {
            self.db = Some(Db::connect(&self.url)?);
        }
        self.db
            .as_mut()
            .ok_or_else(|| DbError("no connection".into()))
    }

    fn forget(&mut self) {
        self.db = None;
    }
}

/// The persistence thread that writes (one per process, on a `SyncArbiter`).
pub struct DbWriter(LazyDb);

impl DbWriter {
    pub fn new(url: DbUrl) -> Self {
        DbWriter(LazyDb::new(url))
    }
}

impl Actor for DbWriter {
    type Context = SyncContext<Self>;
}

/// Write a batch; answers how many events were new and how long it took.
#[derive(Message)]
#[rtype(result = "Result<(usize, std::time::Duration), DbError>")]
pub struct WriteBatch {
    pub events: Arc<Vec<RecordEvent>>,
    pub statuses: Vec<Arc<StatusRecord>>,
}

impl Handler<WriteBatch> for DbWriter {
    type Result = Result<(usize, std::time::Duration), DbError>;

    fn handle(&mut self, msg: WriteBatch, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        match self.0.get()?.write(&msg.events, &msg.statuses) {
            Ok(added) => Ok((added, started.elapsed())),
            Err(e) => {
                // Reconnect next time: the connection may be what failed.
                self.0.forget();
                Err(e)
            }
        }
    }
}

/// The persistence thread that reads, for the HTTP API and snapshots.
pub struct DbReader(LazyDb);

impl DbReader {
    pub fn new(url: DbUrl) -> Self {
        DbReader(LazyDb::new(url))
    }
}

impl Actor for DbReader {
    type Context = SyncContext<Self>;
}

/// A read, run with the reader's connection (run again once on a fresh connection if the
/// first try fails, as after the database restarted).
pub struct Read<T>(pub Box<ReadFn<T>>);

/// The work of a [`Read`].
pub type ReadFn<T> = dyn Fn(&mut Db) -> Result<T, DbError> + Send;

impl<T: Send + 'static> Message for Read<T> {
    type Result = Result<T, DbError>;
}

impl<T: Send + 'static> Handler<Read<T>> for DbReader {
    type Result = Result<T, DbError>;

    fn handle(&mut self, msg: Read<T>, _: &mut Self::Context) -> Self::Result {
        if let Some(db) = &mut self.0.db {
            match (msg.0)(db) {
                Ok(answer) => return Ok(answer),
                Err(e) => log::debug!("{e}; reading again on a new connection"),
            }
        }
        self.0.forget();
        let result = (msg.0)(self.0.get()?);
        if result.is_err() {
            self.0.forget();
        }
        result
    }
}

/// The suite every record database passes, given a fresh migrated one.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::protocol::{
        ids::InstanceId,
        status::{StatusChange, StatusRecord},
    };
    use crate::records::{status_events, EventIds};

    fn key(attempt: &str) -> AttemptKey {
        AttemptKey {
            quiz: QuizId::new("q1"),
            attempt: AttemptId::new(attempt),
        }
    }

    fn report(prev: Option<&StatusRecord>, attempt: &str, json: &str, at: u64) -> StatusRecord {
        let data = serde_json::from_str(json).unwrap();
        StatusRecord::next(&key(attempt), prev, StatusChange::Reported(data), at)
    }

    pub fn run(db: &mut Db) {
        assert!(db.migrate().unwrap().is_empty(), "migrations apply once");
        let ids = EventIds::new(&InstanceId::new("node-a"));
        let s1 = report(
            None,
            "a1",
            r#"{"student_id":"s1","user_status":"active","question_number_current":1}"#,
            1_000,
        );
        let s2 = report(
            Some(&s1),
            "a1",
            r#"{"student_id":"s1","user_status":"away","question_number_current":1}"#,
            2_000,
        );
        let s3 = report(
            Some(&s2),
            "a1",
            r#"{"student_id":"s1","user_status":"active","question_number_current":2}"#,
            5_000,
        );
        let s4 = report(
            Some(&s3),
            "a1",
            r#"{"student_id":"s1","user_status":"active","question_number_current":2,"score":91}"#,
            6_000,
        );
        let s5 = StatusRecord::next(
            &key("a1"),
            Some(&s4),
            StatusChange::Offline(crate::protocol::OfflineReason::Disconnected),
            7_000,
        );
        let mut events = status_events(&ids, None, &s1);
        for w in [&s1, &s2, &s3, &s4, &s5].windows(2) {
            events.extend(status_events(&ids, Some(w[0]), w[1]));
        }
        let statuses: Vec<Arc<StatusRecord>> =
            [&s2, &s5].iter().map(|s| Arc::new((*s).clone())).collect();
        let added = db.write(&events, &statuses).unwrap();
        assert_eq!(added, events.len());
        // The same batch again (a retry after a lost answer) adds nothing and counts nothing.
        assert_eq!(db.write(&events, &statuses).unwrap(), 0);
        // An older status does not replace a newer one.
        db.write(&[], &[Arc::new(s3.clone())]).unwrap();

        // A replayed batch: an event already written, and another attempt's events with one
        // of them twice. Each counts once.
        let other = report(
            None,
            "a2",
            r#"{"student_id":"s2","user_status":"away"}"#,
            8_000,
        );
        let theirs = status_events(&ids, None, &other);
        assert_eq!(theirs.len(), 2, "connected, away");
        let replay = [
            events[1].clone(),
            theirs[0].clone(),
            theirs[1].clone(),
            theirs[1].clone(),
        ];
        assert_eq!(db.write(&replay, &[]).unwrap(), 2);
        let rows = db.attempts("q1").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].attempt_id.as_str(), rows[1].away_count), ("a2", 1));
        assert!(rows[1].connected);
        let row = &rows[0];
        assert_eq!(row.student_id, "s1");
        assert_eq!(row.away_count, 1);
        assert_eq!(row.total_away_ms, 3_000);
        assert_eq!(row.disconnect_count, 1);
        assert!(!row.connected);
        assert_eq!(row.final_score.as_deref(), Some("91"));
        assert_eq!(row.submitted_at, Some(6_000));
        assert_eq!(row.first_seen, 1_000);
        assert_eq!(row.last_status, "offline");

        let latest = db.status(&key("a1")).unwrap().unwrap();
        assert_eq!(latest, s5);
        assert_eq!(db.statuses(&QuizId::new("q1")).unwrap(), vec![s5.clone()]);
        assert!(db.status(&key("nobody")).unwrap().is_none());

        let all = db
            .events(&EventQuery {
                quiz: "q1".into(),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all[..events.len()], events, "every event, once, in order");
        assert_eq!(all.len(), events.len() + 2);
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"away") && kinds.contains(&"back") && kinds.contains(&"submitted"));
        let window = db
            .events(&EventQuery {
                quiz: "q1".into(),
                attempt: Some("a1".into()),
                since: Some(2_000),
                until: Some(6_000),
                limit: 100,
            })
            .unwrap();
        assert!(window
            .iter()
            .all(|e| (2_000..6_000).contains(&(e.server_time as i64))));
        assert!(!window.is_empty());
        assert_eq!(
            db.events(&EventQuery {
                quiz: "q1".into(),
                limit: 2,
                ..Default::default()
            })
            .unwrap()
            .len(),
            2
        );
        assert!(db
            .events(&EventQuery {
                quiz: "q2".into(),
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .is_empty());
    }

    #[test]
    fn sqlite_passes_the_record_suite() {
        let dir = std::env::temp_dir().join(format!("invigil-db-{:08x}", rand::random::<u32>()));
        let url = DbUrl::Sqlite(dir.join("records.db"));
        let mut db = Db::connect(&url).unwrap();
        assert!(!db.migrate().unwrap().is_empty());
        run(&mut db);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn postgres_passes_the_record_suite() {
        let name = format!("invigil_test_{:08x}", rand::random::<u32>());
        let admin = DbUrl::Postgres("postgres://postgres@127.0.0.1:5432/postgres".into());
        let Db::Postgres(mut conn) = Db::connect(&admin).expect("PostgreSQL on 127.0.0.1:5432")
        else {
            unreachable!("a postgres URL opens PostgreSQL")
        };
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let url = DbUrl::Postgres(format!("postgres://postgres@127.0.0.1:5432/{name}"));
        let mut db = Db::connect(&url).unwrap();
        assert!(!db.migrate().unwrap().is_empty());
        run(&mut db);
        drop(db);
        let _ = diesel::sql_query(format!("DROP DATABASE {name}")).execute(&mut conn);
    }
}
