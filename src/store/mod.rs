//! The status store seam: the latest status of every attempt, for snapshots and for `seq` and
//! `away_count` to carry on across reconnects.
//!
//! # Contract
//!
//! - [`StatusStore::record`] never blocks and never fails from the caller's side: routing calls
//!   it on the hot path. An implementation that writes elsewhere queues the write.
//! - A record replaces the one kept for its attempt only if its `seq` is higher, so late or
//!   repeated writes cannot move an attempt backwards.
//! - A read after a `record` on the same store sees it (read-your-writes within one instance).
//!
//! [`memory::MemoryStore`] is the default and serves one node (or several servers in one
//! process); [`redis::RedisStore`] serves a cluster; both pass the same conformance suite.

pub mod coalesce;
pub mod durable;
pub mod dynamodb;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::protocol::{
    ids::{AttemptKey, QuizId},
    status::StatusRecord,
};

pub use durable::{DurableStore, SqlStatuses};
pub use dynamodb::DynamoStore;
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// The newer of two records of one attempt (the first on a tie).
pub fn newer(a: Arc<StatusRecord>, b: Arc<StatusRecord>) -> Arc<StatusRecord> {
    if b.seq > a.seq {
        b
    } else {
        a
    }
}

/// The newer of two records of one attempt that either side may lack (the first on a tie).
pub fn newest(
    a: Option<Arc<StatusRecord>>,
    b: Option<Arc<StatusRecord>>,
) -> Option<Arc<StatusRecord>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(newer(a, b)),
        (a, b) => a.or(b),
    }
}

/// Why a store could not answer a read.
#[derive(Debug, thiserror::Error)]
#[error("status store unavailable: {0}")]
pub struct StoreError(pub String);

/// Where the latest status of each attempt is kept.
pub trait StatusStore: Send + Sync + 'static {
    /// Keep `record` as its attempt's latest status, unless one with a higher `seq` is kept.
    fn record(&self, record: Arc<StatusRecord>);

    /// The latest status of one attempt.
    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>>;

    /// The latest status of every attempt of a quiz, in attempt order.
    fn quiz(&self, quiz: &QuizId)
        -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>>;

    /// Resolves when every record handed over so far is written (the drain waits on it,
    /// bounded). Stores that write at once have nothing to wait for.
    fn flush(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The suite every store passes, given a fresh empty store.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::protocol::{
        ids::AttemptId,
        status::{StatusChange, StatusRecord},
    };

    fn key(quiz: &str, attempt: &str) -> AttemptKey {
        AttemptKey {
            quiz: QuizId::new(quiz),
            attempt: AttemptId::new(attempt),
        }
    }

    fn status(
        key: &AttemptKey,
        previous: Option<&StatusRecord>,
        user_status: &str,
    ) -> Arc<StatusRecord> {
        let data = serde_json::from_str(&format!(r#"{{"user_status":"{user_status}"}}"#))
            .expect("test status parses");
        Arc::new(StatusRecord::next(
            key,
            previous,
            StatusChange::Reported(data),
            1,
        ))
    }

    pub async fn run(store: &dyn StatusStore) {
        let a1 = key("q1", "a1");
        let a2 = key("q1", "a2");
        let other = key("q2", "a1");
        assert!(store.latest(&a1).await.unwrap().is_none());
        assert!(store.quiz(&a1.quiz).await.unwrap().is_empty());

        let first = status(&a1, None, "active");
        let second = status(&a1, Some(&first), "away");
        store.record(first.clone());
        store.record(second.clone());
        // A late write of an older seq does not move the attempt backwards.
        store.record(first.clone());
        let latest = store.latest(&a1).await.unwrap().expect("a1 is kept");
        assert_eq!(latest.seq, 2);
        assert_eq!(latest.away_count, 1);

        store.record(status(&a2, None, "active"));
        store.record(status(&other, None, "active"));
        let listed = store.quiz(&a1.quiz).await.unwrap();
        let attempts: Vec<_> = listed.iter().map(|r| r.key.attempt.as_str()).collect();
        assert_eq!(attempts, ["a1", "a2"]);
        assert_eq!(store.quiz(&other.quiz).await.unwrap().len(), 1);
    }
}
