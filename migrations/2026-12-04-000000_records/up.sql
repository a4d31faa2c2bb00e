-- The records of an exam: one row per attempt, and the append-only log of what happened.
-- Written so that the same statements run on PostgreSQL and on SQLite.

CREATE TABLE attempts (
    quiz_id          TEXT    NOT NULL,
    attempt_id       TEXT    NOT NULL,
    student_id       TEXT    NOT NULL,
    student_name     TEXT,
    first_seen       BIGINT  NOT NULL,  -- ms since epoch, server time
    last_seen        BIGINT  NOT NULL,
    last_status      TEXT    NOT NULL,  -- active | away | offline
    connected        BOOLEAN NOT NULL,
    away_count       BIGINT  NOT NULL,
    away_since       BIGINT,            -- set while the attempt is away
    total_away_ms    BIGINT  NOT NULL,
    disconnect_count BIGINT  NOT NULL,
    final_score      TEXT,              -- the score as the exam page sent it (JSON)
    submitted_at     BIGINT,
    seq              BIGINT  NOT NULL,  -- seq of status_json
    status_json      TEXT,              -- the latest STATUS, for snapshots after a restart
    PRIMARY KEY (quiz_id, attempt_id)
);

CREATE TABLE events (
    event_id    TEXT   PRIMARY KEY NOT NULL,  -- unique per event: retries cannot duplicate
    quiz_id     TEXT   NOT NULL,
    attempt_id  TEXT   NOT NULL,              -- '*' for a message to the whole quiz
    student_id  TEXT,
    kind        TEXT   NOT NULL,
    detail      TEXT   NOT NULL,              -- JSON object, by kind
    server_time BIGINT NOT NULL,              -- ms since epoch
    instance_id TEXT   NOT NULL
);

CREATE INDEX events_by_quiz_time ON events (quiz_id, server_time);
CREATE INDEX events_by_attempt ON events (quiz_id, attempt_id, server_time);
