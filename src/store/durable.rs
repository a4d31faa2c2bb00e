//! A status store with a durable copy: statuses are kept by the inner store (memory or Redis)
//! and written behind, coalesced, to the record database; reads merge both, so a snapshot
//! after a restart of the only node (or of the whole cluster) still lists every attempt with
//! its last known status.

use std::{collections::BTreeMap, sync::Arc};

use actix::Addr;
use futures_util::future::{BoxFuture, FutureExt};

use super::{StatusStore, StoreError};
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

pub struct DurableStore {
    inner: Arc<dyn StatusStore>,
    recorder: Recorder,
    reader: Addr<DbReader>,
}

impl DurableStore {
    pub fn new(inner: Arc<dyn StatusStore>, recorder: Recorder, reader: Addr<DbReader>) -> Self {
        DurableStore {
            inner,
            recorder,
            reader,
        }
    }
}

/// The newer of two records of one attempt.
fn newer(a: Arc<StatusRecord>, b: Arc<StatusRecord>) -> Arc<StatusRecord> {
    if b.seq > a.seq {
        b
    } else {
        a
    }
}

impl StatusStore for DurableStore {
    fn record(&self, record: Arc<StatusRecord>) {
        self.inner.record(record.clone());
        self.recorder.status(record);
    }

    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>> {
        let inner = self.inner.latest(key);
        let owned = key.clone();
        let durable = self
            .reader
            .send(Read(Box::new(move |db| db.status(&owned))));
        let key = key.clone();
        async move {
            let kept = inner.await?;
            let stored = match durable.await {
                Ok(Ok(stored)) => stored.map(Arc::new),
                Ok(Err(e)) => {
                    log::warn!("reading {key} from the record database: {e}");
                    None
                }
                Err(e) => {
                    log::warn!("record reader unavailable: {e}");
                    None
                }
            };
            Ok(match (kept, stored) {
                (Some(a), Some(b)) => Some(newer(a, b)),
                (a, b) => a.or(b),
            })
        }
        .boxed()
    }

    fn quiz(
        &self,
        quiz: &QuizId,
    ) -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>> {
        let inner = self.inner.quiz(quiz);
        let owned = quiz.clone();
        let durable = self
            .reader
            .send(Read(Box::new(move |db| db.statuses(&owned))));
        let quiz = quiz.clone();
        async move {
            let mut merged: BTreeMap<AttemptId, Arc<StatusRecord>> = BTreeMap::new();
            match durable.await {
                Ok(Ok(stored)) => {
                    for r in stored {
                        merged.insert(r.key.attempt.clone(), Arc::new(r));
                    }
                }
                Ok(Err(e)) => log::warn!("reading quiz {quiz} from the record database: {e}"),
                Err(e) => log::warn!("record reader unavailable: {e}"),
            }
            for r in inner.await? {
                let slot = merged.remove(&r.key.attempt);
                let keep = match slot {
                    Some(stored) => newer(r, stored),
                    None => r,
                };
                merged.insert(keep.key.attempt.clone(), keep);
            }
            Ok(merged.into_values().collect())
        }
        .boxed()
    }
}
