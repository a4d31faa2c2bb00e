//! The cluster-wide status store in Redis: a hash per quiz (`P:status:{quiz}`, attempt →
//! record), so a snapshot on any instance lists every attempt of the cluster and `seq` carries
//! on when a student reconnects to another instance. Each write renews the hash's expiry
//! (`redis.status_ttl_secs`), so a quiz's statuses leave Redis that long after its last update.
//!
//! Writes never block routing: [`StatusStore::record`] keeps the record in this instance's
//! memory and hands it to a writer task, which coalesces records of the same attempt (only the
//! latest matters), writes them in pipelines, and retries with backoff while Redis is away, so
//! the latest status of every attempt reaches Redis once it is back. Reads go to Redis and
//! fall back to this instance's memory when Redis does not answer; a snapshot merges both.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use redis::{aio::ConnectionManager, Script};
use tokio::sync::mpsc;

use super::{MemoryStore, StatusStore, StoreError};
use crate::{
    config::RedisSettings,
    metrics::Metrics,
    protocol::{
        ids::{AttemptId, AttemptKey, QuizId},
        status::StatusRecord,
    },
};

/// Records written per pipeline.
const BATCH: usize = 512;

/// Latest statuses in Redis, with this instance's memory as the fallback.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    local: MemoryStore,
    writer: mpsc::UnboundedSender<Arc<StatusRecord>>,
}

impl RedisStore {
    /// A store on `conn`; starts its writer task on the current runtime.
    pub fn new(conn: ConnectionManager, settings: &RedisSettings, metrics: Arc<Metrics>) -> Self {
        let (writer, records) = mpsc::unbounded_channel();
        let prefix = settings.key_prefix.clone();
        actix_rt::spawn(write_loop(
            conn.clone(),
            prefix.clone(),
            settings.status_ttl_secs,
            records,
            metrics,
        ));
        RedisStore {
            conn,
            prefix,
            local: MemoryStore::new(),
            writer,
        }
    }

    fn hash(prefix: &str, quiz: &QuizId) -> String {
        format!("{prefix}:status:{quiz}")
    }
}

