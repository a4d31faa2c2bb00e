//! The frames waiting for one socket, with the slow-consumer policy of the module above:
//! a status replaces a waiting status of the same attempt, and the outbox refuses frames past
//! its limits: a number of frames, and bytes. One frame larger than the byte limit still goes
//! to a socket with nothing waiting (a snapshot of a big quiz), so the bound is the larger of
//! the two.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::protocol::{ids::AttemptKey, Frame};

/// One thing to write to a socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text(Frame),
    Ping,
    Pong(Bytes),
    /// The last frame: close with this code and reason.
    Close(u16, String),
}

/// Frames in the order they will be written.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    /// Position (as `popped + index`) of the waiting status of each attempt.
    waiting_status: HashMap<AttemptKey, u64>,
    /// How many entries have left the front of the queue, ever.
    popped: u64,
    limit: usize,
    /// Bytes of text waiting, and the most allowed.
    bytes: usize,
    max_bytes: usize,
}

/// The outbox is full: the socket cannot keep up.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// It replaced a waiting status of the same attempt.
    Replaced,
}

impl Outbox {
    pub fn new(limit: usize, max_bytes: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            waiting_status: HashMap::new(),
            popped: 0,
            limit,
            bytes: 0,
            max_bytes,
        }
    }

    /// Bytes of text waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn push(&mut self, item: Outgoing) -> Result<Pushed, Full> {
        let size = size(&item);
        let over_bytes = !self.queue.is_empty() && self.bytes + size > self.max_bytes;
        if self.queue.len() >= self.limit || over_bytes {
            return Err(Full);
        }
        self.bytes += size;
        self.queue.push_back(item);
        Ok(Pushed::Queued)
    }

    /// Queue a status of `key`, replacing one of the same attempt that is still waiting.
    pub fn push_status(&mut self, key: &AttemptKey, frame: Frame) -> Result<Pushed, Full> {
        if let Some(&position) = self.waiting_status.get(key) {
            if let Some(slot) = position
                .checked_sub(self.popped)
                .and_then(|i| self.queue.get_mut(i as usize))
            {
                let new = Outgoing::Text(frame);
                self.bytes = self.bytes - size(slot) + size(&new);
                *slot = new;
                return Ok(Pushed::Replaced);
            }
        }
        self.push(Outgoing::Text(frame))?;
        let position = self.popped + self.queue.len() as u64 - 1;
        self.waiting_status.insert(key.clone(), position);
        Ok(Pushed::Queued)
    }

    /// Queue the close frame after everything waiting; it is never refused.
    pub fn push_close(&mut self, code: u16, reason: &str) {
        let close = Outgoing::Close(code, reason.to_string());
        self.bytes += size(&close);
        self.queue.push_back(close);
    }

    /// Take up to `max` entries from the front, to write.
    pub fn take(&mut self, max: usize) -> Vec<Outgoing> {
        let n = max.min(self.queue.len());
        let batch: Vec<Outgoing> = self.queue.drain(..n).collect();
        self.bytes -= batch.iter().map(size).sum::<usize>();
        self.popped += n as u64;
        if !self.waiting_status.is_empty() {
            let popped = self.popped;
            self.waiting_status
                .retain(|_, position| *position >= popped);
        }
        batch
    }

    /// Drop everything waiting (the socket is closing).
    pub fn clear(&mut self) {
        self.popped += self.queue.len() as u64;
        self.queue.clear();
        self.waiting_status.clear();
        self.bytes = 0;
    }
}

/// What an entry weighs against the byte limit.
fn size(item: &Outgoing) -> usize {
    match item {
        Outgoing::Text(frame) => frame.len(),
        Outgoing::Ping => 0,
        Outgoing::Pong(payload) => payload.len(),
        Outgoing::Close(_, reason) => reason.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::{AttemptId, QuizId};

    fn key(a: &str) -> AttemptKey {
        AttemptKey {
            quiz: QuizId::new("q"),
            attempt: AttemptId::new(a),
        }
    }

    fn text(s: &'static str) -> Outgoing {
        Outgoing::Text(Frame::from_static(s))
    }

    #[test]
    fn a_waiting_status_is_replaced_in_place() {
        let mut o = Outbox::new(16, 1 << 20);
        o.push(text("welcome")).unwrap();
        o.push_status(&key("a1"), Frame::from_static("a1 v1"))
            .unwrap();
        o.push_status(&key("a2"), Frame::from_static("a2 v1"))
            .unwrap();
        assert_eq!(
            o.push_status(&key("a1"), Frame::from_static("a1 v2")),
            Ok(Pushed::Replaced)
        );
        assert_eq!(
            o.take(10),
            vec![text("welcome"), text("a1 v2"), text("a2 v1")]
        );
        // Once written, a new status queues again rather than replacing.
        assert_eq!(
            o.push_status(&key("a1"), Frame::from_static("a1 v3")),
            Ok(Pushed::Queued)
        );
        assert_eq!(o.take(10), vec![text("a1 v3")]);
    }

    #[test]
    fn replacement_tracks_positions_across_partial_takes() {
        let mut o = Outbox::new(16, 1 << 20);
        o.push(text("x")).unwrap();
        o.push(text("y")).unwrap();
        o.push_status(&key("a1"), Frame::from_static("a1 v1"))
            .unwrap();
        assert_eq!(o.take(1), vec![text("x")]);
        o.push_status(&key("a1"), Frame::from_static("a1 v2"))
            .unwrap();
        assert_eq!(o.take(10), vec![text("y"), text("a1 v2")]);
    }

    #[test]
    fn memory_is_bounded_by_distinct_frames() {
        let mut o = Outbox::new(16, 1 << 20);
        // A thousand updates of the same ten attempts fit in ten slots.
        for i in 0..1000 {
            let a = format!("a{}", i % 10);
            o.push_status(&key(&a), Frame::from(format!("{a} {i}")))
                .unwrap();
        }
        assert_eq!(o.len(), 10);
        for i in 0..6 {
            o.push(text("chat")).unwrap_or_else(|_| panic!("slot {i}"));
        }
        assert_eq!(o.push(text("one too many")), Err(Full));
        assert_eq!(
            o.push_status(&key("new"), Frame::from_static("n")),
            Err(Full)
        );
        // Statuses of waiting attempts still replace when full.
        assert_eq!(
            o.push_status(&key("a3"), Frame::from_static("a3 last")),
            Ok(Pushed::Replaced)
        );
    }

    #[test]
    fn bytes_are_bounded_but_one_large_frame_still_goes() {
        let mut o = Outbox::new(16, 10);
        let big = "s".repeat(25);
        o.push(Outgoing::Text(Frame::from(big.clone()))).unwrap();
        assert_eq!(o.bytes(), 25);
        assert_eq!(o.push(text("x")), Err(Full), "over the bytes behind it");
        o.take(1);
        assert_eq!(o.bytes(), 0);
        o.push_status(&key("a1"), Frame::from_static("12345"))
            .unwrap();
        o.push(text("1234")).unwrap();
        assert_eq!(o.push(text("12")), Err(Full));
        // A replacement counts its own size, not the one it replaced.
        o.push_status(&key("a1"), Frame::from_static("1")).unwrap();
        assert_eq!(o.bytes(), 5);
        o.push(text("1234")).unwrap();
        assert_eq!(o.bytes(), 9);
        o.clear();
        assert_eq!(o.bytes(), 0);
    }
}
