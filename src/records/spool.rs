//! The spool: an append-only file of events (one JSON line each) that wait for the database
//! while the in-memory queue is full. Events are read back in order and the file is emptied
//! once all are written. A spool left by a crash is replayed at the next start; events already
//! written are skipped by their ids, so a replay never duplicates.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use super::RecordEvent;

pub struct Spool {
    path: PathBuf,
    /// Bytes of the file already written to the database.
    replayed: u64,
    /// Bytes in the file.
    len: u64,
    /// Events in the file not yet written to the database.
    waiting: usize,
}

impl Spool {
    /// Open (or create) the spool at `path`, counting what a previous run left in it.
    pub fn open(path: &Path) -> io::Result<Spool> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let len = file.metadata()?.len();
        let waiting = BufReader::new(&file).lines().count();
        Ok(Spool {
            path: path.to_path_buf(),
            replayed: 0,
            len,
            waiting,
        })
    }

    /// Events waiting in the file.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Append events and flush them to disk.
    pub fn append(&mut self, events: &[RecordEvent]) -> io::Result<()> {
        let mut file = OpenOptions::new().append(true).open(&self.path)?;
        let mut buf = Vec::with_capacity(events.len() * 256);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_data()?;
        self.len += buf.len() as u64;
        self.waiting += events.len();
        Ok(())
    }

    /// Up to `max` events from the oldest not yet written, and the bytes they take. A line
    /// that does not parse (torn by a crash) is skipped with a warning.
    pub fn peek(&self, max: usize) -> io::Result<(Vec<RecordEvent>, u64, usize)> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.replayed))?;
        let mut reader = BufReader::new(file);
        let (mut events, mut bytes, mut lines) = (Vec::new(), 0u64, 0usize);
        let mut line = String::new();
        while events.len() < max {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break; // the end, or a line still being written
            }
            bytes += n as u64;
            lines += 1;
            match serde_json::from_str(line.trim_end()) {
                Ok(e) => events.push(e),
                Err(e) => log::warn!(
                    "skipping a torn line of the spool {}: {e}",
                    self.path.display()
                ),
            }
        }
        Ok((events, bytes, lines))
    }

    /// The events of a [`peek`](Self::peek) are written: move past them, and empty the file
    /// when nothing is left.
    pub fn commit(&mut self, bytes: u64, lines: usize) -> io::Result<()> {
        self.replayed += bytes;
        self.waiting = self.waiting.saturating_sub(lines);
        if self.replayed >= self.len {
            OpenOptions::new()
                .write(true)
                .open(&self.path)?
                .set_len(0)?;
            self.replayed = 0;
            self.len = 0;
            self.waiting = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::{AttemptId, AttemptKey, InstanceId, QuizId};
    use crate::records::{EventIds, EventKind};

    #[test]
    fn events_come_back_in_order_and_the_file_empties() {
        let dir = std::env::temp_dir().join(format!("invigil-spool-{:08x}", rand::random::<u32>()));
        let path = dir.join("spool.jsonl");
        let ids = EventIds::new(&InstanceId::new("i"));
        let key = AttemptKey {
            quiz: QuizId::new("q"),
            attempt: AttemptId::new("a"),
        };
        let events: Vec<_> = (0..5)
            .map(|i| ids.event(&key, None, EventKind::Away, serde_json::json!({}), i))
            .collect();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(&events[..3]).unwrap();
        spool.append(&events[3..]).unwrap();
        assert_eq!(spool.waiting(), 5);
        let (first, bytes, lines) = spool.peek(2).unwrap();
        assert_eq!(first, events[..2]);
        spool.commit(bytes, lines).unwrap();
        // A reopen (a crash) counts what is left from the start: replays skip duplicates.
        assert_eq!(Spool::open(&path).unwrap().waiting(), 5);
        let (rest, bytes, lines) = spool.peek(10).unwrap();
        assert_eq!(rest, events[2..]);
        spool.commit(bytes, lines).unwrap();
        assert!(spool.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
