//! The write policy of durable status copies (the record database, DynamoDB): a status whose
//! `user_status` or `connected` differs from the last one written for its attempt is due at
//! once; a progress-only status waits until an interval after the attempt's last write, and
//! only the latest one waiting is written. An attempt reporting every 5 s with a 30 s interval
//! costs two writes a minute, plus one per change a proctor would act on.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::protocol::{ids::AttemptKey, status::StatusRecord, UserStatus};

/// Statuses waiting to be written, latest per attempt.
pub struct Coalescer {
    interval: Duration,
    waiting: HashMap<AttemptKey, (Arc<StatusRecord>, Instant)>,
    /// What was last written per attempt: (`user_status`, `connected`, when).
    written: HashMap<AttemptKey, (UserStatus, bool, Instant)>,
}

impl Coalescer {
    pub fn new(interval: Duration) -> Self {
        Coalescer {
            interval,
            waiting: HashMap::new(),
            written: HashMap::new(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Take a status; true if it is due at once.
    pub fn offer(&mut self, record: Arc<StatusRecord>, now: Instant) -> bool {
        let due = match self.written.get(&record.key) {
            Some((status, connected, at))
                if *status == record.user_status && *connected == record.connected =>
            {
                *at + self.interval
            }
            _ => now,
        };
        match self.waiting.get_mut(&record.key) {
            Some((kept, _)) if kept.seq >= record.seq => {}
            Some((kept, when)) => {
                *kept = record;
                *when = (*when).min(due);
            }
            None => {
                self.waiting.insert(record.key.clone(), (record, due));
            }
        }
        due <= now
    }

    /// The statuses due by `now` (every one waiting if `all`), removed from the wait.
    pub fn take_due(&mut self, now: Instant, all: bool, max: usize) -> Vec<Arc<StatusRecord>> {
        let keys: Vec<AttemptKey> = self
            .waiting
            .iter()
            .filter(|(_, (_, due))| all || *due <= now)
            .map(|(k, _)| k.clone())
            .take(max)
            .collect();
        keys.iter()
            .filter_map(|k| self.waiting.remove(k).map(|(r, _)| r))
            .collect()
    }

    /// These statuses are written.
    pub fn written(&mut self, records: &[Arc<StatusRecord>], now: Instant) {
        for r in records {
            self.written
                .insert(r.key.clone(), (r.user_status, r.connected, now));
        }
    }

    /// A write failed: these wait again, due at once, unless newer ones arrived meanwhile.
    pub fn put_back(&mut self, records: Vec<Arc<StatusRecord>>, now: Instant) {
        for r in records {
            self.waiting.entry(r.key.clone()).or_insert((r, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        ids::{AttemptId, QuizId},
        status::StatusChange,
    };

    fn status(prev: Option<&StatusRecord>, user_status: &str, q: u32) -> Arc<StatusRecord> {
        let key = AttemptKey {
            quiz: QuizId::new("q"),
            attempt: AttemptId::new("a"),
        };
        let data = serde_json::from_str(&format!(
            r#"{{"user_status":"{user_status}","question_number_current":{q}}}"#
        ))
        .unwrap();
        Arc::new(StatusRecord::next(
            &key,
            prev,
            StatusChange::Reported(data),
            0,
        ))
    }

    #[test]
    fn changes_go_at_once_and_progress_waits_for_the_interval() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(30));
        let first = status(None, "active", 1);
        assert!(c.offer(first.clone(), t0));
        let batch = c.take_due(t0, false, 100);
        c.written(&batch, t0);
        // Progress every 5 s for a minute: nothing due before 30 s, then the latest only.
        let mut prev = first;
        let mut writes = 1;
        for i in 1..=12u32 {
            let now = t0 + Duration::from_secs(5 * i as u64);
            let next = status(Some(&prev), "active", i + 1);
            c.offer(next.clone(), now);
            prev = next;
            let due = c.take_due(now, false, 100);
            writes += due.len();
            c.written(&due, now);
        }
        assert_eq!(writes, 3, "one at once, then one per 30 s");
        // A change is due at once.
        let away = status(Some(&prev), "away", 13);
        assert!(c.offer(away, t0 + Duration::from_secs(61)));
    }
}
