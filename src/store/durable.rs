//! A status store with a durable copy: statuses are kept by the fast store (memory or Redis)
//! and written behind to a durable one (the record database, or DynamoDB); reads merge both,
//! newest `seq` first, so a snapshot after a restart of the only node (or of the whole
//! cluster) still lists every attempt with its last known status.

use std::{collections::BTreeMap, sync::Arc};

use actix::Addr;
use futures_util::future::{BoxFuture, FutureExt};

use super::{newer, newest, StatusStore, StoreError};
use crate::{
    protocol::{
        ids::{AttemptId, AttemptKey, QuizId},
        status::StatusRecord,
    },
    records::{
        db::{DbReader, Read},
        Recorder,
    },
};

/// The fast store in front, the durable one behind.
pub struct DurableStore {
    fast: Arc<dyn StatusStore>,
    durable: Arc<dyn StatusStore>,
}

impl DurableStore {
    pub fn new(fast: Arc<dyn StatusStore>, durable: Arc<dyn StatusStore>) -> Self {
        DurableStore { fast, durable }
    }
}

/// A durable store that does not answer is logged and read as empty: the fast store still
/// answers for what it holds.
fn or_empty<T: Default>(result: Result<T, StoreError>, what: &str) -> T {
    result.unwrap_or_else(|e| {
        log::warn!("{what}: {e}");
        T::default()
    })
}

impl StatusStore for DurableStore {
    fn record(&self, record: Arc<StatusRecord>) {
        self.fast.record(record.clone());
        self.durable.record(record);
    }

    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>> {
        let (fast, durable) = (self.fast.latest(key), self.durable.latest(key));
        async move {
            let kept = fast.await?;
            let stored = or_empty(durable.await, "reading the durable status copy");
            Ok(newest(kept, stored))
        }
        .boxed()
    }

    fn quiz(
        &self,
        quiz: &QuizId,
    ) -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>> {
        let (fast, durable) = (self.fast.quiz(quiz), self.durable.quiz(quiz));
        async move {
            let mut merged: BTreeMap<AttemptId, Arc<StatusRecord>> = BTreeMap::new();
            for r in or_empty(durable.await, "reading the durable status copy") {
                merged.insert(r.key.attempt.clone(), r);
            }
            for r in fast.await? {
                let keep = match merged.remove(&r.key.attempt) {
                    Some(stored) => newer(r, stored),
                    None => r,
                };
                merged.insert(keep.key.attempt.clone(), keep);
            }
            Ok(merged.into_values().collect())
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'static, ()> {
        let (fast, durable) = (self.fast.flush(), self.durable.flush());
        async move {
            fast.await;
            durable.await;
        }
        .boxed()
    }
}

/// The latest statuses in the record database (`attempts.status_json`).
pub struct SqlStatuses {
    recorder: Recorder,
    reader: Addr<DbReader>,
}

impl SqlStatuses {
    pub fn new(recorder: Recorder, reader: Addr<DbReader>) -> Self {
        SqlStatuses { recorder, reader }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl StatusStore for SqlStatuses {
    fn record(&self, record: Arc<StatusRecord>) {
        self.recorder.status(record);
    }

    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>> {
        let key = key.clone();
        let read = self.reader.send(Read(Box::new(move |db| db.status(&key))));
        async move {
            let found = read.await.map_err(unavailable)?.map_err(unavailable)?;
            Ok(found.map(Arc::new))
        }
        .boxed()
    }

    fn quiz(
        &self,
        quiz: &QuizId,
    ) -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>> {
        let quiz = quiz.clone();
        let read = self
            .reader
            .send(Read(Box::new(move |db| db.statuses(&quiz))));
        async move {
            let found = read.await.map_err(unavailable)?.map_err(unavailable)?;
            Ok(found.into_iter().map(Arc::new).collect())
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'static, ()> {
        let recorder = self.recorder.clone();
        async move { recorder.flush().await }.boxed()
    }
}
