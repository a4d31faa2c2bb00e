//! The diesel schema of `migrations/`: the same tables on PostgreSQL and SQLite.

diesel::table! {
    attempts (quiz_id, attempt_id) {
        quiz_id -> Text,
        attempt_id -> Text,
        student_id -> Text,
        student_name -> Nullable<Text>,
        first_seen -> BigInt,
        last_seen -> BigInt,
        last_status -> Text,
        connected -> Bool,
        away_count -> BigInt,
        away_since -> Nullable<BigInt>,
        total_away_ms -> BigInt,
        disconnect_count -> BigInt,
        final_score -> Nullable<Text>,
        submitted_at -> Nullable<BigInt>,
        seq -> BigInt,
        status_json -> Nullable<Text>,
    }
}

diesel::table! {
    events (event_id) {
        event_id -> Text,
        quiz_id -> Text,
        attempt_id -> Text,
        student_id -> Nullable<Text>,
        kind -> Text,
        detail -> Text,
        server_time -> BigInt,
        instance_id -> Text,
    }
}