/// Write records as they come, latest per attempt, retrying while Redis is away.
async fn write_loop(
    mut conn: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
    mut records: mpsc::UnboundedReceiver<Arc<StatusRecord>>,
    metrics: Arc<Metrics>,
) {
    // KEYS: the quiz hash. ARGV: attempt, seq, record. Keeps the higher seq. The expiry is
    // renewed once per quiz per pipeline, outside the script.
    let set_if_newer = Script::new(
        r#"local cur = redis.call('HGET', KEYS[1], ARGV[1])
        if cur then
          local seq = tonumber(string.match(cur, '^{"seq":(%d+)'))
          if seq and seq >= tonumber(ARGV[2]) then return 0 end
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        return 1"#,
    );
    let mut pending: HashMap<AttemptKey, Arc<StatusRecord>> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if pending.is_empty() {
            match records.recv().await {
                Some(r) => {
                    pending.insert(r.key.clone(), r);
                }
                None => return, // the store is gone
            }
        }
        while pending.len() < BATCH {
            match records.try_recv() {
                Ok(r) => match pending.get(&r.key) {
                    Some(kept) if kept.seq >= r.seq => {}
                    _ => {
                        pending.insert(r.key.clone(), r);
                    }
                },
                Err(_) => break,
            }
        }
        metrics.set_store_pending(pending.len());
        let mut pipe = redis::pipe();
        let mut hashes = std::collections::BTreeSet::new();
        for record in pending.values() {
            let hash = RedisStore::hash(&prefix, &record.key.quiz);
            let mut invocation = set_if_newer.key(&hash);
            invocation
                .arg(record.key.attempt.as_str())
                .arg(record.seq)
                .arg(record.to_stored_json());
            pipe.invoke_script(&invocation).ignore();
            hashes.insert(hash);
        }
        for hash in &hashes {
            pipe.expire(hash, ttl_secs as i64).ignore();
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                pending.clear();
                backoff = Duration::from_millis(100);
                metrics.set_store_pending(0);
            }
            Err(e) if is_noscript(&e) => {
                // Redis has not got the script (first write, or after a restart): load it and
                // write again; a failed load is retried like any failed write.
                if let Err(e) = set_if_newer.load_async(&mut conn).await {
                    metrics.store_write_error();
                    log::warn!("loading the status script into Redis: {e}");
                    actix_rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            Err(e) => {
                metrics.store_write_error();
                log::warn!(
                    "writing {} statuses to Redis: {e}; retrying in {backoff:?}",
                    pending.len()
                );
                actix_rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
    )
}

impl StatusStore for RedisStore {
    fn record(&self, record: Arc<StatusRecord>) {
        self.local.record(record.clone());
        // The writer lives as long as the runtime; a closed channel means shutdown.
        let _ = self.writer.send(record);
    }

    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>> {
        let mut conn = self.conn.clone();
        let hash = Self::hash(&self.prefix, &key.quiz);
        let local = self.local.latest(key);
        let key = key.clone();
        async move {
            let local = local.await?;
            let remote: redis::RedisResult<Option<String>> = redis::cmd("HGET")
                .arg(&hash)
                .arg(key.attempt.as_str())
                .query_async(&mut conn)
                .await;
            let remote = match remote {
                Ok(json) => json
                    .and_then(|j| StatusRecord::from_stored_json(key.clone(), &j))
                    .map(Arc::new),
                Err(e) => {
                    log::warn!("reading {key} from Redis: {e}; using this instance's memory");
                    None
                }
            };
            Ok(newest(local, remote))
        }
        .boxed()
    }

    fn quiz(
        &self,
        quiz: &QuizId,
    ) -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>> {
        let mut conn = self.conn.clone();
        let hash = Self::hash(&self.prefix, quiz);
        let local = self.local.quiz(quiz);
        let quiz = quiz.clone();
        async move {
            let mut merged: BTreeMap<AttemptId, Arc<StatusRecord>> = local
                .await?
                .into_iter()
                .map(|r| (r.key.attempt.clone(), r))
                .collect();
            let remote: redis::RedisResult<Vec<(String, String)>> = redis::cmd("HGETALL")
                .arg(&hash)
                .query_async(&mut conn)
                .await;
            match remote {
                Ok(entries) => {
                    for (attempt, json) in entries {
                        let key = AttemptKey {
                            quiz: quiz.clone(),
                            attempt: AttemptId::new(&attempt),
                        };
                        if let Some(record) = StatusRecord::from_stored_json(key, &json) {
                            let slot = merged.entry(record.key.attempt.clone());
                            let record = Arc::new(record);
                            match slot {
                                std::collections::btree_map::Entry::Occupied(mut kept) => {
                                    if kept.get().seq < record.seq {
                                        kept.insert(record);
                                    }
                                }
                                std::collections::btree_map::Entry::Vacant(v) => {
                                    v.insert(record);
                                }
                            }
                        }
                    }
                }
                Err(e) => log::warn!(
                    "reading quiz {quiz} from Redis: {e}; the snapshot holds this instance's attempts only"
                ),
            }
            Ok(merged.into_values().collect())
        }
        .boxed()
    }
}

fn newest(a: Option<Arc<StatusRecord>>, b: Option<Arc<StatusRecord>>) -> Option<Arc<StatusRecord>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Settings, protocol::status::StatusChange};

    /// A store on the real Redis at 127.0.0.1:6379, under a prefix of its own.
    fn store(prefix: &str) -> RedisStore {
        let mut settings = Settings::defaults().redis;
        settings.url = crate::config::Secret::new("redis://127.0.0.1:6379");
        settings.key_prefix = prefix.to_string();
        let (conn, _) = crate::bridge::redis::connect(&settings).unwrap();
        RedisStore::new(conn, &settings, Arc::new(Metrics::default()))
    }

    #[actix_rt::test]
    async fn redis_store_passes_the_conformance_suite_and_shares_across_instances() {
        let prefix = format!("invigil-test-{:08x}", rand::random::<u32>());
        let writer = store(&prefix);
        super::super::conformance::run(&writer).await;
        // Another instance, with nothing in its own memory, reads what the first wrote.
        let reader = store(&prefix);
        let quiz = QuizId::new("q1");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let listed = reader.quiz(&quiz).await.unwrap();
            if listed.len() == 2 && listed[0].seq == 2 {
                assert_eq!(listed[0].away_count, 1);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "writes reach Redis: {listed:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let key = AttemptKey {
            quiz,
            attempt: AttemptId::new("a1"),
        };
        assert_eq!(reader.latest(&key).await.unwrap().unwrap().seq, 2);
        // The quiz's hash expires `redis.status_ttl_secs` after its last write.
        let mut conn = writer.conn.clone();
        let ttl: i64 = redis::cmd("TTL")
            .arg(RedisStore::hash(&prefix, &key.quiz))
            .query_async(&mut conn)
            .await
            .unwrap();
        let configured = Settings::defaults().redis.status_ttl_secs as i64;
        assert!(
            (configured - 5..=configured).contains(&ttl),
            "TTL {ttl}, configured {configured}"
        );
    }

    #[test]
    fn records_round_trip_through_their_stored_form() {
        let key = AttemptKey {
            quiz: QuizId::new("q1"),
            attempt: AttemptId::new("a1"),
        };
        let data = serde_json::from_str(r#"{"user_status":"away","timestamp_sent":1.50}"#).unwrap();
        let rec = StatusRecord::next(&key, None, StatusChange::Reported(data), 7);
        let json = rec.to_stored_json();
        assert!(
            json.starts_with(r#"{"seq":1,"#),
            "the write script reads seq first: {json}"
        );
        assert_eq!(StatusRecord::from_stored_json(key, &json), Some(rec));
    }
}
