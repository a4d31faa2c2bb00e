//! The in-memory status store: the default, for one node (or several servers in one process).
//! It keeps nothing across a restart.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{StatusStore, StoreError};
use crate::protocol::{
    ids::{AttemptId, AttemptKey, QuizId},
    status::StatusRecord,
};

/// Latest status per attempt, per quiz, behind one lock (writes are a map insert).
#[derive(Default)]
pub struct MemoryStore {
    quizzes: RwLock<HashMap<QuizId, BTreeMap<AttemptId, Arc<StatusRecord>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> StoreError {
    StoreError("memory store lock poisoned by a panic".into())
}

impl StatusStore for MemoryStore {
    fn record(&self, record: Arc<StatusRecord>) {
        // A poisoned lock means a panic elsewhere already; keep serving rather than panic too.
        let Ok(mut quizzes) = self.quizzes.write() else {
            return;
        };
        let attempts = quizzes.entry(record.key.quiz.clone()).or_default();
        match attempts.get(&record.key.attempt) {
            Some(kept) if kept.seq >= record.seq => {}
            _ => {
                attempts.insert(record.key.attempt.clone(), record);
            }
        }
    }

    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>> {
        let found = self.quizzes.read().map_err(|_| poisoned()).map(|q| {
            q.get(&key.quiz)
                .and_then(|attempts| attempts.get(&key.attempt))
                .cloned()
        });
        future::ready(found).boxed()
    }

    fn quiz(
        &self,
        quiz: &QuizId,
    ) -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>> {
        let found = self.quizzes.read().map_err(|_| poisoned()).map(|q| {
            q.get(quiz)
                .map(|attempts| attempts.values().cloned().collect())
                .unwrap_or_default()
        });
        future::ready(found).boxed()
    }
}

#[cfg(test)]
mod tests {
    #[actix_rt::test]
    async fn memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(&super::MemoryStore::new()).await;
    }
}
